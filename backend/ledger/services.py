"""The append-only points ledger.

Every movement of points is one immutable ``LedgerEntry`` carrying the
balance after it; ``Account.balance`` and ``Account.entry_count`` change in
the same transaction as the entry, under a row lock on the account
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite serialises writers with
``BEGIN IMMEDIATE``), so reading a balance never sums history and a balance
can never go below zero.  Accounts are always locked in ascending household
order, so two transactions touching the same households cannot deadlock.

Corrections are new entries: ``reverse`` (once per entry, enforced by the
unique ``reverses_entry_id``) and ``adjust``.  Reversing a deposit's credit
also takes its points off that day's ``DailyTotal``, so a reversed deposit no
longer counts toward the household's daily cap (docs/protocol.md, "Points").  ``verify`` recomputes every
balance, entry count and ``balance_after`` chain by streaming the entries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from backend.core.errors import (
    AlreadyExists,
    InsufficientBalance,
    InvalidInput,
    NotFound,
    SortpointError,
)
from backend.core.models import utcnow
from backend.core.sql import chunked, in_list, insert_ignore, params
from backend.ledger.models import LEDGER_KINDS, Account, LedgerEntry
from backend.registry.models import Household

ACCOUNTS = Account.__table__
ENTRIES = LedgerEntry.__table__
MAX_REASON_LEN = 200
#: more mismatches than this and verify stops listing (the count is what matters)
DEFAULT_MISMATCH_LIMIT = 1000


class IdempotencyConflict(SortpointError):
    """An idempotency key was used before for a different entry."""

    code = "idempotency_conflict"
    http_status = 409


@dataclass(frozen=True, slots=True)
class Posting:
    """One entry to append (see ``post``)."""

    household_id: int
    kind: str
    amount: int
    reason: str
    source_type: str
    source_id: str
    idempotency_key: str | None = None
    reverses_entry_id: int | None = None


@dataclass(frozen=True, slots=True)
class Posted:
    """The stored result of one posting."""

    entry_id: int
    household_id: int
    amount: int
    balance_after: int


@dataclass(slots=True)
class AccountState:
    """A locked account's balance and entry count inside a transaction."""

    balance: int
    entry_count: int


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A disagreement ``verify`` found between an account and its entries."""

    household_id: int
    problem: str  # balance | entry_count | chain | negative | missing_account
    expected: int | None
    actual: int | None
    entry_id: int | None = None

    def describe(self) -> str:
        """Return a one-line human description."""
        where = f" at entry {self.entry_id}" if self.entry_id is not None else ""
        return (
            f"household {self.household_id}: {self.problem}{where}: "
            f"expected {self.expected}, stored {self.actual}"
        )


def ensure_account(session: Session, household_id: int) -> None:
    """Create the household's account (balance 0) unless it exists."""
    if session.get(Household, household_id) is None:
        raise NotFound(f"no household with id {household_id}")
    _ensure_accounts(session, [household_id])


def _ensure_accounts(session: Session, household_ids: Sequence[int]) -> None:
    now = utcnow()
    rows = [
        {"household_id": h, "balance": 0, "entry_count": 0, "updated_at": now}
        for h in household_ids
    ]
    session.execute(insert_ignore(session, ACCOUNTS, ["household_id"]), rows)


def lock_accounts(session: Session, household_ids: Iterable[int]) -> dict[int, AccountState]:
    """Lock the accounts of ``household_ids`` in ascending order and return their state.

    Missing accounts are created first (balance 0).  The returned states are
    the ones ``post_many(..., locked=...)`` advances.
    """
    wanted = sorted(set(household_ids))
    states = _select_locked(session, wanted)
    missing = [h for h in wanted if h not in states]
    if missing:
        _ensure_accounts(session, missing)
        states.update(_select_locked(session, missing))
    return states


@functools.lru_cache(maxsize=8)
def _accounts_stmt(dialect: str, lock: bool):
    stmt = (
        select(ACCOUNTS.c.household_id, ACCOUNTS.c.balance, ACCOUNTS.c.entry_count)
        .where(in_list(ACCOUNTS.c.household_id, "ids", dialect))
        .order_by(ACCOUNTS.c.household_id)
    )
    return stmt.with_for_update(key_share=True) if lock else stmt


def _select_locked(
    session: Session, household_ids: list[int], lock: bool = True
) -> dict[int, AccountState]:
    states: dict[int, AccountState] = {}
    conn = session.connection()
    stmt = _accounts_stmt(conn.dialect.name, lock)
    for chunk in chunked(household_ids):
        for household_id, balance, count in conn.execute(stmt, {"ids": chunk}):
            states[household_id] = AccountState(balance, count)
    return states


