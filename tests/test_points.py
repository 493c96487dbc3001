"""Points: rounding, minimum, daily caps, rule versions chosen by occurred_at."""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from backend.core.db import db
from backend.deposits import ingest
from backend.deposits.models import Deposit
from backend.ledger import points
from backend.ledger.models import DailyTotal
from tests.factories import as_deposits, build_world, deposit_item, make_rule

UTC = dt.UTC
NOW = dt.datetime(2025, 3, 10, 4, 0, tzinfo=UTC)  # 12:00 in Asia/Shanghai


def rule(
    ppk=10,
    min_g=0,
    cap=None,
    at=dt.datetime(2020, 1, 1, tzinfo=UTC),
    version=1,
    rid=1,
    cat=1,
):
    return points.Rule(rid, cat, version, ppk, min_g, cap, at)


# ------------------------------------------------------------------ pure rules


def test_rounding_is_down_to_whole_points():
    assert points.weight_points(10, 1_999) == 19
    assert points.weight_points(10, 99) == 0
    assert points.weight_points(80, 1_250) == 100
    assert points.weight_points(0, 5_000) == 0


@given(st.integers(1, 10**7), st.integers(0, 10**6))
def test_rounding_matches_exact_floor(net_g, ppk):
    assert points.weight_points(ppk, net_g) == math.floor(Fraction(net_g * ppk, 1000))


def test_score_minimum_cap_and_no_rule():
    assert points.score(None, 1_000, 0) == points.Award(0, None, "no_rule")
    assert points.score(rule(min_g=100), 99, 0) == points.Award(0, 1, "below_minimum")
    assert points.score(rule(min_g=100), 100, 0) == points.Award(1, 1, None)
    assert points.score(rule(cap=25), 2_000, 10) == points.Award(15, 1, "daily_cap")
    assert points.score(rule(cap=25), 2_000, 30) == points.Award(0, 1, "daily_cap")
    assert points.score(rule(cap=25), 1_500, 10) == points.Award(15, 1, None)


def test_rulebook_picks_latest_effective_not_after_the_instant():
    t1 = dt.datetime(2025, 1, 1, tzinfo=UTC)
    t2 = dt.datetime(2025, 2, 1, tzinfo=UTC)
    book = points.RuleBook([rule(20, at=t2, version=2, rid=2), rule(10, at=t1, version=1, rid=1)])
    assert book.in_force(1, t1 - dt.timedelta(seconds=1)) is None
    assert book.in_force(1, t1).id == 1
    assert book.in_force(1, t2 - dt.timedelta(microseconds=1)).id == 1
    assert book.in_force(1, t2).id == 2
    assert book.in_force(2, t2) is None
    assert [r.id for r in book.current(t2)] == [2]


def test_local_day_follows_the_community_timezone():
    late = dt.datetime(2025, 1, 1, 16, 30, tzinfo=UTC)
    assert points.local_day(late, "Asia/Shanghai") == dt.date(2025, 1, 2)
    assert points.local_day(late, "Europe/London") == dt.date(2025, 1, 1)


# ---------------------------------------------------------- through ingest


def run(world, items, now=NOW):
    return ingest.ingest(db, world.kiosk.id, as_deposits(items), now=now)


def label(world, household="H001", n=0):
    return world.labels[household][n]


@pytest.fixture
def capped(app):
    with db.begin() as s:
        return build_world(s, daily_cap=25, labels_per_household=6, min_net_g=100)


def test_daily_cap_partial_then_zero_then_next_local_day(capped):
    at = NOW - dt.timedelta(hours=1)
    items = [deposit_item(label(capped, n=i), net_g=1_000, occurred_at=at) for i in range(4)]
    out = run(capped, items)
    assert [(o.status, o.points, o.reason) for o in out] == [
        ("accepted", 10, None),
        ("accepted", 10, None),
        ("accepted", 5, "daily_cap"),
        ("accepted", 0, "daily_cap"),
    ]
    assert [o.balance for o in out] == [10, 20, 25, 25]
    # 17:00 UTC is already the next day in Shanghai: a fresh cap
    next_day = dt.datetime(2025, 3, 10, 17, 0, tzinfo=UTC)
    [o] = run(capped, [deposit_item(label(capped, n=4), occurred_at=next_day)], now=next_day)
    assert (o.points, o.balance) == (10, 35)
    with db.session() as s:
        totals = {(t.day, t.points) for t in s.scalars(select(DailyTotal))}
    assert totals == {(dt.date(2025, 3, 10), 25), (dt.date(2025, 3, 11), 10)}


def test_cap_is_per_category_and_per_household(capped):
    at = NOW - dt.timedelta(minutes=5)
    items = [deposit_item(label(capped, n=i), net_g=3_000, occurred_at=at) for i in range(2)]
    items.append(
        deposit_item(label(capped, n=2), door=2, category="paper", net_g=3_000, occurred_at=at)
    )
    items.append(deposit_item(label(capped, "H002"), net_g=3_000, occurred_at=at))
    out = run(capped, items)
    assert [(o.points, o.reason) for o in out] == [
        (25, "daily_cap"),
        (0, "daily_cap"),
        (25, "daily_cap"),
        (25, "daily_cap"),
    ]


def test_cap_holds_across_batches(capped):
    at = NOW - dt.timedelta(minutes=5)
    run(capped, [deposit_item(label(capped, n=0), net_g=2_000, occurred_at=at)])
    [o] = run(capped, [deposit_item(label(capped, n=1), net_g=2_000, occurred_at=at)])
    assert (o.points, o.reason, o.balance) == (5, "daily_cap", 25)


def test_below_minimum_is_accepted_with_zero_and_uses_the_label(capped):
    at = NOW - dt.timedelta(minutes=5)
    first, again = run(
        capped,
        [
            deposit_item(label(capped), net_g=99, occurred_at=at),
            deposit_item(label(capped), net_g=2_000, occurred_at=at),
        ],
    )
    assert (first.status, first.points, first.reason) == (
        "accepted",
        0,
        "below_minimum",
    )
    assert (again.status, again.reason) == ("flagged", "label_reused")


def test_rule_version_is_chosen_by_occurred_at_and_stored(app):
    switch = NOW - dt.timedelta(days=2)
    with db.begin() as s:
        world = build_world(s, points_per_kg=10)
        v2 = make_rule(s, world.categories["plastic"], 30, effective_at=switch)
        v1_id, v2_id = world.rules["plastic"].id, v2.id
    before = deposit_item(
        label(world, n=0), net_g=1_000, occurred_at=switch - dt.timedelta(seconds=1)
    )
    after = deposit_item(label(world, n=1), net_g=1_000, occurred_at=switch)
    out = run(world, [before, after])
    assert [o.points for o in out] == [10, 30]
    with db.session() as s:
        stored = {str(d.id): d.rule_id for d in s.scalars(select(Deposit))}
    assert stored == {before["id"]: v1_id, after["id"]: v2_id}


def test_no_rule_in_force_earns_zero(app):
    with db.begin() as s:
        world = build_world(s)
        late = make_rule(s, world.categories["metal"], 50, effective_at=NOW + dt.timedelta(days=1))
        s.delete(world.rules["plastic"])
        s.flush()
        assert late.version == 2
    [o] = run(world, [deposit_item(label(world), occurred_at=NOW - dt.timedelta(minutes=1))])
    assert (o.status, o.points, o.reason) == ("accepted", 0, "no_rule")
