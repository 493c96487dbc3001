"""Deposit ingest, the use case: read what the plan needs, plan, write; exactly once.

One upload is one transaction (``in_transaction``, retried whole after a lost
race).  The decisions are ``plan``'s, made once for every path; the writers
only write them:

1. no database: every item checked (time window, door, category, weight, the
   label's signature: the backend trusts no kiosk) - ``plan.check``;
2. the checked labels joined to their households' accounts, locked ``FOR NO
   KEY UPDATE`` in ascending household order (this lock serialises a
   household's labels, daily totals and entries, so concurrent batches
   cannot deadlock); then the ids recorded before, and the day totals a cap
   needs - ``store``;
3. ``plan.decide``: statuses, label claims, points, caps, postings;
4. ``store.write``: claims (``UPDATE ... WHERE first_deposit_id IS NULL``),
   daily totals, ledger entries and accounts, deposits ``INSERT ... ON
   CONFLICT (id) DO NOTHING``.  A claim or an id taken by a transaction that
   committed after our reads makes a count come back short: the transaction
   is rolled back and retried, and the retry sees it (a label reused, a
   duplicate).  Every deposit is credited exactly once.

On PostgreSQL a one-deposit upload from a kept kiosk copy is first tried in
one round trip (``apply_one_fn``): the same plan, made on the common case's
assumptions, written by ``pg_one``'s function, which checks the assumptions
and falls back to the path above when one does not hold.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from backend.core.errors import NotFound, SortpointError, Unauthorized
from backend.deposits import pg_one, plan, store
from backend.deposits.context import KioskContext, KioskRef
from backend.deposits.plan import CHECK_CODES, DepositIn, Limits, Outcome
from backend.ledger import points
from backend.ledger import services as ledger

__all__ = [
    "CHECK_CODES",
    "DepositIn",
    "IngestBusy",
    "KioskContext",
    "KioskRef",
    "Limits",
    "Outcome",
    "apply_batch",
    "apply_one_fn",
    "content_hash",
    "in_transaction",
    "ingest",
    "load_kiosk",
    "rules_until",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: attempts of one batch transaction before giving up with IngestBusy
MAX_ATTEMPTS = 6
#: PostgreSQL SQLSTATEs worth a retry: serialization failure, deadlock, unique violation
_RETRY_SQLSTATES = {"40001", "40P01", "23505"}

_RaceLost = store.RaceLost
#: the server's defaults (``SORTPOINT_DEPOSIT_MAX_AGE_S`` moves the age)
DEFAULT_LIMITS = Limits()


class IngestBusy(SortpointError):
    """A batch kept colliding with concurrent batches; the kiosk should retry later."""

    code = "busy"
    http_status = 503


def content_hash(item: DepositIn) -> str:
    """Return the SHA-256 hex of the canonical submitted fields of ``item``."""
    at = _utc_text(item.occurred_at)
    canonical = "\n".join(
        (str(item.id), item.label, str(item.door), item.category, str(item.net_g), at)
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _utc_text(at: dt.datetime) -> str:
    """``at`` in UTC as ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")`` spells it (stored hashes use it).

    Total over what the schema accepts: a local time whose UTC falls outside
    datetime's years 1..9999 (``0001-01-01T00:00:00+01:00``) is spelled too,
    so such an item reaches the checks and is rejected there, alone.
    """
    try:
        at = at.astimezone(dt.UTC)
    except OverflowError:
        return _utc_text_out_of_range(at)
    if at.year < 1000:  # strftime's %Y pads these, or not, by platform
        return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # the same text in a quarter of strftime's time
    return (
        f"{at.year}-{at.month:02}-{at.day:02}"
        f"T{at.hour:02}:{at.minute:02}:{at.second:02}.{at.microsecond:06}Z"
    )


def _utc_text_out_of_range(at: dt.datetime) -> str:
    """``at`` in UTC when that is 0000-12-31 (east of UTC on 0001-01-01) or 10000-01-01."""
    offset = at.utcoffset()
    local = at.replace(tzinfo=None)
    if offset > dt.timedelta(0):
        # the UTC day before 0001-01-01: local + (1 day - offset) stays on that first day
        day, clock = "0000-12-31", local + (dt.timedelta(days=1) - offset)
    else:
        # the UTC day after 9999-12-31: local - (offset + 1 day) stays on that last day
        day, clock = "10000-01-01", local - (offset + dt.timedelta(days=1))
    return f"{day}T{clock:%H:%M:%S}.{clock.microsecond:06}Z"


def rules_until(now: dt.datetime, limits: Limits) -> dt.datetime:
    """Return the latest instant a deposit of this request may have: rules up to it matter."""
    return now + dt.timedelta(seconds=limits.max_ahead_s)


def load_kiosk(session: Session, kiosk_id: str, until: dt.datetime) -> KioskContext:
    """Return an enabled kiosk with its setup (NotFound / Unauthorized otherwise)."""
    kiosk = store.kiosk_context(session.connection(), kiosk_id, until)
    if kiosk is None:
        raise NotFound(f"no kiosk {kiosk_id!r}")
    if not kiosk.enabled:
        raise Unauthorized(f"kiosk {kiosk_id!r} is disabled", code="kiosk_disabled")
    return kiosk


def in_transaction(db, work: Callable[[Session, int], T], *, attempts: int = MAX_ATTEMPTS) -> T:
    """Run ``work(session, attempt)`` in one transaction, retrying it whole after a lost race."""
    for attempt in range(1, attempts + 1):
        try:
            with db.begin() as session:
                return work(session, attempt)
        except (_RaceLost, DBAPIError) as exc:
            if isinstance(exc, DBAPIError) and not _retryable(exc):
                raise
            log.info("batch transaction retried (attempt %d): %s", attempt, exc)
            # full jitter keeps racing kiosks from colliding again in step
            time.sleep(random.uniform(0, 0.005 * 2**attempt))
    raise IngestBusy("the batch collided with concurrent batches too often; retry it later")


def _retryable(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _RETRY_SQLSTATES
    # SQLite serialises writers, so a UNIQUE violation cannot be a race there
    return False


def ingest(
    db,
    kiosk_id: str,
    items: Sequence[DepositIn],
    *,
    limits: Limits = DEFAULT_LIMITS,
    now: dt.datetime | None = None,
) -> list[Outcome]:
    """Apply a batch from ``kiosk_id`` in its own transaction (with retries)."""

    def work(session: Session, attempt: int) -> list[Outcome]:
        at = now or dt.datetime.now(dt.UTC)
        kiosk = load_kiosk(session, kiosk_id, rules_until(at, limits))
        return apply_batch(session, kiosk, items, limits=limits, now=at)

    return in_transaction(db, work)


def apply_batch(
    session: Session,
    kiosk: KioskContext,
    items: Sequence[DepositIn],
    *,
    limits: Limits = DEFAULT_LIMITS,
    now: dt.datetime | None = None,
) -> list[Outcome]:
    """Apply a batch inside the caller's transaction; return one outcome per item.

    ``kiosk`` comes from ``load_kiosk`` (or the request's authentication)
    with rules loaded up to ``rules_until(now, limits)``.  Raises ``RaceLost``
    when a concurrent transaction took a label or an id after the reads:
    ``in_transaction`` retries the whole transaction.
    """
    now = now or dt.datetime.now(dt.UTC)
    checked = [plan.check(kiosk, item, now, limits) for item in items]
    serials = [c.serial for c in checked if isinstance(c, plan.Checked)]
    labels, accounts = {}, {}
    if serials:
        # the account locks serialise every transaction touching these
        # households, their labels' claims and their daily totals included
        labels, accounts = store.labels_with_locked_accounts(session, serials)
    conn = session.connection()
    # read after the locks: an id a concurrent upload recorded is seen now
    recorded = store.recorded(conn, {item.id for item in items})
    # duplicates answer with their household's current balance
    others = {r.household_id for r in recorded.values()} - accounts.keys()
    if others:
        accounts.update(ledger.read_accounts(session, others))
    keys = plan.day_keys(kiosk, checked, labels)
    decided = plan.decide(
        kiosk,
        items,
        digests=[content_hash(item) for item in items],
        checked=checked,
        recorded=recorded,
        labels=labels,
        accounts=accounts,
        totals=points.load_daily_totals(session, keys) if keys else {},
    )
    store.write(session, kiosk, decided, accounts, now)
    return decided.outcomes


# ------------------------------------------- one deposit, one round trip (PostgreSQL)


def apply_one_fn(
    engine, kiosk: KioskContext, nonce: str, item: DepositIn, *, limits: Limits, now
) -> Outcome | None:
    """Record ``nonce`` and apply one deposit in one call of ``pg_one``; None: the general path.

    ``kiosk`` is a kept copy (every rule version); the function records the
    nonce only while that copy is current.  The plan is ``plan.assume_ordinary``'s;
    an item it rejects or does not accept with a claim, or any assumption the
    function finds false, goes to the general path, which answers it.
    """
    checked = plan.check(kiosk, item, now, limits)
    if not isinstance(checked, plan.Checked):
        return None  # a rejected id may still be a duplicate: the general path knows
    assumed = plan.assume_ordinary(kiosk, item, content_hash(item), checked)
    if assumed is None:
        return None
    balance = pg_one.call(engine, _fn_args(kiosk, nonce, now, assumed))
    if balance is None:
        return None
    [outcome] = assumed.plan.outcomes
    return plan.with_balance(outcome, balance)


def _fn_args(kiosk: KioskContext, nonce: str, now, assumed: plan.Assumed) -> dict:
    """The function's arguments: the plan's decisions and assumptions, by name."""
    ref, d, posting = kiosk.ref, assumed.deposit, assumed.posting
    item = d.item
    return {
        "p_kiosk_id": ref.kiosk_id,
        "p_nonce": nonce,
        "p_now": now,
        "p_secret_as_stored": kiosk.secret_as_stored,
        "p_timezone": ref.timezone,
        "p_label_key": ref.label_public_key,
        "p_rules_mark": kiosk.rules_mark,
        "p_serial": d.serial,
        "p_household_code": assumed.label.household_code,
        "p_community_id": ref.community_id,
        "p_deposit_id": item.id,
        "p_door": item.door,
        "p_category_id": d.category_id,
        "p_net_g": item.net_g,
        "p_occurred_at": item.occurred_at,
        "p_local_day": d.local_day,
        "p_content_hash": d.content_hash,
        "p_status": d.status,
        "p_rule_id": d.award.rule_id,
        "p_points": d.award.points,
        "p_reason": d.award.reason,
        "p_max_credited": assumed.max_credited,
        "p_entry_kind": posting.kind if posting else None,
        "p_entry_reason": posting.reason if posting else None,
        "p_source_type": posting.source_type if posting else None,
        "p_source_id": posting.source_id if posting else None,
        "p_idempotency_key": posting.idempotency_key if posting else None,
    }