def read_accounts(session: Session, household_ids: Iterable[int]) -> dict[int, AccountState]:
    """Return the state of accounts without locking them (missing ones read as 0)."""
    wanted = sorted(set(household_ids))
    states = {h: AccountState(0, 0) for h in wanted}
    states.update(_select_locked(session, wanted, lock=False))
    return states


def balance(session: Session, household_id: int) -> int:
    """Return a household's current balance (0 without an account)."""
    value = session.scalar(
        select(ACCOUNTS.c.balance).where(ACCOUNTS.c.household_id == household_id)
    )
    return int(value or 0)


def _check_posting(p: Posting) -> None:
    if p.kind not in LEDGER_KINDS:
        raise InvalidInput(f"unknown ledger entry kind {p.kind!r}")
    if isinstance(p.amount, bool) or not isinstance(p.amount, int) or p.amount == 0:
        raise InvalidInput(f"a ledger amount is a non-zero whole number, not {p.amount!r}")
    if not p.reason or len(p.reason) > MAX_REASON_LEN:
        raise InvalidInput(f"a ledger entry needs a reason of 1..{MAX_REASON_LEN} characters")
    if not p.source_type or not p.source_id:
        raise InvalidInput("a ledger entry needs a source type and id")


def _same_content(row, p: Posting) -> bool:
    return (
        row.household_id == p.household_id
        and row.kind == p.kind
        and row.amount == p.amount
        and row.reason == p.reason
        and row.source_type == p.source_type
        and row.source_id == str(p.source_id)
        and row.reverses_entry_id == p.reverses_entry_id
    )


def _existing_by_key(session: Session, postings: Sequence[Posting]) -> dict[str, Posted]:
    """Return the stored entries of postings whose idempotency key was used before."""
    keys = [p.idempotency_key for p in postings if p.idempotency_key]
    if not keys:
        return {}
    found = {}
    for chunk in chunked(keys):
        for row in session.execute(select(ENTRIES).where(ENTRIES.c.idempotency_key.in_(chunk))):
            found[row.idempotency_key] = row
    result: dict[str, Posted] = {}
    for p in postings:
        row = found.get(p.idempotency_key) if p.idempotency_key else None
        if row is None:
            continue
        if not _same_content(row, p):
            raise IdempotencyConflict(
                f"idempotency key {p.idempotency_key!r} was used for entry {row.id} "
                "with different content"
            )
        result[p.idempotency_key] = Posted(row.id, row.household_id, row.amount, row.balance_after)
    return result


def post_many(
    session: Session,
    postings: Sequence[Posting],
    *,
    locked: dict[int, AccountState] | None = None,
    check_keys: bool = True,
    return_ids: bool = True,
) -> list[Posted]:
    """Append ``postings`` in order and move the balances; return one result per posting.

    ``locked`` is the state from ``lock_accounts`` when the caller already
    holds the locks (it is advanced in place).  A posting whose idempotency
    key exists returns the original entry; a debit below zero raises
    ``InsufficientBalance`` and nothing is written.  ``check_keys=False``
    skips the look-up of earlier keys for callers that know they are new (the
    unique index still refuses a repeated key); with ``return_ids=False``
    the results carry entry id 0 (one statement less work for bulk callers).
    """
    for p in postings:
        _check_posting(p)
    if locked is None:
        locked = lock_accounts(session, (p.household_id for p in postings))
    previous = _existing_by_key(session, postings) if check_keys else {}
    rows, results, slots = [], [], []
    now = utcnow()
    seen_keys: dict[str, int] = {}
    for i, p in enumerate(postings):
        if p.idempotency_key in previous:
            results.append(previous[p.idempotency_key])
            continue
        if p.idempotency_key and p.idempotency_key in seen_keys:
            raise IdempotencyConflict(f"idempotency key {p.idempotency_key!r} twice in one posting")
        state = locked.get(p.household_id)
        if state is None:
            raise InvalidInput(f"account of household {p.household_id} is not locked")
        row = stage(p, state, now)
        if p.idempotency_key:
            seen_keys[p.idempotency_key] = i
        rows.append(row)
        results.append(None)
        slots.append(i)
    if rows:
        ids = _insert_entries(session, rows) if return_ids else _insert_entries_bare(session, rows)
        for slot, row, entry_id in zip(slots, rows, ids, strict=True):
            results[slot] = Posted(
                entry_id, row["household_id"], row["amount"], row["balance_after"]
            )
        touched = {row["household_id"] for row in rows}
        _write_accounts(session, {h: locked[h] for h in touched}, now)
    return results


