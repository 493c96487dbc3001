"""Points for a deposit: the rule version in force, rounding, minimum, daily cap.

Rounding rule (docs/protocol.md, "Points"): ``points = net_g * points_per_kg
// 1000`` in integer arithmetic, i.e. rounded down to a whole point (1,999 g
at 10 points/kg earns 19).  A deposit under the rule's ``min_net_g`` earns 0
(reason ``below_minimum``).  The daily cap limits the points a household earns
per category and community-local calendar day; a deposit that crosses it earns
the remainder (reason ``daily_cap``).  With no rule in force the deposit earns
0 (reason ``no_rule``).  The version in force at an instant is the one with the
latest ``effective_at`` not after it, so a backlog uploaded days later is
scored by the rules of the moment each bag went in.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, case, select, tuple_, update
from sqlalchemy.orm import Session

from backend.core.sql import chunked, params, upsert_for
from backend.ledger.models import DailyTotal, PointsRule

RULES = PointsRule.__table__
TOTALS = DailyTotal.__table__

#: a key of the daily totals: (household_id, category_id, local day)
DayKey = tuple[int, int, dt.date]


@dataclass(frozen=True, slots=True)
class Rule:
    """One points-rule version, detached from the session."""

    id: int
    category_id: int
    version: int
    points_per_kg: int
    min_net_g: int
    daily_cap: int | None
    effective_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Award:
    """What a deposit earns and why it earned less than its weight's worth."""

    points: int
    rule_id: int | None
    reason: str | None


class RuleBook:
    """Every rule version of some categories, answering "which was in force at t"."""

    def __init__(self, rules: Iterable[Rule]):
        self._by_category: dict[int, list[Rule]] = {}
        for rule in sorted(rules, key=lambda r: (r.effective_at, r.version)):
            self._by_category.setdefault(rule.category_id, []).append(rule)
        self._times = {c: [r.effective_at for r in rs] for c, rs in self._by_category.items()}

    def in_force(self, category_id: int, at: dt.datetime) -> Rule | None:
        """Return the version with the latest effective_at <= ``at``, or None."""
        times = self._times.get(category_id)
        if not times:
            return None
        i = bisect.bisect_right(times, at)
        return self._by_category[category_id][i - 1] if i else None

    def current(self, at: dt.datetime) -> list[Rule]:
        """Return the rule in force at ``at`` for every category that has one."""
        found = (self.in_force(c, at) for c in self._by_category)
        return [r for r in found if r is not None]


def _rule(row) -> Rule:
    return Rule(
        row.id,
        row.category_id,
        row.version,
        row.points_per_kg,
        row.min_net_g,
        row.daily_cap,
        row.effective_at,
    )


def load_rules(session: Session, category_ids: Iterable[int]) -> RuleBook:
    """Load every version of the rules of ``category_ids``."""
    rules: list[Rule] = []
    for chunk in chunked(sorted(set(category_ids))):
        rows = session.execute(select(PointsRule).where(PointsRule.category_id.in_(chunk)))
        rules.extend(_rule(r) for r in rows.scalars())
    return RuleBook(rules)


def rule_in_force(session: Session, category_id: int, at: dt.datetime) -> Rule | None:
    """Return the rule version in force for one category at ``at``."""
    row = session.scalar(
        select(PointsRule)
        .where(PointsRule.category_id == category_id, PointsRule.effective_at <= at)
        .order_by(PointsRule.effective_at.desc(), PointsRule.version.desc())
        .limit(1)
    )
    return _rule(row) if row is not None else None


def weight_points(points_per_kg: int, net_g: int) -> int:
    """Return the points ``net_g`` grams are worth, rounded down."""
    return net_g * points_per_kg // 1000


def score(rule: Rule | None, net_g: int, credited_today: int) -> Award:
    """Return the award of one deposit given what was credited that day already."""
    if rule is None:
        return Award(0, None, "no_rule")
    if net_g < rule.min_net_g:
        return Award(0, rule.id, "below_minimum")
    points = weight_points(rule.points_per_kg, net_g)
    if rule.daily_cap is not None:
        room = max(0, rule.daily_cap - credited_today)
        if points > room:
            return Award(room, rule.id, "daily_cap")
    return Award(points, rule.id, None)


def needs_total(rule: Rule | None) -> bool:
    """True when ``score`` depends on what was credited that day (the rule has a cap)."""
    return rule is not None and rule.daily_cap is not None


def award_holds_up_to(rule: Rule | None, net_g: int) -> int | None:
    """Return the most points credited that day for which ``score`` still gives its award at 0.

    None: the award does not depend on the day's total.  Found by asking
    ``score`` itself (an award never grows with the total, and no longer
    changes once the total reaches the cap), so the cap is written once, in
    ``score``: the one-deposit path makes its plan at a total of 0 and the
    database checks that the locked day's total is at most this.
    """
    if not needs_total(rule):
        return None
    first = score(rule, net_g, 0)
    if score(rule, net_g, rule.daily_cap) == first:
        return None
    low, high = 0, rule.daily_cap  # score(low) == first != score(high)
    while high - low > 1:
        middle = (low + high) // 2
        if score(rule, net_g, middle) == first:
            low = middle
        else:
            high = middle
    return low


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def local_day(at: dt.datetime, timezone: str) -> dt.date:
    """Return the community-local calendar day of the instant ``at``."""
    return at.astimezone(_zone(timezone)).date()


_KEY_COLS = (TOTALS.c.household_id, TOTALS.c.category_id, TOTALS.c.day)
_TOTALS = select(*_KEY_COLS, TOTALS.c.points).where(
    tuple_(*_KEY_COLS).in_(bindparam("keys", expanding=True))
)


def load_daily_totals(session: Session, keys: Iterable[DayKey]) -> dict[DayKey, int]:
    """Return the points already credited for each (household, category, day) key."""
    wanted = sorted(set(keys))
    found: dict[DayKey, int] = {}
    conn = session.connection()
    for chunk in chunked(wanted, 300):
        for h, c, d, points in conn.execute(_TOTALS, {"keys": chunk}):
            found[(h, c, d)] = points
    return found


def add_daily_totals(session: Session, increments: dict[DayKey, int]) -> None:
    """Add points to the daily totals (an executemany upsert, in key order)."""
    rows = [
        {"household_id": h, "category_id": c, "day": d, "points": p}
        for (h, c, d), p in sorted(increments.items())
        if p
    ]
    if not rows:
        return
    conn = session.connection()
    conn.execute(_add_totals(conn.dialect.name), params(rows))


def subtract_daily_total(session: Session, key: DayKey, amount: int) -> None:
    """Take ``amount`` points off one daily total (a reversed deposit), never below zero."""
    household_id, category_id, day = key
    session.connection().execute(
        update(TOTALS)
        .where(
            TOTALS.c.household_id == household_id,
            TOTALS.c.category_id == category_id,
            TOTALS.c.day == day,
        )
        .values(points=case((TOTALS.c.points > amount, TOTALS.c.points - amount), else_=0))
    )


@functools.lru_cache(maxsize=4)
def _add_totals(dialect: str):
    stmt = upsert_for(dialect, TOTALS)
    return stmt.on_conflict_do_update(
        index_elements=["household_id", "category_id", "day"],
        set_={"points": TOTALS.c.points + stmt.excluded.points},
    )
