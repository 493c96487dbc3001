"""The desk's services: the reward catalog (scoped edits, each one kept), redemptions and voids.

Every function takes the session of a transaction the caller opened
(``use_cases``); a domain error raised here rolls all of it back.  ``actor``
is the signed-in user or token (``backend.people.access``); ``None`` is the
operator at the command line, who may do everything.

A redemption takes its locks in one order, the ledger's: the household's
account (``ledger.lock_accounts``), then the rewards' rows in ascending id
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
serialises writers anyway), then the community's receipt counter.  A void
takes the account, then the rewards; an edit only its reward.  So no two of
them can deadlock, and a stock or a balance read under those locks is the one
written.  Each stock decrement is still a conditional ``UPDATE ... WHERE
stock >= :q`` whose row count is checked, and ``CHECK (stock >= 0)`` and the
ledger's ``CHECK (balance >= 0)`` stand behind both.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.core.errors import Forbidden, InvalidInput, NotFound, SortpointError
from backend.core.models import utcnow
from backend.core.sql import insert_ignore
from backend.desk.models import (
    REWARD_KINDS,
    ReceiptCounter,
    Redemption,
    RedemptionItem,
    RedemptionVoid,
    Reward,
    RewardChange,
)
from backend.ledger import services as ledger
from backend.ledger.models import LedgerEntry
from backend.ledger.services import IdempotencyConflict, Posting
from backend.people.access import Actor, Place
from backend.people.models import User
from backend.registry.models import Building, Community, Household

REWARDS = Reward.__table__
COUNTERS = ReceiptCounter.__table__
MAX_NAME_LEN = 100
MAX_REASON_LEN = 160
MAX_KEY_LEN = 100
MAX_ITEMS = 50
MAX_QUANTITY = 1000
MAX_POINTS = 10_000_000
MAX_STOCK = 10_000_000
MAX_FEN_PER_POINT = 10_000
#: the fields of a reward an edit may change (its community and kind are fixed)
EDITABLE = ("name", "points", "stock", "fen_per_point", "starts_at", "ends_at")


class InsufficientPoints(SortpointError):
    """The household's balance is below the redemption's points; nothing changed."""

    code = "insufficient_points"
    http_status = 409


class OutOfStock(SortpointError):
    """A reward has fewer left than asked for; nothing changed."""

    code = "out_of_stock"
    http_status = 409


class RewardUnavailable(SortpointError):
    """A reward outside its active window; nothing changed."""

    code = "reward_unavailable"
    http_status = 409


class AlreadyVoided(SortpointError):
    """The redemption was voided before; nothing changed."""

    code = "already_voided"
    http_status = 409


class VoidWindowPassed(SortpointError):
    """The redemption is older than the void window; nothing changed."""

    code = "void_window_passed"
    http_status = 409


# ------------------------------------------------------------------ checks


def _whole(value, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{what} must be a whole number in {low}..{high}, not {value!r}")
    return value


def _text(value, what: str, high: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > high:
        raise InvalidInput(f"{what} must be 1..{high} characters")
    return value.strip()


def _aware(value, what: str) -> dt.datetime | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise InvalidInput(f"{what} must be a time with a UTC offset")
    return value.astimezone(dt.UTC)


def _operator(actor: Actor | None) -> tuple[int | None, str]:
    return (None, "cli") if actor is None else (actor.user_id, actor.username)


def _community(session: Session, actor: Actor | None, slug: str) -> Community:
    """The community ``slug`` for a manager of it or an admin (Forbidden before anything else).

    An unknown slug is NotFound for an admin or the operator, Forbidden for
    others (they learn nothing about communities they may not act on).
    """
    if actor is not None:
        actor.require_role("manager")
    community = session.scalar(select(Community).where(Community.slug == slug))
    if community is None:
        if actor is None or actor.is_admin:
            raise NotFound(f"no community {slug!r}")
        raise Forbidden(f"user {actor.username!r} may not act on this community")
    if actor is not None:
        actor.require_community(community.id)
    return community


def _may_see_catalog(session: Session, actor: Actor, community_id: int) -> bool:
    """Admins, managers and staff of the community, staff of one of its buildings, its residents."""
    if actor.sees_community(community_id):
        return True
    if actor.role == "staff" and actor.buildings:
        model, ids = Building, actor.buildings
    elif actor.role == "resident" and actor.households:
        model, ids = Household, actor.households
    else:
        return False
    found = session.scalar(
        select(func.count())
        .select_from(model)
        .where(model.id.in_(sorted(ids)), model.community_id == community_id)
    )
    return bool(found)


# ------------------------------------------------------------------ catalog


def _in_window(reward, now: dt.datetime) -> bool:
    return (reward.starts_at is None or reward.starts_at <= now) and (
        reward.ends_at is None or now < reward.ends_at
    )


def _iso(value):
    return value.astimezone(dt.UTC).isoformat() if isinstance(value, dt.datetime) else value


def reward_info(reward: Reward, now: dt.datetime | None = None) -> dict:
    """A reward as the catalog shows it: price, cash value, stock left, window, available now."""
    now = now or utcnow()
    return {
        "id": reward.id,
        "name": reward.name,
        "kind": reward.kind,
        "points": reward.points,
        "fen_per_point": reward.fen_per_point,
        "cash_fen": reward.points * reward.fen_per_point if reward.kind == "cash" else None,
        "stock": reward.stock,
        "starts_at": _iso(reward.starts_at),
        "ends_at": _iso(reward.ends_at),
        "available": _in_window(reward, now) and (reward.stock is None or reward.stock > 0),
    }


def _checked_fields(fields: Mapping, kind: str) -> dict:
    """Check the editable fields given; return them normalised."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise InvalidInput(f"unknown reward fields: {', '.join(sorted(unknown))}")
    out: dict = {}
    if "name" in fields:
        out["name"] = _text(fields["name"], "a reward's name", MAX_NAME_LEN)
    if "points" in fields:
        out["points"] = _whole(fields["points"], "points", 1, MAX_POINTS)
    if "stock" in fields:
        out["stock"] = (
            None if fields["stock"] is None else _whole(fields["stock"], "stock", 0, MAX_STOCK)
        )
    if "fen_per_point" in fields:
        if kind != "cash":
            raise InvalidInput("only a cash reward has a rate (fen per point)")
        out["fen_per_point"] = _whole(
            fields["fen_per_point"], "fen per point", 1, MAX_FEN_PER_POINT
        )
    for name in ("starts_at", "ends_at"):
        if name in fields:
            out[name] = _aware(fields[name], name)
    return out