def stage(p: Posting, state: AccountState, now) -> dict:
    """Advance a locked account's ``state`` by ``p``; return the entry row to insert.

    Refuses a debit below zero (``InsufficientBalance``).  ``post_many`` and
    callers that write the row themselves (ingest's one-statement write of
    a single deposit) both go through here.
    """
    _check_posting(p)
    after = state.balance + p.amount
    if after < 0:
        raise InsufficientBalance(
            f"household {p.household_id} has {state.balance} points; {-p.amount} cannot be debited"
        )
    state.balance = after
    state.entry_count += 1
    return _entry_row(p, after, now)


def _expire_loaded_accounts(session: Session, household_ids: Iterable[int]) -> None:
    """Expire Account objects this session holds, so they reload the new balance."""
    for h in household_ids:
        obj = session.identity_map.get(identity_key(Account, h))
        if obj is not None:
            session.expire(obj)


def _entry_row(p: Posting, balance_after: int, now) -> dict:
    return {
        "household_id": p.household_id,
        "kind": p.kind,
        "amount": p.amount,
        "balance_after": balance_after,
        "reason": p.reason,
        "source_type": p.source_type,
        "source_id": str(p.source_id),
        "idempotency_key": p.idempotency_key,
        "reverses_entry_id": p.reverses_entry_id,
        "created_at": now,
    }


_INSERT = ENTRIES.insert()
_INSERT_RETURNING = ENTRIES.insert().returning(ENTRIES.c.id, sort_by_parameter_order=True)
_UPDATE_ACCOUNT = (
    update(ACCOUNTS)
    .where(ACCOUNTS.c.household_id == bindparam("b_household"))
    .values(
        balance=bindparam("b_balance"),
        entry_count=bindparam("b_count"),
        updated_at=bindparam("b_at"),
    )
)


def _insert_entries(session: Session, rows: list[dict]) -> list[int]:
    """Insert entries as multi-row INSERTs; return their ids in row order."""
    return list(session.connection().execute(_INSERT_RETURNING, rows).scalars())


def _insert_entries_bare(session: Session, rows: list[dict]) -> list[int]:
    """Insert entries without reading their ids back."""
    session.connection().execute(_INSERT, params(rows))
    return [0] * len(rows)


def _write_accounts(session: Session, states: dict[int, AccountState], now) -> None:
    """Store new balances and counts (one executemany, ascending household)."""
    rows = [
        {
            "b_household": h,
            "b_balance": states[h].balance,
            "b_count": states[h].entry_count,
            "b_at": now,
        }
        for h in sorted(states)
    ]
    session.connection().execute(_UPDATE_ACCOUNT, params(rows))
    _expire_loaded_accounts(session, states)


def post(
    session: Session,
    *,
    household_id: int,
    kind: str,
    amount: int,
    reason: str,
    source_type: str,
    source_id: str,
    idempotency_key: str | None = None,
) -> LedgerEntry:
    """Append one entry to a household's account and return it.

    Locks the account, refuses to go below zero (``InsufficientBalance``); an
    idempotency key used before returns the original entry when the content
    is the same and raises ``IdempotencyConflict`` when it differs.
    """
    if session.get(Household, household_id) is None:
        raise NotFound(f"no household with id {household_id}")
    posting = Posting(
        household_id, kind, amount, reason, source_type, str(source_id), idempotency_key
    )
    [posted] = post_many(session, [posting])
    return session.get(LedgerEntry, posted.entry_id)


