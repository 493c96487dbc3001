"""Points rules: versioned per community and category, never edited in place.

``set_rule`` appends version N+1 with an effective time; a deposit is scored
by the version in force at its ``occurred_at`` (backend.ledger.points) and
keeps that version's id, so changing a rule never rewrites earned points.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backend.core.errors import AlreadyExists, InvalidInput
from backend.core.models import utcnow
from backend.ledger.models import PointsRule
from backend.registry.models import Category
from backend.registry.services import get_category, get_community

#: bounds that catch typing slips (points per gram instead of per kg, etc.)
MAX_POINTS_PER_KG = 1_000_000
MAX_MIN_NET_G = 1_000_000
MAX_DAILY_CAP = 100_000_000


def _check_range(value: int | None, name: str, high: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise InvalidInput(f"{name} must be a whole number from 0 to {high}, not {value!r}")


def _as_utc(effective_at: dt.datetime | None) -> dt.datetime:
    if effective_at is None:
        return utcnow()
    if effective_at.tzinfo is None:
        raise InvalidInput("the effective time needs a UTC offset, e.g. 2025-01-01T00:00:00+08:00")
    return effective_at.astimezone(dt.UTC)


def latest_rule(session: Session, category_id: int) -> PointsRule | None:
    """Return the newest version of a category's rule, or None."""
    return session.scalar(
        select(PointsRule)
        .where(PointsRule.category_id == category_id)
        .order_by(PointsRule.version.desc())
        .limit(1)
    )


def set_rule(
    session: Session,
    community: str,
    category: str,
    points_per_kg: int,
    min_net_g: int = 0,
    daily_cap: int | None = None,
    effective_at: dt.datetime | None = None,
) -> PointsRule:
    """Append a new version of the points rule for ``community``/``category``.

    The version is the previous one plus 1.  ``effective_at`` (aware; default
    now) must be later than the latest version's, so versions and effective
    times always rise together and the rule in force at any instant is unique.
    """
    _check_range(points_per_kg, "points per kg", MAX_POINTS_PER_KG)
    _check_range(min_net_g, "minimum grams", MAX_MIN_NET_G)
    _check_range(daily_cap, "daily cap", MAX_DAILY_CAP, optional=True)
    effective_at = _as_utc(effective_at)
    comm = get_community(session, community)
    cat = get_category(session, comm, category)
    previous = latest_rule(session, cat.id)
    if previous is not None and effective_at <= previous.effective_at:
        raise InvalidInput(
            f"effective time {effective_at.isoformat()} is not after version {previous.version}'s "
            f"({previous.effective_at.isoformat()}); rules are only ever appended"
        )
    rule = PointsRule(
        community_id=comm.id,
        category_id=cat.id,
        version=(previous.version + 1) if previous else 1,
        points_per_kg=points_per_kg,
        min_net_g=min_net_g,
        daily_cap=daily_cap,
        effective_at=effective_at,
    )
    try:
        with session.begin_nested():
            session.add(rule)
    except IntegrityError:
        # Two writers took the same version number; the unique constraint
        # kept one.  The other is refused rather than silently renumbered.
        raise AlreadyExists(
            f"another version of the {category!r} rule was written at the same time; retry"
        ) from None
    return rule


def list_rules(
    session: Session, community: str, category: str | None = None
) -> list[tuple[PointsRule, str]]:
    """Return every version of a community's rules as (rule, category code)."""
    comm = get_community(session, community)
    query = (
        select(PointsRule, Category.code)
        .join(Category, Category.id == PointsRule.category_id)
        .where(PointsRule.community_id == comm.id)
        .order_by(Category.code, PointsRule.version)
    )
    if category is not None:
        query = query.where(Category.id == get_category(session, comm, category).id)
    return [(rule, code) for rule, code in session.execute(query)]


def rule_info(rule: PointsRule, category_code: str, current: bool = False) -> dict:
    """Return a JSON-ready description of one rule version."""
    return {
        "category": category_code,
        "version": rule.version,
        "points_per_kg": rule.points_per_kg,
        "min_net_g": rule.min_net_g,
        "daily_cap": rule.daily_cap,
        "effective_at": rule.effective_at.isoformat(),
        "current": current,
    }


def rules_table(
    session: Session, community: str, category: str | None = None, now: dt.datetime | None = None
) -> list[dict]:
    """Return every rule version as dicts; ``current`` marks each category's rule in force now."""
    now = now or utcnow()
    rows = list_rules(session, community, category)
    in_force: dict[str, int] = {}
    for rule, code in rows:  # ordered by version, so the last one in force wins
        if rule.effective_at <= now:
            in_force[code] = rule.id
    return [rule_info(rule, code, in_force.get(code) == rule.id) for rule, code in rows]