def fields_from_json(body, allowed: tuple[str, ...]) -> dict:
    """A JSON object's reward fields (``allowed`` names), with times read from ISO 8601 text."""
    if not isinstance(body, dict):
        raise InvalidInput("send a JSON object of reward fields")
    unknown = set(body) - set(allowed)
    if unknown:
        raise InvalidInput(f"unknown reward fields: {', '.join(sorted(unknown))}")
    fields = dict(body)
    for name in ("starts_at", "ends_at"):
        value = fields.get(name)
        if value is not None:
            try:
                fields[name] = dt.datetime.fromisoformat(value) if isinstance(value, str) else 0
            except ValueError:
                fields[name] = 0
            if not isinstance(fields[name], dt.datetime):
                raise InvalidInput(f"{name} must be an ISO 8601 time with a UTC offset")
    return fields


def _check_window(starts_at, ends_at) -> None:
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise InvalidInput("a reward's window must end after it starts")


def _record_change(session, reward, action, actor, before, after) -> None:
    user_id, name = _operator(actor)
    session.add(
        RewardChange(
            reward_id=reward.id,
            action=action,
            user_id=user_id,
            changed_by=name,
            before=None if before is None else json.dumps(before, sort_keys=True),
            after=json.dumps(after, sort_keys=True),
        )
    )


