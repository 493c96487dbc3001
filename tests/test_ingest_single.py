"""One-deposit requests on the general path: the same answers as a batch, exactly once under races."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pytest
from sqlalchemy import event, func, select

from backend.core.db import db
from backend.deposits import ingest
from backend.deposits import store as ingest_store
from backend.deposits.models import Deposit
from backend.ledger import services as ledger
from backend.ledger.models import Account, DailyTotal
from tests.factories import (
    as_deposits,
    build_world,
    deposit_item,
    make_label,
    post_deposits,
)
from tests.test_ingest_concurrency import (
    check_exactly_once,
    in_threads,
    overlapping_items,
)

UTC = dt.UTC


def _world(slug: str, **kw):
    """A community with a minimum weight and a daily cap (``kw`` overrides)."""
    options = {
        "households": 3,
        "labels_per_household": 4,
        "min_net_g": 100,
        "daily_cap": 30,
        "capacity_g": 30_000,
    }
    options.update(kw)
    with db.begin() as s:
        return build_world(s, slug=slug, **options)


def _revoked_label(world) -> str:
    with db.begin() as s:
        community = s.merge(world.community)
        household = s.merge(world.households["H003"])
        return make_label(
            s,
            community,
            household,
            world.private_key,
            revoked_at=dt.datetime.now(UTC) - dt.timedelta(days=1),
        )


def _scenario(world, foreign_label: str) -> list[dict]:
    """Items in order covering every status and reason, for ``world``."""
    lab = world.labels
    first = deposit_item(lab["H001"][0], net_g=1_999)
    return [
        first,
        dict(first),  # duplicate
        dict(first, net_g=2_000),  # conflict
        deposit_item(lab["H001"][0]),  # label reused
        deposit_item(lab["H001"][1], net_g=12_000),  # implausible for plastic
        deposit_item(lab["H001"][2], net_g=50),  # below the minimum
        deposit_item(lab["H002"][0], net_g=2_500),  # 25 of the cap of 30
        deposit_item(lab["H002"][1], net_g=1_000),  # capped to 5
        deposit_item(lab["H002"][2], net_g=1_000),  # cap reached: 0
        deposit_item(lab["H002"][3], door=2, category="paper", net_g=1_000),
        deposit_item(_revoked_label(world)),  # revoked
        deposit_item(lab["H003"][0], door=9),  # unknown door
        deposit_item(lab["H003"][0], door=2),  # door/category mismatch
        deposit_item(foreign_label),  # another community's label
        deposit_item(lab["H003"][0] + "x"),  # tampered
        deposit_item(lab["H003"][1], net_g=31_000),  # above the door's capacity
    ]


def _answer(o) -> tuple:
    return (
        o.status,
        o.points,
        o.balance,
        o.reason,
        o.original_status,
        o.error["code"] if o.error else None,
    )


def _answers(world, items) -> list[tuple]:
    """Apply ``items`` one request each, on the general path."""
    return [_answer(ingest.ingest(db, world.kiosk.id, [item])[0]) for item in as_deposits(items)]


def test_one_request_each_answers_exactly_as_one_batch(app):
    """One plan: the same items give the same answers one by one and all in one batch."""
    single, batched = _world("green"), _world("blue")
    single_answers = _answers(single, _scenario(single, batched.labels["H001"][3]))
    batch_answers = [
        _answer(o)
        for o in ingest.ingest(
            db, batched.kiosk.id, as_deposits(_scenario(batched, single.labels["H001"][3]))
        )
    ]
    assert single_answers == batch_answers
    statuses = [a[0] for a in single_answers]
    assert statuses[:5] == ["accepted", "duplicate", "conflict", "flagged", "flagged"]
    assert [a[1] for a in single_answers[6:10]] == [25, 5, 0, 10]
    assert [a[3] for a in single_answers[5:9]] == [
        "below_minimum",
        None,
        "daily_cap",
        "daily_cap",
    ]
    assert statuses[10:] == ["rejected"] * 6
    with db.session() as s:
        assert ledger.verify(s) == []
        totals = dict(
            s.execute(
                select(DailyTotal.household_id, func.sum(DailyTotal.points)).group_by(
                    DailyTotal.household_id
                )
            ).all()
        )
        for world in (single, batched):
            assert totals[world.households["H002"].id] == 40  # 30 plastic + 10 paper


@pytest.fixture
def statements(app):
    seen: list[str] = []

    def record(conn, cursor, statement, params, context, many):
        seen.append(" ".join(statement.split()))

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def test_a_single_deposit_request_runs_the_general_statements(
    client, statements, on_postgres, monkeypatch
):
    # on PostgreSQL these are the statements when the one-call function is not taken
    monkeypatch.setattr(ingest, "apply_one_fn", lambda *a, **kw: None)
    world = _world("green", daily_cap=None)  # a cap adds a read of the day's total
    assert post_deposits(client, world, [deposit_item(world.labels["H001"][0])]).status_code == 200
    statements.clear()  # the kiosk is kept now
    response = post_deposits(client, world, [deposit_item(world.labels["H001"][1])])
    assert response.json["results"][0]["status"] == "accepted"
    kinds = [s.split(" ")[0] for s in statements if not s.startswith("BEGIN")]
    # nonce, labels with the locked account, recorded ids; claim, total, entry, account, deposit
    assert kinds == ["INSERT", "SELECT", "SELECT", "UPDATE", "INSERT", "INSERT", "UPDATE", "INSERT"]
    assert "FOR NO KEY UPDATE OF accounts" in statements[1] or not on_postgres


def test_an_id_recorded_after_the_reads_is_retried_as_a_duplicate(app, monkeypatch):
    world = _world("green")
    item = deposit_item(world.labels["H001"][0])
    [first] = ingest.ingest(db, world.kiosk.id, as_deposits([item]))
    real, calls = ingest_store.recorded, []

    def blind_once(conn, ids):
        calls.append(1)
        return {} if len(calls) == 1 else real(conn, ids)  # as if not recorded yet

    monkeypatch.setattr(ingest_store, "recorded", blind_once)
    [again] = ingest.ingest(db, world.kiosk.id, as_deposits([item]))
    assert (again.status, again.original_status, again.points) == (
        "duplicate",
        "accepted",
        first.points,
    )
    assert len(calls) == 2
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Deposit)) == 1
        assert ledger.verify(s) == []


def test_racing_single_deposits_credit_exactly_once(app):
    world = _world("green")
    items = overlapping_items(world, count=24, seed=3)

    def worker(i):
        mine = list(items)
        random.Random(i).shuffle(mine)
        return [
            ingest.ingest(db, world.kiosk.id, as_deposits([item]))[0].to_json() for item in mine
        ]

    check_exactly_once(items, in_threads(worker))


def test_racing_single_deposits_never_pass_the_daily_cap(app):
    world = _world("green")
    household = world.households["H001"]
    labels = world.labels["H001"]  # four labels, 15 points each, cap 30

    def worker(i):
        item = deposit_item(labels[i], net_g=1_500)
        return ingest.ingest(db, world.kiosk.id, as_deposits([item]))[0]

    outcomes = in_threads(worker, count=len(labels))
    assert sum(o.points for o in outcomes) == 30
    assert all(o.status == "accepted" for o in outcomes)
    with db.session() as s:
        assert s.get(Account, household.id).balance == 30
        assert (
            s.scalar(select(DailyTotal.points).where(DailyTotal.household_id == household.id)) == 30
        )
        assert ledger.verify(s) == []


def test_a_household_without_an_account_takes_the_general_path(app):
    world = _world("green")
    household = world.households["H001"]
    with db.begin() as s:
        s.delete(s.get(Account, household.id))
    [o] = ingest.ingest(db, world.kiosk.id, as_deposits([deposit_item(world.labels["H001"][0])]))
    assert (o.status, o.points, o.balance) == ("accepted", 10, 10)
    with db.session() as s:
        assert s.get(Account, household.id).balance == 10


def test_a_rejected_item_that_was_recorded_before_is_still_a_duplicate(app):
    """A retry after the backlog window: the id look-up answers before the checks."""
    world = _world("green")
    at = dt.datetime.now(UTC) - dt.timedelta(days=2)
    item = deposit_item(world.labels["H001"][0], occurred_at=at)
    [first] = ingest.ingest(db, world.kiosk.id, as_deposits([item]))
    assert first.status == "accepted"
    [again] = ingest.ingest(
        db, world.kiosk.id, as_deposits([item]), limits=ingest.Limits(max_age_s=3600)
    )
    assert (again.status, again.original_status) == ("duplicate", "accepted")
    assert uuid.UUID(again.id) == uuid.UUID(item["id"])
