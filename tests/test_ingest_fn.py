"""PostgreSQL's one-call deposit (``sortpoint_ingest_one``): the batch path's answers, exactly once."""

from __future__ import annotations

import datetime as dt
import random
import uuid

import pytest
from sqlalchemy import func, select

from backend.core.db import db
from backend.deposits import ingest
from backend.deposits import pg_one as ingest_fn
from backend.deposits.models import Deposit
from backend.deposits.store import kiosk_context
from backend.kiosk_api.models import RequestNonce
from backend.ledger import rules
from backend.ledger import services as ledger
from backend.ledger.models import Account, DailyTotal, LedgerEntry
from tests.factories import as_deposits, deposit_item, post_deposits
from tests.test_ingest_concurrency import check_exactly_once, in_threads, overlapping_items
from tests.test_ingest_single import _answers, _scenario, _world

UTC = dt.UTC


@pytest.fixture(autouse=True)
def _postgres_only(on_postgres):
    if not on_postgres:
        pytest.skip("the one-call function exists on PostgreSQL only")


def _kept(world):
    """The kiosk as the worker cache keeps it: every rule version."""
    with db.read() as s:
        return kiosk_context(s.connection(), world.kiosk.id, None)


def _by_function(kiosk, item, nonce=None, **kw):
    return ingest.apply_one_fn(
        db.engine,
        kiosk,
        nonce or uuid.uuid4().hex,
        item,
        limits=kw.pop("limits", ingest.Limits()),
        now=kw.pop("now", dt.datetime.now(UTC)),
    )


def _one(world, item, taken: list) -> ingest.Outcome:
    """The view's order: the function, else the general path."""
    outcome = _by_function(_kept(world), item)
    taken.append(outcome is not None)
    if outcome is None:
        [outcome] = ingest.ingest(db, world.kiosk.id, [item])
    return outcome