def add_reward(
    session: Session,
    actor: Actor | None,
    slug: str,
    *,
    name: str,
    kind: str,
    points: int,
    stock: int | None = None,
    fen_per_point: int | None = None,
    starts_at: dt.datetime | None = None,
    ends_at: dt.datetime | None = None,
) -> Reward:
    """Add a reward to a community's catalog (a manager of it, an admin or the operator).

    A ``cash`` reward pays ``points * fen_per_point`` fen (default rate 1: a
    point is 0.01 CNY); ``stock`` None is unlimited.  The addition is kept as
    the reward's first change.
    """
    community = _community(session, actor, slug)
    if kind not in REWARD_KINDS:
        raise InvalidInput(f"unknown reward kind {kind!r} (kinds: {', '.join(REWARD_KINDS)})")
    given = {"name": name, "points": points, "stock": stock}
    if kind == "cash":
        given["fen_per_point"] = 1 if fen_per_point is None else fen_per_point
    elif fen_per_point is not None:
        raise InvalidInput("only a cash reward has a rate (fen per point)")
    given |= {"starts_at": starts_at, "ends_at": ends_at}
    fields = _checked_fields(given, kind)
    _check_window(fields["starts_at"], fields["ends_at"])
    reward = Reward(community_id=community.id, kind=kind, **fields)
    session.add(reward)
    session.flush()
    after = {k: _iso(getattr(reward, k)) for k in ("kind", *EDITABLE)}
    _record_change(session, reward, "add", actor, None, after)
    session.flush()
    return reward


def _reward_for_edit(session: Session, actor: Actor | None, reward_id) -> Reward:
    if actor is not None:
        actor.require_role("manager")
    reward = session.scalar(
        select(Reward)
        .where(Reward.id == _whole(reward_id, "a reward id", 1, 2**62))
        .with_for_update()
    )
    if reward is None:
        raise NotFound(f"no reward {reward_id}")
    if actor is not None:
        actor.require_community(reward.community_id)
    return reward


def edit_reward(
    session: Session, actor: Actor | None, reward_id: int, changes: Mapping, action: str = "edit"
) -> tuple[Reward, bool]:
    """Change a reward's fields (``EDITABLE``); keep who, when, before and after; (reward, changed).

    Setting the stock is an edit too (``action="set_stock"``).  Changing nothing
    records nothing.
    """
    reward = _reward_for_edit(session, actor, reward_id)
    fields = _checked_fields(changes, reward.kind)
    before, after = {}, {}
    for name, value in fields.items():
        if getattr(reward, name) != value:
            before[name], after[name] = _iso(getattr(reward, name)), _iso(value)
    _check_window(fields.get("starts_at", reward.starts_at), fields.get("ends_at", reward.ends_at))
    if not after:
        return reward, False
    for name in after:
        setattr(reward, name, fields[name])
    _record_change(session, reward, action, actor, before, after)
    session.flush()
    return reward, True


def list_rewards(session: Session, actor: Actor | None, slug: str) -> dict:
    """The community's catalog with stock left, for those who may see it (``_may_see_catalog``)."""
    community = session.scalar(select(Community).where(Community.slug == slug))
    if community is None:
        if actor is None or actor.is_admin:
            raise NotFound(f"no community {slug!r}")
        raise Forbidden(f"user {actor.username!r} may not see this community")
    if actor is not None and not _may_see_catalog(session, actor, community.id):
        raise Forbidden(f"user {actor.username!r} may not see this community")
    now = utcnow()
    rewards = session.scalars(
        select(Reward).where(Reward.community_id == community.id).order_by(Reward.id)
    )
    return {"community": slug, "rewards": [reward_info(r, now) for r in rewards]}


