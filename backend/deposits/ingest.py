"""Deposit ingest: apply one kiosk batch exactly once (docs/protocol.md, "Deposits").

Each item ends as one of:

* ``accepted`` – recorded, points credited (possibly 0: ``below_minimum``,
  ``daily_cap``, ``no_rule``);
* ``flagged`` – recorded, no points, held for staff (``label_reused``,
  ``implausible_weight``);
* ``rejected`` – not recorded, with an error code (CHECK_CODES);
* ``duplicate`` – the id was recorded before with the same content: the
  original status and points and the current balance;
* ``conflict`` – the id was recorded before with different content.

One batch is one transaction.  The statements, in a fixed lock order so
concurrent batches cannot deadlock: accounts of the households involved
``FOR NO KEY UPDATE`` (ascending household; this lock also serialises the
household's labels and daily totals) -> label claims (``UPDATE labels SET
first_deposit_id = :id WHERE serial = :s AND first_deposit_id IS NULL``: a
label credits the deposit that claims it, atomically) -> daily totals ->
ledger entries -> deposits ``INSERT ... ON CONFLICT (id) DO NOTHING``
(ascending id).  If a concurrent batch recorded one of our ids after we
looked (fewer rows go in than were sent), the whole transaction is rolled
back and retried, and the retry sees that deposit as a duplicate: every
deposit is credited exactly once.  The SQL itself is in ``store``.

A batch of one item - what a kiosk sends as each bag goes in - takes a
shorter path (``_apply_one``) with the same checks, claim plan and scoring:
one read that locks the account and also finds a recorded id, then (on
PostgreSQL) one statement for every write.  A count that comes back short
there - a label claimed or an id recorded while the read waited for its
lock - rolls the transaction back and retries it on the general path.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import nacl.exceptions
import nacl.signing
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from backend.core.errors import NotFound, SortpointError, Unauthorized
from backend.deposits import pg_one as store_fn
from backend.deposits import store
from backend.ledger import points
from backend.ledger import services as ledger
from protocol import labels as plabels

log = logging.getLogger(__name__)
KioskRef = store.KioskRef
KioskContext = store.KioskContext
T = TypeVar("T")

#: attempts of one batch transaction before giving up with IngestBusy
MAX_ATTEMPTS = 6
#: PostgreSQL SQLSTATEs worth a retry: serialization failure, deadlock, unique violation
_RETRY_SQLSTATES = {"40001", "40P01", "23505"}

CHECK_CODES = (
    "label_malformed",
    "label_bad_signature",
    "label_revoked",
    "label_unknown",
    "label_wrong_community",
    "unknown_door",
    "unknown_category",
    "door_category_mismatch",
    "net_g_out_of_range",
    "occurred_at_in_future",
    "occurred_at_too_old",
)


class IngestBusy(SortpointError):
    """A batch kept colliding with concurrent batches; the kiosk should retry later."""

    code = "busy"
    http_status = 503


class _RaceLost(Exception):
    """A concurrent transaction changed what this batch read; retry it whole."""


@dataclass(frozen=True, slots=True)
class DepositIn:
    """One deposit as the kiosk submitted it (already type-checked)."""

    id: uuid.UUID
    label: str
    door: int
    category: str
    net_g: int
    occurred_at: dt.datetime


@dataclass(slots=True)
class Outcome:
    """The answer for one item, in the order the items came."""

    id: str
    status: str
    points: int = 0
    balance: int | None = None
    reason: str | None = None
    error: dict | None = None
    #: for a duplicate: the status the id was recorded with
    original_status: str | None = None

    def to_json(self) -> dict:
        """Return the wire form (docs/protocol.md)."""
        return {
            "id": self.id,
            "status": self.status,
            "points": self.points,
            "balance": self.balance,
            "reason": self.reason,
            "original_status": self.original_status,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class Limits:
    """How far occurred_at may be ahead of or behind the server clock."""

    max_age_s: int = 30 * 24 * 3600
    max_ahead_s: int = 300


@dataclass(slots=True)
class _Candidate:
    """A new item that passed the checks that need no locks."""

    index: int
    item: DepositIn
    digest: str
    serial: str
    household_code: str
    category: store.CategoryInfo
    household_id: int = 0
    day: dt.date | None = None


@dataclass(slots=True)
class _Batch:
    """Working state of one batch inside its transaction."""

    ref: KioskRef
    items: Sequence[DepositIn]
    now: dt.datetime
    outcomes: list[Outcome | None]
    digests: list[str]
    candidates: list[_Candidate] = field(default_factory=list)
    existing: dict[uuid.UUID, tuple] = field(default_factory=dict)


@dataclass(slots=True)
class _Writes:
    """What scoring decided to write: daily total increments, postings, deposit rows."""

    increments: dict
    postings: list[ledger.Posting]
    rows: list[dict]
    #: household -> balance after this batch, as scoring counted it
    running: dict[int, int]


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
    limits: Limits = Limits(),
    now: dt.datetime | None = None,
) -> list[Outcome]:
    """Apply a batch from ``kiosk_id`` in its own transaction (with retries)."""

    def work(session: Session, attempt: int) -> list[Outcome]:
        at = now or dt.datetime.now(dt.UTC)
        kiosk = load_kiosk(session, kiosk_id, rules_until(at, limits))
        return apply_batch(session, kiosk, items, limits=limits, now=at, recheck=attempt > 1)

    return in_transaction(db, work)


def apply_batch(
    session: Session,
    kiosk: KioskContext,
    items: Sequence[DepositIn],
    *,
    limits: Limits = Limits(),
    now: dt.datetime | None = None,
    recheck: bool = False,
) -> list[Outcome]:
    """Apply a batch inside the caller's transaction; return one outcome per item.

    ``kiosk`` comes from ``load_kiosk`` (or the request's authentication)
    with rules loaded up to ``rules_until(now, limits)``.  ``recheck`` (set on
    a retry) looks the new ids up again once the locks are held, so a batch
    that lost a race sees the winner's deposits as duplicates instead of
    losing again.
    """
    now = now or dt.datetime.now(dt.UTC)
    if len(items) == 1 and not recheck:
        outcome = _apply_one(session, kiosk, items[0], limits, now)
        if outcome is not None:
            return [outcome]
    conn = session.connection()
    ref, setup = kiosk.ref, kiosk.setup
    batch = _Batch(ref, items, now, [None] * len(items), [content_hash(i) for i in items])
    batch.existing = store.existing(conn, {i.id for i in items})
    for index, item in enumerate(items):
        if item.id in batch.existing:
            continue
        checked = _check(ref, setup, item, now, limits)
        if isinstance(checked, Outcome):
            batch.outcomes[index] = checked
        else:
            checked.index, checked.digest = index, batch.digests[index]
            batch.candidates.append(checked)
    labels, accounts = {}, {}
    if batch.candidates:
        # the account locks serialise every batch touching these households,
        # including their labels' claims and their daily totals
        labels, accounts = store.labels_with_locked_accounts(
            session, [c.serial for c in batch.candidates]
        )
    _check_labels(batch, labels)
    # duplicates answer with their household's current balance
    others = {row[3] for row in batch.existing.values()} - accounts.keys()
    if others:
        accounts.update(ledger.read_accounts(session, others))
    if recheck and batch.candidates:
        _recheck(conn, batch)
    won = store.claim_labels(conn, _plan_claims(batch, labels))
    _decide(session, batch, setup.rules, won, accounts)
    return batch.outcomes


def _plan_claims(batch: _Batch, labels: dict[str, tuple]) -> dict[str, uuid.UUID]:
    """Pick, per unclaimed label, the first candidate in order that may claim it."""
    plan: dict[str, uuid.UUID] = {}
    seen_ids: set[uuid.UUID] = set()
    for c in batch.candidates:
        first_use = c.item.id not in seen_ids
        seen_ids.add(c.item.id)
        plausible = c.item.net_g <= c.category.max_plausible_g
        if first_use and plausible and labels[c.serial][3] is None and c.serial not in plan:
            plan[c.serial] = c.item.id
    return plan


def _recheck(conn, batch: _Batch) -> None:
    """Move candidates recorded by a concurrent batch (now committed) to the existing ones."""
    late = store.existing(conn, {c.item.id for c in batch.candidates})
    if late:
        batch.existing.update(late)
        batch.candidates = [c for c in batch.candidates if c.item.id not in late]


@functools.lru_cache(maxsize=1024)
def _verify_key(text: str) -> nacl.signing.VerifyKey:
    # libsodium verifies Ed25519 about twice as fast as OpenSSL here, and
    # label checks are a tenth of a batch (docs/performance.md); the kiosk
    # keeps protocol.labels (cryptography), the same RFC 8032 signatures
    return nacl.signing.VerifyKey(plabels.public_key_from_text(text).public_bytes_raw())


def _signature_ok(public_key_text: str, signature: bytes, message: bytes) -> bool:
    try:
        _verify_key(public_key_text).verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def _reject(item: DepositIn, code: str, message: str) -> Outcome:
    return Outcome(str(item.id), "rejected", error={"code": code, "message": message})


def _check(
    ref: KioskRef, setup: store.Setup, item: DepositIn, now, limits: Limits
) -> Outcome | _Candidate:
    """Run every check that needs no lock; return a rejection or a candidate."""
    ahead_s = (item.occurred_at - now).total_seconds()
    if ahead_s > limits.max_ahead_s:
        return _reject(
            item,
            "occurred_at_in_future",
            f"occurred_at is {int(ahead_s)} s ahead of the server clock",
        )
    if -ahead_s > limits.max_age_s:
        return _reject(
            item,
            "occurred_at_too_old",
            f"occurred_at is older than the accepted backlog of {limits.max_age_s} s",
        )
    door = setup.doors.get(item.door)
    if door is None:
        return _reject(item, "unknown_door", f"door {item.door} is not a door of this kiosk")
    category = setup.categories.get(item.category)
    if category is None:
        return _reject(item, "unknown_category", f"category {item.category!r} is not known here")
    if door.category_id != category.id:
        return _reject(
            item,
            "door_category_mismatch",
            f"door {item.door} does not take {item.category!r}",
        )
    if not 0 < item.net_g <= door.capacity_g:
        return _reject(
            item,
            "net_g_out_of_range",
            f"net_g {item.net_g} is outside 1..{door.capacity_g} for door {item.door}",
        )
    try:
        claims, signature = plabels.parse_label(item.label)
    except plabels.LabelError as exc:
        return _reject(item, exc.code, str(exc))
    if claims.community != ref.community_slug:
        return _reject(
            item,
            "label_wrong_community",
            f"the label belongs to community {claims.community!r}",
        )
    signed = f"{plabels.VERSION}.{claims.community}.{claims.household}.{claims.serial}"
    if not _signature_ok(ref.label_public_key, signature, signed.encode("ascii")):
        return _reject(item, "label_bad_signature", "label signature does not verify")
    return _Candidate(0, item, "", claims.serial, claims.household, category)


def _check_labels(batch: _Batch, labels: dict[str, tuple]) -> None:
    """Reject candidates whose label is unknown here or revoked; bind their household."""
    kept = []
    for c in batch.candidates:
        row = labels.get(c.serial)
        if row is None or row[1] != c.household_code or row[4] != batch.ref.community_id:
            batch.outcomes[c.index] = _reject(
                c.item,
                "label_unknown",
                f"label {c.serial} was never issued to this household",
            )
        elif row[2] is not None and row[2] <= c.item.occurred_at:
            batch.outcomes[c.index] = _reject(
                c.item, "label_revoked", f"label {c.serial} was revoked"
            )
        else:
            c.household_id = row[0]
            c.day = points.local_day(c.item.occurred_at, batch.ref.timezone)
            kept.append(c)
    batch.candidates = kept


def _daily_totals(session: Session, batch: _Batch, rules: points.RuleBook) -> dict:
    """Read the day's totals, only for candidates whose rule has a cap."""
    keys = {
        (c.household_id, c.category.id, c.day)
        for c in batch.candidates
        if (rule := rules.in_force(c.category.id, c.item.occurred_at))
        and rule.daily_cap is not None
    }
    return points.load_daily_totals(session, keys) if keys else {}


def _decide(
    session: Session,
    batch: _Batch,
    rules: points.RuleBook,
    won: dict[str, uuid.UUID],
    accounts: dict[int, ledger.AccountState],
) -> None:
    """Score the candidates in order (``won``: the label claims that held), then write."""
    _write(session, accounts, _score_all(session, batch, rules, won, accounts))


def _score_all(
    session: Session,
    batch: _Batch,
    rules: points.RuleBook,
    won: dict[str, uuid.UUID],
    accounts: dict[int, ledger.AccountState],
) -> _Writes:
    """Fill every outcome still open, in order; return what must be written."""
    totals = _daily_totals(session, batch, rules)
    running = {h: state.balance for h, state in accounts.items()}
    recorded: dict[uuid.UUID, tuple] = dict(batch.existing)
    by_index = {c.index: c for c in batch.candidates}
    increments, postings, rows = {}, [], []
    for index, item in enumerate(batch.items):
        if batch.outcomes[index] is not None:
            continue  # rejected by a check
        if item.id in recorded:
            batch.outcomes[index] = _repeat(item, batch.digests[index], recorded[item.id], running)
            continue
        c = by_index[index]
        status, award = _score(c, rules, won, totals, increments)
        if award.points:
            running[c.household_id] += award.points
            postings.append(_posting(c, award.points))
        rows.append(_deposit_row(batch, c, status, award))
        recorded[item.id] = (
            c.digest,
            status,
            award.points,
            c.household_id,
            award.reason,
        )
        batch.outcomes[index] = Outcome(
            str(item.id), status, award.points, running[c.household_id], award.reason
        )
    return _Writes(increments, postings, rows, running)


def _score(c: _Candidate, rules: points.RuleBook, won: dict, totals: dict, increments: dict):
    """Return (status, award) of one new deposit; count accepted points towards its cap."""
    rule = rules.in_force(c.category.id, c.item.occurred_at)
    rule_id = rule.id if rule else None
    if c.item.net_g > c.category.max_plausible_g:
        return "flagged", points.Award(0, rule_id, "implausible_weight")
    if won.get(c.serial) != c.item.id:
        return "flagged", points.Award(0, rule_id, "label_reused")
    key = (c.household_id, c.category.id, c.day)
    award = points.score(rule, c.item.net_g, totals.get(key, 0) + increments.get(key, 0))
    increments[key] = increments.get(key, 0) + award.points
    return "accepted", award


def _repeat(item: DepositIn, digest: str, original: tuple, running: dict[int, int]) -> Outcome:
    """Answer an id recorded before: duplicate (same content) or conflict."""
    stored_digest, status, pts, household_id, reason = original
    if stored_digest == digest:
        return Outcome(
            str(item.id),
            "duplicate",
            pts,
            running.get(household_id),
            reason,
            original_status=status,
        )
    return Outcome(
        str(item.id),
        "conflict",
        error={
            "code": "conflict",
            "message": "this id was recorded before with different content",
        },
    )


def _posting(c: _Candidate, amount: int) -> ledger.Posting:
    deposit_id = str(c.item.id)
    return ledger.Posting(
        c.household_id,
        "deposit",
        amount,
        f"{c.item.net_g} g {c.item.category}",
        "deposit",
        deposit_id,
        idempotency_key="deposit:" + deposit_id,
    )


def _deposit_row(batch: _Batch, c: _Candidate, status: str, award: points.Award) -> dict:
    item = c.item
    return {
        "id": item.id,
        "kiosk_id": batch.ref.kiosk_id,
        "community_id": batch.ref.community_id,
        "household_id": c.household_id,
        "label_serial": c.serial,
        "door": item.door,
        "category_id": c.category.id,
        "net_g": item.net_g,
        "occurred_at": item.occurred_at,
        "local_day": c.day,
        "received_at": batch.now,
        "status": status,
        "points": award.points,
        "rule_id": award.rule_id,
        "reason": award.reason,
        "content_hash": c.digest,
    }


def _write(session, accounts, writes: _Writes) -> None:
    """Write daily totals, ledger entries and deposits, in lock order."""
    conn = session.connection()
    points.add_daily_totals(session, writes.increments)
    if writes.postings:
        # the deposit id is the idempotency key: its unique index backs up the
        # deposits primary key, so the ledger needs no extra look-up here
        ledger.post_many(
            session,
            writes.postings,
            locked=accounts,
            check_keys=False,
            return_ids=False,
        )
        _check_balances(accounts, writes)
    rows = writes.rows
    if rows:
        inserted = store.insert_deposits(conn, rows)
        if inserted != len(rows):
            raise _RaceLost(f"{len(rows) - inserted} deposit ids were recorded concurrently")


def _check_balances(accounts: dict[int, ledger.AccountState], writes: _Writes) -> None:
    for household_id in {p.household_id for p in writes.postings}:
        if accounts[household_id].balance != writes.running[household_id]:
            raise AssertionError("ledger and ingest disagree on a balance")


# ------------------------------------------------------------ one deposit


def _apply_one(
    session: Session, kiosk: KioskContext, item: DepositIn, limits: Limits, now
) -> Outcome | None:
    """Apply a one-item batch in fewer statements; None: use the general path instead.

    The same checks, claim plan and scoring as a batch; only the reads and
    writes are fused (``store.lock_one`` / ``write_one``).  A check
    that rejects the item, an unknown label or a household without an account
    take the general path, which answers them (a rejected id may still be a
    duplicate, so it needs the id look-up first).
    """
    checked = _check(kiosk.ref, kiosk.setup, item, now, limits)
    if isinstance(checked, Outcome):
        return None
    conn = session.connection()
    found = store.lock_one(conn, checked.serial, item.id)
    if found is None:
        return None
    label, account, recorded = found
    batch = _Batch(kiosk.ref, [item], now, [None], [content_hash(item)])
    if recorded is not None:
        return _repeat(item, batch.digests[0], recorded, {label[0]: account.balance})
    checked.digest = batch.digests[0]
    batch.candidates.append(checked)
    labels = {checked.serial: label}
    _check_labels(batch, labels)
    if batch.candidates:
        plan = _plan_claims(batch, labels)
        accounts = {label[0]: account}
        # scored as if the claim holds; the write checks that it did
        writes = _score_all(session, batch, kiosk.setup.rules, plan, accounts)
        _write_one(session, accounts, writes, plan, now)
    return batch.outcomes[0]


def _write_one(session: Session, accounts, writes: _Writes, plan: dict, now) -> None:
    """Write one new deposit: one statement on PostgreSQL, the batch writes on SQLite."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        # SQLite serialises writers (BEGIN IMMEDIATE): the claim read is current
        if store.claim_labels(conn, plan) != plan:
            raise _RaceLost("a label was claimed concurrently")
        _write(session, accounts, writes)
        return
    [row] = writes.rows
    entry = account = total = None
    if writes.postings:
        [posting] = writes.postings
        state = accounts[posting.household_id]
        entry = ledger.stage(posting, state, now)
        account = (posting.household_id, state, now)
        [(key, amount)] = writes.increments.items()
        total = (*key, amount)
        _check_balances(accounts, writes)
    claimed, inserted = store.write_one(
        conn, row, claim=plan, entry=entry, account=account, total=total
    )
    if claimed != len(plan) or inserted != 1:
        raise _RaceLost("the label or the deposit id was taken concurrently")


# ------------------------------------------- one deposit, one round trip (PostgreSQL)


def apply_one_fn(
    engine, kiosk: KioskContext, nonce: str, item: DepositIn, *, limits: Limits, now
) -> Outcome | None:
    """Record ``nonce`` and apply one new deposit in one call of ``pg_one``; None: general path.

    ``kiosk`` is a kept copy (every rule version); the function records the
    nonce only while that copy is current.  Python decides everything it can
    (the checks, the rule, the points before the cap: ``points.score`` with
    nothing credited yet); the function applies the cap against the locked
    day's total with the same formula.  Whatever is not a new, plausible
    deposit that claims its label goes to the general path, which answers it.
    """
    checked = _check(kiosk.ref, kiosk.setup, item, now, limits)
    if isinstance(checked, Outcome) or item.net_g > checked.category.max_plausible_g:
        return None
    ref = kiosk.ref
    rule = kiosk.setup.rules.in_force(checked.category.id, item.occurred_at)
    base = points.score(rule, item.net_g, 0)
    posting = _posting(checked, 0)
    done = store_fn.call(
        engine,
        {
            "p_kiosk_id": ref.kiosk_id,
            "p_nonce": nonce,
            "p_now": now,
            "p_secret": kiosk.secret,
            "p_timezone": ref.timezone,
            "p_label_key": ref.label_public_key,
            "p_rules_mark": kiosk.rules_mark,
            "p_serial": checked.serial,
            "p_household_code": checked.household_code,
            "p_community_id": ref.community_id,
            "p_deposit_id": item.id,
            "p_door": item.door,
            "p_category_id": checked.category.id,
            "p_net_g": item.net_g,
            "p_occurred_at": item.occurred_at,
            "p_local_day": points.local_day(item.occurred_at, ref.timezone),
            "p_content_hash": content_hash(item),
            "p_rule_id": base.rule_id,
            "p_points": base.points,
            "p_reason": base.reason,
            "p_daily_cap": rule.daily_cap if rule is not None else None,
            "p_entry_kind": posting.kind,
            "p_entry_reason": posting.reason,
            "p_source_type": posting.source_type,
            "p_source_id": posting.source_id,
            "p_idempotency_key": posting.idempotency_key,
        },
    )
    if done is None:
        return None
    awarded, reason, balance = done
    return Outcome(posting.source_id, "accepted", awarded, balance, reason)
