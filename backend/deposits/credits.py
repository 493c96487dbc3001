"""Corrections to what a deposit earned: reversing its credit frees its room under the daily cap."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.deposits.models import Deposit
from backend.ledger import points
from backend.ledger import services as ledger
from backend.ledger.models import LedgerEntry

DEPOSITS = Deposit.__table__


def reverse_credit(
    session: Session,
    entry_id: int,
    reason: str,
    *,
    source_type: str = "staff",
    source_id: str = "cli",
) -> LedgerEntry:
    """Reverse ledger entry ``entry_id``; a deposit's credit also stops counting toward its cap.

    The day's total (household, category, community-local day of the deposit)
    goes down by the reversed points in the same transaction, under the account
    lock ingest scores under, so later deposits that day can earn them again.
    Deposits already scored are not re-scored.  An entry that did not come from
    a deposit (an adjustment) leaves the caps alone.
    """
    return ledger.reverse(
        session,
        entry_id,
        reason,
        source_type=source_type,
        source_id=source_id,
        release=_release_daily_total,
    )


def _release_daily_total(session: Session, entry: LedgerEntry) -> None:
    """Take a reversed deposit credit off its (household, category, local day) total."""
    if entry.source_type != "deposit" or entry.amount <= 0:
        return
    try:
        deposit_id = uuid.UUID(entry.source_id)
    except ValueError:
        return  # not a kiosk deposit id: no daily total was counted for it
    row = session.execute(
        select(DEPOSITS.c.household_id, DEPOSITS.c.category_id, DEPOSITS.c.local_day).where(
            DEPOSITS.c.id == deposit_id
        )
    ).first()
    if row is not None:
        points.subtract_daily_total(
            session, (row.household_id, row.category_id, row.local_day), entry.amount
        )