def reward_history(session: Session, reward_id: int) -> list[dict]:
    """Every change of a reward, oldest first (the operator's view)."""
    if session.get(Reward, reward_id) is None:
        raise NotFound(f"no reward {reward_id}")
    rows = session.scalars(
        select(RewardChange).where(RewardChange.reward_id == reward_id).order_by(RewardChange.id)
    )
    return [
        {
            "action": r.action,
            "changed_by": r.changed_by,
            "created_at": _iso(r.created_at),
            "before": None if r.before is None else json.loads(r.before),
            "after": json.loads(r.after),
        }
        for r in rows
    ]


# --------------------------------------------------------------- redemption


def parse_redemption(body) -> tuple[str, list[tuple[int, int]]]:
    """Check a redemption's body; return (household code, [(reward id, quantity)] by reward id)."""
    if not isinstance(body, dict):
        raise InvalidInput('send a JSON object {"household": CODE, "items": [...]}')
    code = body.get("household")
    if not isinstance(code, str) or not 0 < len(code) <= 64:
        raise InvalidInput('"household" must be a household code')
    items = body.get("items")
    if not isinstance(items, list) or not 0 < len(items) <= MAX_ITEMS:
        raise InvalidInput(f'"items" must be a list of 1..{MAX_ITEMS} items')
    parsed: dict[int, int] = {}
    for item in items:
        if not isinstance(item, dict) or set(item) != {"reward", "quantity"}:
            raise InvalidInput('each item is {"reward": ID, "quantity": N}')
        reward_id = _whole(item["reward"], "a reward id", 1, 2**62)
        if reward_id in parsed:
            raise InvalidInput(f"reward {reward_id} is listed twice; give one quantity")
        parsed[reward_id] = _whole(item["quantity"], "a quantity", 1, MAX_QUANTITY)
    return code, sorted(parsed.items())


def request_digest(code: str, items: list[tuple[int, int]]) -> str:
    """SHA-256 of the canonical body (items by reward id): what an idempotency key stands for."""
    canonical = json.dumps({"household": code, "items": items}, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _check_key(key) -> str:
    if (
        not isinstance(key, str)
        or not 0 < len(key) <= MAX_KEY_LEN
        or not key.isascii()
        or not key.isprintable()
    ):
        raise InvalidInput(
            f"send an Idempotency-Key header of 1..{MAX_KEY_LEN} printable ASCII characters"
        )
    return key


def _answer(redemption: Redemption) -> dict:
    return {
        "id": redemption.id,
        "receipt": redemption.receipt_number,
        "points": redemption.points,
        "balance": redemption.balance_after,
    }


def _by_key(session: Session, community_id: int, key: str, digest: str) -> dict | None:
    """The answer of an earlier redemption under ``key`` (IdempotencyConflict for another body)."""
    found = session.scalar(
        select(Redemption).where(
            Redemption.community_id == community_id, Redemption.idempotency_key == key
        )
    )
    if found is None:
        return None
    if found.request_sha256 != digest:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was used for redemption {found.id} with another body"
        )
    return _answer(found)


def _lock_rewards(session: Session, community_id: int, ids: list[int]) -> dict[int, object]:
    rows = session.execute(
        select(REWARDS)
        .where(REWARDS.c.id.in_(ids), REWARDS.c.community_id == community_id)
        .order_by(REWARDS.c.id)
        .with_for_update()
    )
    return {row.id: row for row in rows}


def _next_receipt(session: Session, community_id: int) -> int:
    """The community's next receipt number (its counter row stays locked until commit)."""
    session.execute(
        insert_ignore(session, COUNTERS, ["community_id"]),
        [{"community_id": community_id, "last_number": 0}],
    )
    return session.execute(
        update(COUNTERS)
        .where(COUNTERS.c.community_id == community_id)
        .values(last_number=COUNTERS.c.last_number + 1)
        .returning(COUNTERS.c.last_number)
    ).scalar_one()


