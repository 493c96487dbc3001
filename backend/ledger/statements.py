"""Read-only views of the ledger for people: a household's balance and entries."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.errors import InvalidInput
from backend.ledger.models import Account, LedgerEntry
from backend.registry.models import Community
from backend.registry.services import find_household

MAX_STATEMENT_ENTRIES = 10_000


def entry_info(entry: LedgerEntry) -> dict:
    """Return a JSON-ready description of one ledger entry."""
    return {
        "id": entry.id,
        "created_at": entry.created_at.isoformat(),
        "kind": entry.kind,
        "amount": entry.amount,
        "balance_after": entry.balance_after,
        "reason": entry.reason,
        "source_type": entry.source_type,
        "source_id": entry.source_id,
        "reverses_entry_id": entry.reverses_entry_id,
    }


def household_statement(
    session: Session, household_code: str, community_slug: str | None = None, limit: int = 50
) -> dict:
    """Return a household's balance and its latest ``limit`` entries, oldest first."""
    if not 1 <= limit <= MAX_STATEMENT_ENTRIES:
        raise InvalidInput(f"limit must be from 1 to {MAX_STATEMENT_ENTRIES}")
    household = find_household(session, household_code, community_slug)
    # the account opens with the household's first entry: none yet reads as 0
    account = session.get(Account, household.id)
    total = session.scalar(
        select(func.count())
        .select_from(LedgerEntry)
        .where(LedgerEntry.household_id == household.id)
    )
    latest = session.scalars(
        select(LedgerEntry)
        .where(LedgerEntry.household_id == household.id)
        .order_by(LedgerEntry.id.desc())
        .limit(limit)
    ).all()
    return {
        "community": session.get(Community, household.community_id).slug,
        "household": household.code,
        "balance": account.balance if account is not None else 0,
        "entry_count": total,
        "entries": [entry_info(e) for e in reversed(latest)],
    }