def _count(model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_function_path_answers_exactly_as_the_general_path(app):
    fn_world, general = _world("green"), _world("blue")
    taken: list[bool] = []
    fn_answers = [
        (o.status, o.points, o.balance, o.reason, o.original_status, (o.error or {}).get("code"))
        for o in (
            _one(fn_world, item, taken)
            for item in as_deposits(_scenario(fn_world, general.labels["H001"][3]))
        )
    ]
    general_answers = _answers(general, _scenario(general, fn_world.labels["H001"][3]))
    assert fn_answers == general_answers
    # every new accepted deposit went through the function, but for the two the cap
    # reduced: the day's total was beyond what the plan's award held for (SPF05)
    assert taken == [s == "accepted" and i not in (7, 8) for i, (s, *_) in enumerate(fn_answers)]
    assert sum(taken) == 4
    assert [a[1] for a in fn_answers[6:9]] == [25, 5, 0]
    with db.session() as s:
        assert ledger.verify(s) == []
        by_world = {}
        for world in (fn_world, general):
            household = world.households["H002"].id
            by_world[world.kiosk.id] = (
                s.scalar(
                    select(func.sum(DailyTotal.points)).where(DailyTotal.household_id == household)
                ),
                s.get(Account, household).entry_count,
                sorted(
                    (e.kind, e.amount, e.balance_after, e.reason, e.source_type)
                    for e in s.scalars(
                        select(LedgerEntry).where(LedgerEntry.household_id == household)
                    )
                ),
            )
        assert by_world[fn_world.kiosk.id] == by_world[general.kiosk.id]
        assert by_world[fn_world.kiosk.id][0] == 40


def test_a_replayed_nonce_falls_back_and_records_nothing(app):
    world = _world("green")
    kiosk = _kept(world)
    first = deposit_item(world.labels["H001"][0])
    assert _by_function(kiosk, as_deposits([first])[0], nonce="n" * 20).status == "accepted"
    before = (_count(Deposit), _count(LedgerEntry), _count(RequestNonce))
    second = as_deposits([deposit_item(world.labels["H001"][1])])[0]
    assert _by_function(kiosk, second, nonce="n" * 20) is None
    assert (_count(Deposit), _count(LedgerEntry), _count(RequestNonce)) == before


def test_a_stale_kiosk_copy_falls_back_and_records_nothing(app):
    world = _world("green")
    kiosk = _kept(world)
    with db.begin() as s:  # a new rule version changes the rules mark
        rules.set_rule(
            s,
            world.community.slug,
            "plastic",
            points_per_kg=20,
            min_net_g=100,
            daily_cap=None,
            effective_at=dt.datetime.now(UTC) - dt.timedelta(minutes=1),
        )
    item = as_deposits([deposit_item(world.labels["H001"][0])])[0]
    assert _by_function(kiosk, item) is None
    assert (_count(Deposit), _count(RequestNonce)) == (0, 0)
    assert _by_function(_kept(world), item).points == 20  # a fresh copy scores the new rule


def test_a_missing_function_falls_back(app):
    world = _world("green")
    with db.engine.begin() as conn:
        ingest_fn.drop(conn)
    item = as_deposits([deposit_item(world.labels["H001"][0])])[0]
    assert _by_function(_kept(world), item) is None
    assert _count(RequestNonce) == 0


def test_racing_function_deposits_credit_exactly_once(app):
    world = _world("green")
    items = overlapping_items(world, count=24, seed=5)

    def worker(i):
        mine = list(as_deposits(items))
        random.Random(i).shuffle(mine)
        return [_one(world, item, []).to_json() for item in mine]

    check_exactly_once(items, in_threads(worker))


def test_racing_function_deposits_never_pass_the_daily_cap(app):
    world = _world("green")
    household = world.households["H001"]
    labels = world.labels["H001"]  # four labels, 15 points each, cap 30

    def worker(i):
        taken: list[bool] = []
        outcome = _one(world, as_deposits([deposit_item(labels[i], net_g=1_500)])[0], taken)
        return outcome, taken[0]

    results = in_threads(worker, count=len(labels))
    assert sum(o.points for o, _ in results) == 30
    assert all(o.status == "accepted" for o, _ in results)
    # the first two fit under the cap as planned; the others found a total beyond the bound
    assert sorted(taken for _, taken in results) == [False, False, True, True]
    with db.session() as s:
        assert s.get(Account, household.id).balance == 30
        assert ledger.verify(s) == []


def test_a_single_deposit_request_is_one_driver_call(client, monkeypatch):
    world = _world("green", daily_cap=None)
    assert post_deposits(client, world, [deposit_item(world.labels["H001"][0])]).status_code == 200
    calls = []
    real = ingest_fn.call
    monkeypatch.setattr(ingest_fn, "call", lambda *a: calls.append(1) or real(*a))
    response = post_deposits(client, world, [deposit_item(world.labels["H001"][1])])
    assert response.json["results"][0]["status"] == "accepted"
    assert calls == [1]
    replay = post_deposits(client, world, [deposit_item(world.labels["H001"][2])], nonce="r" * 20)
    assert replay.status_code == 200
    again = post_deposits(client, world, [deposit_item(world.labels["H001"][3])], nonce="r" * 20)
    assert again.status_code == 401
    assert again.json["error"]["code"] == "nonce_reused"
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Deposit)) == 3


# ------------------------------------------- the call on the engine's pool


def _pool_pids() -> set[int]:
    """Server process ids of the pool's connections, checked out one after another."""
    pids = set()
    for _ in range(db.engine.pool.checkedin() or 1):
        with db.engine.connect() as conn:
            pids.add(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())
    return pids