def redeem(
    session: Session,
    actor: Actor,
    slug: str,
    key: str,
    body,
    now: dt.datetime | None = None,
) -> dict:
    """Redeem rewards for a household: debit, stock, receipt and record, all or nothing.

    Returns ``{"id", "receipt", "points", "balance"}``.  The same key with the
    same body returns the first answer and changes nothing; with another body
    it is ``IdempotencyConflict``.  ``InsufficientPoints``, ``OutOfStock`` and
    ``RewardUnavailable`` are raised before anything is written.
    """
    key = _check_key(key)
    community = _community(session, actor, slug)
    code, items = parse_redemption(body)
    digest = request_digest(code, items)
    household = session.scalar(
        select(Household).where(Household.community_id == community.id, Household.code == code)
    )
    if household is None:
        raise NotFound(f"community {slug!r} has no household {code!r}")
    earlier = _by_key(session, community.id, key, digest)
    if earlier is not None:
        return earlier
    locked = ledger.lock_accounts(session, [household.id])
    # a request with the same key may have committed while this one waited for the lock
    earlier = _by_key(session, community.id, key, digest)
    if earlier is not None:
        return earlier
    now = now or utcnow()
    rewards = _lock_rewards(session, community.id, [reward_id for reward_id, _ in items])
    total = 0
    for reward_id, quantity in items:
        reward = rewards.get(reward_id)
        if reward is None:
            raise NotFound(f"community {slug!r} has no reward {reward_id}")
        if not _in_window(reward, now):
            raise RewardUnavailable(f"reward {reward_id} ({reward.name}) is not offered now")
        if reward.stock is not None and reward.stock < quantity:
            raise OutOfStock(
                f"reward {reward_id} ({reward.name}) has {reward.stock} left; {quantity} asked"
            )
        total += reward.points * quantity
    balance = locked[household.id].balance
    if balance < total:
        raise InsufficientPoints(
            f"household {code!r} has {balance} points; the redemption costs {total}"
        )
    for reward_id, quantity in items:  # ascending reward id, as locked
        if rewards[reward_id].stock is None:
            continue
        done = session.execute(
            update(REWARDS)
            .where(REWARDS.c.id == reward_id, REWARDS.c.stock >= quantity)
            .values(stock=REWARDS.c.stock - quantity)
        )
        if done.rowcount != 1:
            raise OutOfStock(f"reward {reward_id} ({rewards[reward_id].name}) ran out")
    number = _next_receipt(session, community.id)
    [posted] = ledger.post_many(
        session,
        [
            Posting(
                household.id,
                "redemption",
                -total,
                f"redemption, receipt {slug}-{number}",
                "redemption",
                f"{community.id}/{number}",
                idempotency_key=f"redemption:{community.id}:{number}",
            )
        ],
        locked=locked,
        check_keys=False,
    )
    user_id, _ = _operator(actor)
    redemption = Redemption(
        community_id=community.id,
        receipt_number=number,
        household_id=household.id,
        user_id=user_id,
        idempotency_key=key,
        request_sha256=digest,
        points=total,
        balance_after=posted.balance_after,
        entry_id=posted.entry_id,
        created_at=now,
    )
    session.add(redemption)
    session.flush()
    session.add_all(
        RedemptionItem(
            redemption_id=redemption.id,
            reward_id=reward_id,
            quantity=quantity,
            points_each=rewards[reward_id].points,
            counted_stock=rewards[reward_id].stock is not None,
        )
        for reward_id, quantity in items
    )
    session.flush()
    return _answer(redemption)


def _voided(session: Session, redemption_id: int) -> RedemptionVoid | None:
    return session.scalar(
        select(RedemptionVoid).where(RedemptionVoid.redemption_id == redemption_id)
    )


