"""Points rules are appended as versions with rising effective times."""

from __future__ import annotations

import datetime as dt

import pytest

from backend.core.db import db
from backend.core.errors import InvalidInput, NotFound
from backend.ledger import rules
from backend.registry import services as registry

UTC = dt.UTC
T0 = dt.datetime(2025, 3, 1, 0, 0, tzinfo=UTC)


@pytest.fixture
def community(app):
    with db.begin() as s:
        registry.create_community(s, "oak", "Oak")
    return "oak"


def _set(**kwargs):
    args = {"community": "oak", "category": "plastic", "points_per_kg": 30} | kwargs
    with db.begin() as s:
        rule = rules.set_rule(s, **args)
        return rule.version, rule.points_per_kg, rule.min_net_g, rule.daily_cap, rule.effective_at


def test_versions_count_up_per_category(community):
    assert _set(effective_at=T0)[0] == 1
    assert _set(effective_at=T0 + dt.timedelta(days=1), points_per_kg=40)[0] == 2
    assert _set(category="paper", effective_at=T0)[0] == 1
    assert _set(effective_at=T0 + dt.timedelta(days=2), min_net_g=100, daily_cap=300)[:4] == (
        3,
        30,
        100,
        300,
    )


def test_effective_at_defaults_to_now(community):
    before = dt.datetime.now(UTC)
    effective_at = _set()[4]
    assert before <= effective_at <= dt.datetime.now(UTC)


def test_effective_time_offsets_are_kept_as_instants(community):
    local = dt.datetime(2025, 3, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert _set(effective_at=local)[4] == T0


@pytest.mark.parametrize(
    "delta", [dt.timedelta(0), dt.timedelta(seconds=-1), dt.timedelta(days=-30)]
)
def test_effective_time_not_after_latest_is_refused(community, delta):
    _set(effective_at=T0)
    with pytest.raises(InvalidInput, match="only ever appended"):
        _set(effective_at=T0 + delta)
    with db.begin() as s:
        assert [r.version for r, _ in rules.list_rules(s, "oak")] == [1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"points_per_kg": -1},
        {"points_per_kg": 1.5},
        {"points_per_kg": rules.MAX_POINTS_PER_KG + 1},
        {"min_net_g": -10},
        {"daily_cap": -1},
        {"effective_at": dt.datetime(2025, 1, 1)},
    ],
)
def test_bad_rule_values_refused(community, kwargs):
    with pytest.raises(InvalidInput):
        _set(**kwargs)


def test_unknown_community_or_category(community):
    with pytest.raises(NotFound):
        _set(community="pine")
    with pytest.raises(NotFound, match="no category"):
        _set(category="wood")


def test_rules_table_marks_the_version_in_force(community):
    now = dt.datetime(2025, 6, 1, tzinfo=UTC)
    _set(effective_at=T0)
    _set(effective_at=T0 + dt.timedelta(days=10), points_per_kg=35)
    _set(effective_at=now + dt.timedelta(days=1), points_per_kg=50)  # scheduled
    _set(category="paper", effective_at=T0, points_per_kg=20, daily_cap=100)
    with db.begin() as s:
        table = rules.rules_table(s, "oak", now=now)
        only_paper = rules.rules_table(s, "oak", "paper", now=now)
    summary = [(r["category"], r["version"], r["points_per_kg"], r["current"]) for r in table]
    assert summary == [
        ("paper", 1, 20, True),
        ("plastic", 1, 30, False),
        ("plastic", 2, 35, True),
        ("plastic", 3, 50, False),
    ]
    assert [r["category"] for r in only_paper] == ["paper"]
    assert only_paper[0]["daily_cap"] == 100


def test_latest_rule(community):
    with db.begin() as s:
        category = registry.get_category(s, registry.get_community(s, "oak"), "plastic")
        assert rules.latest_rule(s, category.id) is None
    _set(effective_at=T0)
    _set(effective_at=T0 + dt.timedelta(hours=1), points_per_kg=31)
    with db.begin() as s:
        latest = rules.latest_rule(s, category.id)
        assert (latest.version, latest.points_per_kg) == (2, 31)