def _terminate(pid: int) -> None:
    """Have the server end a connection's process (from outside the pool), and wait until it has."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    outside = create_engine(db.engine.url, poolclass=NullPool)
    with outside.connect() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)}, 10000)")
    outside.dispose()


def _item(world, i):
    return as_deposits([deposit_item(world.labels["H001"][i])])[0]


def test_the_call_runs_on_a_pooled_connection_and_leaves_it_out_of_autocommit(app):
    world = _world("green")
    kiosk = _kept(world)
    assert _by_function(kiosk, _item(world, 0)).status == "accepted"
    assert db.engine.pool.checkedout() == 0
    with db.engine.connect() as conn:
        assert not conn.connection.driver_connection.autocommit
    # a fallback (replayed nonce) answers None and keeps the connection
    assert _by_function(kiosk, _item(world, 1), nonce="n" * 20).status == "accepted"
    pids = _pool_pids()
    assert _by_function(kiosk, _item(world, 2), nonce="n" * 20) is None
    assert _pool_pids() == pids


def test_a_connection_the_server_killed_fails_one_call_then_reconnects(app):
    import psycopg

    world = _world("green")
    kiosk = _kept(world)
    assert _by_function(kiosk, _item(world, 0)).status == "accepted"
    [pid] = _pool_pids()
    _terminate(pid)
    with pytest.raises(psycopg.OperationalError):
        _by_function(kiosk, _item(world, 1))
    assert _by_function(kiosk, _item(world, 1)).status == "accepted"
    assert pid not in _pool_pids()
    assert _count(Deposit) == 2
    with db.session() as s:
        assert ledger.verify(s) == []


def test_a_deadlock_fallback_keeps_the_connection(app, monkeypatch):
    """Fallback SQLSTATEs of the OperationalError family (40P01, 40001) are races, not losses."""
    import psycopg

    world = _world("green")
    kiosk = _kept(world)
    assert _by_function(kiosk, _item(world, 0)).status == "accepted"
    [pid] = _pool_pids()
    monkeypatch.setattr(
        ingest_fn,
        "CALL_SQL",
        "DO $$ BEGIN RAISE EXCEPTION 'as if' USING ERRCODE = '40P01'; END $$",
    )
    monkeypatch.setattr(ingest_fn, "ARG_NAMES", ())
    assert issubclass(psycopg.errors.DeadlockDetected, psycopg.OperationalError)
    assert _by_function(kiosk, _item(world, 1)) is None
    assert _pool_pids() == {pid}


def test_with_pre_ping_a_killed_connection_costs_no_call(app, database_url):
    db.bind(database_url, pre_ping=True)
    world = _world("green")
    kiosk = _kept(world)
    assert _by_function(kiosk, _item(world, 0)).status == "accepted"
    [pid] = _pool_pids()
    _terminate(pid)
    assert _by_function(kiosk, _item(world, 1)).status == "accepted"


def test_threads_share_the_pool(app):
    world = _world("green", daily_cap=None)
    kiosk = _kept(world)
    labels = [serial for h in ("H001", "H002") for serial in world.labels[h]]

    def worker(i):
        return _by_function(kiosk, as_deposits([deposit_item(labels[i])])[0])

    results = in_threads(worker, count=len(labels))
    assert all(o is not None and o.status == "accepted" for o in results)
    assert db.engine.pool.checkedout() == 0
    with db.session() as s:
        assert ledger.verify(s) == []


def test_the_live_function_is_the_newest_migrations_text():
    """``create_schema`` installs ``pg_one.CREATE_SQL``; ``db upgrade`` the newest revision's."""
    import importlib.util
    from pathlib import Path

    versions = Path(ingest_fn.__file__).resolve().parents[1] / "migrations" / "versions"
    newest = None
    for path in sorted(versions.glob("*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if ingest_fn.NAME in getattr(module, "CREATE_SQL", ""):
            newest = module
    assert newest is not None
    assert newest.CREATE_SQL == ingest_fn.CREATE_SQL
    assert newest.DROP_SQL == ingest_fn.DROP_SQL


def test_a_day_total_beyond_the_plans_bound_falls_back_and_records_nothing(app):
    world = _world("green")  # cap 30
    kiosk = _kept(world)
    first = _by_function(
        kiosk, as_deposits([deposit_item(world.labels["H001"][0], net_g=2_500)])[0]
    )
    assert (first.points, first.balance) == (25, 25)
    before = (_count(Deposit), _count(LedgerEntry), _count(RequestNonce))
    item = as_deposits([deposit_item(world.labels["H001"][1], net_g=1_000)])[0]
    assert _by_function(kiosk, item) is None  # 10 points hold up to a total of 20, not 25
    assert (_count(Deposit), _count(LedgerEntry), _count(RequestNonce)) == before
    [capped] = ingest.ingest(db, world.kiosk.id, [item])
    assert (capped.points, capped.reason, capped.balance) == (5, "daily_cap", 30)