def reverse(
    session: Session,
    entry_id: int,
    reason: str,
    *,
    source_type: str = "staff",
    source_id: str = "cli",
    release: Callable[[Session, LedgerEntry], None] | None = None,
) -> LedgerEntry:
    """Append the entry that cancels ``entry_id``; each entry can be reversed once.

    ``release(session, original)`` runs in the same transaction, under the same
    account lock, for what the entry's source must undo besides the points.  A
    deposit's credit also counts toward its day's cap, which the ledger does not
    know how to find: it is reversed through ``backend.deposits.credits``, which
    passes that release, and refused here without one.
    """
    original = session.get(LedgerEntry, entry_id)
    if original is None:
        raise NotFound(f"no ledger entry {entry_id}")
    if original.kind == "reversal":
        raise InvalidInput(f"entry {entry_id} is itself a reversal; post an adjustment instead")
    if original.source_type == "deposit" and release is None:
        raise InvalidInput(
            f"entry {entry_id} credits a deposit: reverse it through the deposits "
            "(backend.deposits.credits.reverse_credit), which also frees its daily cap"
        )
    # lock first: a concurrent reversal of the same entry waits here, then sees ours
    locked = lock_accounts(session, [original.household_id])
    done = session.scalar(select(ENTRIES.c.id).where(ENTRIES.c.reverses_entry_id == entry_id))
    if done is not None:
        raise AlreadyExists(f"entry {entry_id} was already reversed by entry {done}")
    posting = Posting(
        original.household_id,
        "reversal",
        -original.amount,
        reason,
        source_type,
        str(source_id),
        idempotency_key=f"reversal:{entry_id}",
        reverses_entry_id=entry_id,
    )
    [posted] = post_many(session, [posting], locked=locked)
    if release is not None:
        release(session, original)
    return session.get(LedgerEntry, posted.entry_id)


def adjust(
    session: Session,
    household_id: int,
    amount: int,
    reason: str,
    *,
    source_type: str = "staff",
    source_id: str = "cli",
    idempotency_key: str | None = None,
) -> LedgerEntry:
    """Append a manual correction (positive or negative) with its reason."""
    return post(
        session,
        household_id=household_id,
        kind="adjustment",
        amount=amount,
        reason=reason,
        source_type=source_type,
        source_id=source_id,
        idempotency_key=idempotency_key,
    )


def _stream(session: Session, stmt, batch_size: int) -> Iterator:
    return iter(session.execute(stmt.execution_options(yield_per=batch_size)))


def verify(
    session: Session, *, batch_size: int = 10_000, limit: int = DEFAULT_MISMATCH_LIMIT
) -> list[Mismatch]:
    """Recompute every balance, entry count and balance_after chain from the entries.

    Streams accounts and entries (both ordered by household) and merges them,
    so memory stays bounded on millions of entries.  Returns at most
    ``limit`` mismatches; an empty list means the ledger is consistent.
    """
    accounts = _stream(
        session,
        select(ACCOUNTS.c.household_id, ACCOUNTS.c.balance, ACCOUNTS.c.entry_count).order_by(
            ACCOUNTS.c.household_id
        ),
        batch_size,
    )
    entries = _stream(
        session,
        select(
            ENTRIES.c.household_id,
            ENTRIES.c.id,
            ENTRIES.c.amount,
            ENTRIES.c.balance_after,
        ).order_by(ENTRIES.c.household_id, ENTRIES.c.id),
        batch_size,
    )
    found: list[Mismatch] = []
    for mismatch in _merge(accounts, _per_household(entries)):
        found.append(mismatch)
        if len(found) >= limit:
            break
    return found


def _per_household(entries: Iterator) -> Iterator[tuple[int, int, int, list[Mismatch]]]:
    """Fold ordered entries into (household, total, count, chain problems)."""
    current, total, count, problems = None, 0, 0, []
    for household_id, entry_id, amount, balance_after in entries:
        if household_id != current:
            if current is not None:
                yield current, total, count, problems
            current, total, count, problems = household_id, 0, 0, []
        total += amount
        count += 1
        if balance_after != total and len(problems) < 10:
            problems.append(Mismatch(household_id, "chain", total, balance_after, entry_id))
        if total < 0 and len(problems) < 10:
            problems.append(Mismatch(household_id, "negative", 0, total, entry_id))
    if current is not None:
        yield current, total, count, problems


def _merge(accounts: Iterator, folded: Iterator) -> Iterator[Mismatch]:
    """Merge-join accounts with folded entries (both ascending by household)."""
    account = next(accounts, None)
    group = next(folded, None)
    while account is not None or group is not None:
        if group is None or (account is not None and account[0] < group[0]):
            household_id, stored_balance, stored_count = account
            yield from _compare(household_id, 0, 0, stored_balance, stored_count)
            account = next(accounts, None)
        elif account is None or group[0] < account[0]:
            yield Mismatch(group[0], "missing_account", group[1], None)
            group = next(folded, None)
        else:
            household_id, total, count, problems = group
            yield from problems
            yield from _compare(household_id, total, count, account[1], account[2])
            account, group = next(accounts, None), next(folded, None)


def _compare(household_id, total, count, stored_balance, stored_count) -> Iterator[Mismatch]:
    if stored_balance != total:
        yield Mismatch(household_id, "balance", total, stored_balance)
    if stored_count != count:
        yield Mismatch(household_id, "entry_count", count, stored_count)