def void(
    session: Session,
    actor: Actor,
    redemption_id,
    reason,
    window: dt.timedelta,
    now: dt.datetime | None = None,
) -> dict:
    """Void a redemption within ``window``: reversing entry, stock back, who and why kept.

    Returns ``{"id", "balance"}``.  A second void is ``AlreadyVoided``, one
    past the window ``VoidWindowPassed``; neither changes anything.
    """
    actor.require_role("manager")
    redemption_id = _whole(redemption_id, "a redemption id", 1, 2**62)
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput(f'send {{"reason": ...}} of 1..{MAX_REASON_LEN} characters')
    reason = _text(reason, "a reason", MAX_REASON_LEN)
    redemption = session.get(Redemption, redemption_id)
    if redemption is None:
        raise NotFound(f"no redemption {redemption_id}")
    actor.require_community(redemption.community_id)
    ledger.lock_accounts(session, [redemption.household_id])
    # a concurrent void of the same redemption waited for that lock; now it sees ours
    if _voided(session, redemption.id) is not None:
        raise AlreadyVoided(f"redemption {redemption.id} was voided already")
    now = now or utcnow()
    if now - redemption.created_at > window:
        raise VoidWindowPassed(
            f"redemption {redemption.id} is older than the void window "
            f"({int(window.total_seconds())} s)"
        )
    reversal = ledger.reverse(
        session,
        redemption.entry_id,
        f"void of receipt {redemption.receipt_number}: {reason}"[: ledger.MAX_REASON_LEN],
        source_type="redemption_void",
        source_id=str(redemption.id),
    )
    items = session.scalars(
        select(RedemptionItem)
        .where(RedemptionItem.redemption_id == redemption.id)
        .order_by(RedemptionItem.reward_id)
    ).all()
    for item in items:  # ascending reward id, after the account: the redemption's order
        if item.counted_stock:
            session.execute(
                update(REWARDS)
                .where(REWARDS.c.id == item.reward_id, REWARDS.c.stock.is_not(None))
                .values(stock=REWARDS.c.stock + item.quantity)
            )
    user_id, _ = _operator(actor)
    session.add(
        RedemptionVoid(
            redemption_id=redemption.id,
            user_id=user_id,
            reason=reason,
            reversal_entry_id=reversal.id,
            balance_after=reversal.balance_after,
            created_at=now,
        )
    )
    session.flush()
    return {"id": redemption.id, "balance": reversal.balance_after}


def receipt(session: Session, actor: Actor, redemption_id) -> dict:
    """The receipt of a redemption, for whoever may see its household."""
    redemption_id = _whole(redemption_id, "a redemption id", 1, 2**62)
    redemption = session.get(Redemption, redemption_id)
    if redemption is None:
        raise NotFound(f"no redemption {redemption_id}")
    household = session.get(Household, redemption.household_id)
    actor.require_household(Place(household.id, household.community_id, household.building_id))
    community = session.get(Community, redemption.community_id)
    lines = session.execute(
        select(RedemptionItem, Reward)
        .join(Reward, Reward.id == RedemptionItem.reward_id)
        .where(RedemptionItem.redemption_id == redemption.id)
        .order_by(RedemptionItem.reward_id)
    ).all()
    voided = _voided(session, redemption.id)
    manager = session.get(User, redemption.user_id)
    entry = session.get(LedgerEntry, redemption.entry_id)
    return {
        "id": redemption.id,
        "community": community.slug,
        "receipt": redemption.receipt_number,
        "household": household.code,
        "building": session.get(Building, household.building_id).code,
        "unit": household.unit,
        "items": [
            {
                "reward": reward.id,
                "name": reward.name,
                "kind": reward.kind,
                "quantity": item.quantity,
                "points_each": item.points_each,
                "points": item.quantity * item.points_each,
            }
            for item, reward in lines
        ],
        "points": redemption.points,
        "balance_after": redemption.balance_after,
        "entry_id": entry.id,
        "manager": manager.username,
        "created_at": _iso(redemption.created_at),
        "voided": None
        if voided is None
        else {
            "at": _iso(voided.created_at),
            "by": session.get(User, voided.user_id).username,
            "reason": voided.reason,
            "balance_after": voided.balance_after,
            "entry_id": voided.reversal_entry_id,
        },
    }
