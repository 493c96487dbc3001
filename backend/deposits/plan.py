"""The ingest plan: every decision about a kiosk's upload, made once, with no database.

Given the items, the kiosk's set-up and what the database holds about them
(named rows: ``Recorded`` ids, ``LabelRow`` labels, locked ``AccountState``
accounts, the day totals a cap needs), ``decide`` answers each item
(docs/protocol.md, "Deposits"):

* ``accepted`` - recorded, points credited (possibly 0: ``below_minimum``,
  ``daily_cap``, ``no_rule``);
* ``flagged`` - recorded, no points, held for staff (``label_reused``,
  ``implausible_weight``);
* ``rejected`` - not recorded, with an error code (``CHECK_CODES``);
* ``duplicate`` - the id was recorded before with the same content: the
  original status and points and the current balance;
* ``conflict`` - the id was recorded before with different content;

and says what to write: label claims, daily total increments, ledger
postings, deposit rows.  The writers (``store`` for every database,
``pg_one`` for PostgreSQL's one-deposit call) write that and nothing else.

``assume_ordinary`` makes the same plan for one item before anything is read,
on the assumptions of the common case (a new id, the payload's label unclaimed
and unrevoked, the day's total 0); the one-deposit writer checks them against
the locked rows and falls back to the general path when one does not hold.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import nacl.exceptions
import nacl.signing

from backend.deposits.context import CategoryInfo, KioskContext
from backend.ledger import points
from backend.ledger.services import AccountState, Posting
from protocol import labels as plabels

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

#: the household of an assumed label (``assume_ordinary``): no real household has id 0
ASSUMED_HOUSEHOLD = 0


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


# ------------------------------------------------------------ named inputs


@dataclass(frozen=True, slots=True)
class LabelRow:
    """A label as issued: its household, community, revocation and first deposit."""

    household_id: int
    household_code: str
    community_id: int
    revoked_at: dt.datetime | None
    first_deposit_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class Recorded:
    """A deposit id recorded before, as a repeat of it is answered."""

    content_hash: str
    status: str
    points: int
    household_id: int
    reason: str | None


@dataclass(frozen=True, slots=True)
class Checked:
    """An item that passed every check that needs no database."""

    item: DepositIn
    serial: str
    household_code: str
    category: CategoryInfo


# ------------------------------------------------------------------ the plan


@dataclass(frozen=True, slots=True)
class NewDeposit:
    """A deposit row to write, as decided."""

    item: DepositIn
    content_hash: str
    serial: str
    household_id: int
    category_id: int
    local_day: dt.date
    status: str
    award: points.Award


@dataclass(slots=True)
class Plan:
    """What ``decide`` answered and what the writers write, in lock order."""

    outcomes: list[Outcome]
    #: serial -> the deposit that claims the label's single credit
    claims: dict[str, uuid.UUID] = field(default_factory=dict)
    #: (household, category, local day) -> points to add to the day's total
    increments: dict[points.DayKey, int] = field(default_factory=dict)
    postings: list[Posting] = field(default_factory=list)
    deposits: list[NewDeposit] = field(default_factory=list)
    #: household -> its balance after the postings
    balances: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Assumed:
    """A one-item plan made before any read, with what it assumed of the database."""

    plan: Plan
    #: the label row assumed (its household unknown: ``ASSUMED_HOUSEHOLD``)
    label: LabelRow
    deposit: NewDeposit
    posting: Posting | None
    #: the most points credited that day for which the award holds (None: any)
    max_credited: int | None


# ------------------------------------------------------------------ checks


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


def check(
    kiosk: KioskContext, item: DepositIn, now: dt.datetime, limits: Limits
) -> Outcome | Checked:
    """Run every check that needs no database; return a rejection or the checked item."""
    ref, setup = kiosk.ref, kiosk.setup
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
    return Checked(item, claims.serial, claims.household, category)


def _label_verdict(c: Checked, label: LabelRow | None, community_id: int) -> Outcome | None:
    """Reject a checked item whose label is unknown here or revoked when it was used."""
    if (
        label is None
        or label.household_code != c.household_code
        or (label.community_id != community_id)
    ):
        return _reject(
            c.item, "label_unknown", f"label {c.serial} was never issued to this household"
        )
    if label.revoked_at is not None and label.revoked_at <= c.item.occurred_at:
        return _reject(c.item, "label_revoked", f"label {c.serial} was revoked")
    return None


def day_keys(
    kiosk: KioskContext,
    checked: Sequence[Outcome | Checked | None],
    labels: Mapping[str, LabelRow],
) -> set[points.DayKey]:
    """Return the day totals ``decide`` needs: those of items whose rule has a cap."""
    keys = set()
    for c in checked:
        if not isinstance(c, Checked) or c.serial not in labels:
            continue
        rule = kiosk.setup.rules.in_force(c.category.id, c.item.occurred_at)
        if points.needs_total(rule):
            day = points.local_day(c.item.occurred_at, kiosk.ref.timezone)
            keys.add((labels[c.serial].household_id, c.category.id, day))
    return keys


# ------------------------------------------------------------------ decide


def decide(
    kiosk: KioskContext,
    items: Sequence[DepositIn],
    *,
    digests: Sequence[str],
    checked: Sequence[Outcome | Checked],
    recorded: Mapping[uuid.UUID, Recorded],
    labels: Mapping[str, LabelRow],
    accounts: Mapping[int, AccountState],
    totals: Mapping[points.DayKey, int],
) -> Plan:
    """Answer every item, in order, and say what to write.

    ``checked`` is ``check`` of each item; ``recorded`` the ids recorded
    before; ``labels`` the labels of the checked items; ``accounts`` the
    locked accounts of their households and of the recorded ids'; ``totals``
    the day totals ``day_keys`` named (missing: 0).  An id recorded before is
    a duplicate or a conflict whatever its checks say; a repeated id in the
    batch answers as a repeat of its first occurrence.
    """
    ref = kiosk.ref
    plan = Plan([None] * len(items))  # type: ignore[list-item]
    running = {h: state.balance for h, state in accounts.items()}
    seen: dict[uuid.UUID, Recorded] = {}
    for index, item in enumerate(items):
        digest, c = digests[index], checked[index]
        if item.id in recorded:
            plan.outcomes[index] = _repeat(item, digest, recorded[item.id], running)
            continue
        if isinstance(c, Outcome):
            plan.outcomes[index] = c
            continue
        label = labels.get(c.serial)
        verdict = _label_verdict(c, label, ref.community_id)
        if verdict is not None:
            plan.outcomes[index] = verdict
            continue
        if item.id in seen:  # an id twice in this batch: a repeat of its first
            plan.outcomes[index] = _repeat(item, digest, seen[item.id], running)
            continue
        household = label.household_id
        day = points.local_day(item.occurred_at, ref.timezone)
        key = (household, c.category.id, day)
        rule = kiosk.setup.rules.in_force(c.category.id, item.occurred_at)
        rule_id = rule.id if rule else None
        if item.net_g > c.category.max_plausible_g:
            status, award = "flagged", points.Award(0, rule_id, "implausible_weight")
        elif label.first_deposit_id is not None or c.serial in plan.claims:
            status, award = "flagged", points.Award(0, rule_id, "label_reused")
        else:
            plan.claims[c.serial] = item.id
            credited = totals.get(key, 0) + plan.increments.get(key, 0)
            status, award = "accepted", points.score(rule, item.net_g, credited)
            plan.increments[key] = plan.increments.get(key, 0) + award.points
        if award.points:
            running[household] += award.points
            plan.postings.append(_posting(item, household, award.points))
        plan.deposits.append(
            NewDeposit(item, digest, c.serial, household, c.category.id, day, status, award)
        )
        seen[item.id] = Recorded(digest, status, award.points, household, award.reason)
        plan.outcomes[index] = Outcome(
            str(item.id), status, award.points, running[household], award.reason
        )
    plan.balances = {p.household_id: running[p.household_id] for p in plan.postings}
    return plan


def _repeat(item: DepositIn, digest: str, original: Recorded, running: dict[int, int]) -> Outcome:
    """Answer an id recorded before: duplicate (same content) or conflict."""
    if original.content_hash == digest:
        return Outcome(
            str(item.id),
            "duplicate",
            original.points,
            running.get(original.household_id),
            original.reason,
            original_status=original.status,
        )
    return Outcome(
        str(item.id),
        "conflict",
        error={
            "code": "conflict",
            "message": "this id was recorded before with different content",
        },
    )


def _posting(item: DepositIn, household_id: int, amount: int) -> Posting:
    deposit_id = str(item.id)
    return Posting(
        household_id,
        "deposit",
        amount,
        f"{item.net_g} g {item.category}",
        "deposit",
        deposit_id,
        idempotency_key="deposit:" + deposit_id,
    )


def assume_ordinary(
    kiosk: KioskContext, item: DepositIn, digest: str, checked: Checked
) -> Assumed | None:
    """Plan one checked item on the common case's assumptions; None: nothing to assume.

    Assumed: the id is new, the label is the payload's household's, of this
    community, unrevoked and unclaimed, and the day's total is 0; the plan is
    ``decide``'s on exactly those rows.  ``max_credited`` widens the last
    assumption to every total the award holds for.  An item the plan does not
    accept with its label's claim (an implausible weight) is left to the
    general path.
    """
    label = LabelRow(ASSUMED_HOUSEHOLD, checked.household_code, kiosk.ref.community_id, None, None)
    plan = decide(
        kiosk,
        [item],
        digests=[digest],
        checked=[checked],
        recorded={},
        labels={checked.serial: label},
        accounts={ASSUMED_HOUSEHOLD: AccountState(0, 0)},
        totals={},
    )
    if not plan.claims:
        return None
    [deposit] = plan.deposits
    rule = kiosk.setup.rules.in_force(deposit.category_id, item.occurred_at)
    return Assumed(
        plan,
        label,
        deposit,
        plan.postings[0] if plan.postings else None,
        points.award_holds_up_to(rule, item.net_g),
    )


def with_balance(outcome: Outcome, balance: int) -> Outcome:
    """Return ``outcome`` with the balance the writer read (an assumed plan's)."""
    return replace(outcome, balance=balance)
