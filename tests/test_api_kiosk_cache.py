"""The per-worker kiosk cache: it saves a query, and never outlives a change that matters."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import event, select, update

from backend.core.db import db
from backend.core.errors import Unauthorized
from backend.deposits.models import Deposit
from backend.kiosk_api import auth, kiosk_cache
from backend.kiosk_api.kiosk_cache import KioskCache
from backend.registry.models import Community, Kiosk
from tests.factories import build_world, deposit_item, make_rule, post_deposits, signed

PATH = "/api/v1/deposits"


@pytest.fixture
def world(app):
    with db.begin() as s:
        return build_world(s, households=2, labels_per_household=6)


@pytest.fixture
def cache(app) -> KioskCache:
    return kiosk_cache.for_app(app)


@pytest.fixture
def statements(app):
    """The SQL text of every statement the app runs from now on."""
    seen: list[str] = []

    def record(conn, cursor, statement, params, context, many):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    yield seen
    event.remove(db.engine, "before_cursor_execute", record)


def _setup_queries(statements: list[str]) -> int:
    # only the kiosk set-up query joins kiosk_doors
    return sum("kiosk_doors" in s and s.lstrip().startswith("SELECT") for s in statements)


def _deposit(client, world, household="H001", n=0, **kw):
    response = post_deposits(client, world, [deposit_item(world.labels[household][n], **kw)])
    return response


def _accepted(response) -> dict:
    assert response.status_code == 200, response.json
    [result] = response.json["results"]
    assert result["status"] == "accepted", result
    return result


def test_a_kept_kiosk_needs_no_setup_query(client, world, cache, statements):
    _accepted(_deposit(client, world, n=0))
    assert _setup_queries(statements) == 1
    assert len(cache) == 1
    statements.clear()
    _accepted(_deposit(client, world, n=1))
    assert _setup_queries(statements) == 0


def test_a_disabled_kiosk_is_refused_on_its_next_request(client, world, cache):
    _accepted(_deposit(client, world, n=0))
    assert cache.get(world.kiosk.id) is not None
    with db.begin() as s:
        s.execute(update(Kiosk).where(Kiosk.id == world.kiosk.id).values(enabled=False))
    refused = _deposit(client, world, n=1)
    assert refused.status_code == 401
    assert refused.json["error"]["code"] == "kiosk_disabled"
    assert cache.get(world.kiosk.id) is None
    headers = signed(world.kiosk.id, world.secret, "GET", "/api/v1/kiosk/config")
    assert client.get("/api/v1/kiosk/config", headers=headers).status_code == 401
    with db.session() as s:
        assert len(s.scalars(select(Deposit.id)).all()) == 1  # only the first one


def test_a_new_rule_version_scores_the_next_deposit(client, world, cache):
    assert _accepted(_deposit(client, world, n=0, net_g=1_000))["points"] == 10
    now = dt.datetime.now(dt.UTC)
    with db.begin() as s:
        plastic = s.merge(world.categories["plastic"])
        make_rule(s, plastic, 50, effective_at=now - dt.timedelta(minutes=5))
    result = _accepted(_deposit(client, world, n=1, net_g=1_000))
    assert result["points"] == 50


def test_a_timezone_change_moves_the_next_local_day(client, world, cache):
    # 23:30 UTC is the next day in Shanghai (UTC+8) and the same day in UTC
    at = dt.datetime.now(dt.UTC).replace(hour=23, minute=30, second=0, microsecond=0)
    if at > dt.datetime.now(dt.UTC):
        at -= dt.timedelta(days=1)
    _accepted(_deposit(client, world, n=0, occurred_at=at))
    with db.begin() as s:
        s.execute(
            update(Community).where(Community.id == world.community.id).values(timezone="UTC")
        )
    _accepted(_deposit(client, world, n=1, occurred_at=at))
    with db.session() as s:
        days = sorted(s.scalars(select(Deposit.local_day)))
    assert days == [at.date(), at.date() + dt.timedelta(days=1)]


def test_a_replay_is_refused_with_a_kept_kiosk(client, world, cache):
    body = json.dumps({"deposits": [deposit_item(world.labels["H001"][0])]}).encode()
    headers = signed(world.kiosk.id, world.secret, "POST", PATH, body)
    _accepted(_deposit(client, world, n=1))  # the kiosk is kept now
    assert client.post(PATH, data=body, headers=headers).status_code == 200
    again = client.post(PATH, data=body, headers=headers)
    assert again.status_code == 401
    assert again.json["error"]["code"] == "nonce_reused"


def test_a_wrong_secret_is_refused_with_a_kept_kiosk(client, world, cache):
    _accepted(_deposit(client, world, n=0))
    body = json.dumps({"deposits": [deposit_item(world.labels["H001"][1])]}).encode()
    bad = client.post(PATH, data=body, headers=signed(world.kiosk.id, "nope", "POST", PATH, body))
    assert bad.status_code == 401
    assert bad.json["error"]["code"] == "signature_invalid"


def test_a_kept_kiosk_has_rule_versions_that_start_later(world):
    """A copy serves later requests, so it holds future rule versions too."""
    t0 = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    with db.begin() as s:
        plastic = s.merge(world.categories["plastic"])
        make_rule(s, plastic, 70, effective_at=t0 + dt.timedelta(hours=1))
    cache = KioskCache(ttl_s=10**9)

    def authenticate(at: dt.datetime):
        headers = signed(
            world.kiosk.id,
            world.secret,
            "GET",
            "/api/v1/kiosk/config",
            now=at.timestamp(),
        )
        with db.begin() as s:
            return auth.authenticate(
                s,
                headers=headers,
                method="GET",
                target="/api/v1/kiosk/config",
                body=b"",
                now=at,
                max_skew_s=300,
                cache=cache,
            )

    first = authenticate(t0)
    later = authenticate(t0 + dt.timedelta(hours=2))
    assert later.setup is first.setup  # served from the cache
    rule = later.setup.rules.in_force(world.categories["plastic"].id, t0 + dt.timedelta(hours=2))
    assert rule.points_per_kg == 70


def test_without_a_cache_nothing_is_kept(world):
    cache = KioskCache(ttl_s=0)
    headers = signed(world.kiosk.id, world.secret, "GET", "/api/v1/kiosk/config")
    with db.begin() as s:
        kiosk = auth.authenticate(
            s,
            headers=headers,
            method="GET",
            target="/api/v1/kiosk/config",
            body=b"",
            now=dt.datetime.now(dt.UTC),
            max_skew_s=300,
            cache=cache,
        )
    assert kiosk.ref.kiosk_id == world.kiosk.id
    assert len(cache) == 0


def test_an_unknown_kiosk_is_never_kept(client, world, cache):
    body = json.dumps({"deposits": [deposit_item(world.labels["H001"][0])]}).encode()
    r = client.post(PATH, data=body, headers=signed("k_nobody", "x", "POST", PATH, body))
    assert r.status_code == 401
    assert len(cache) == 0


# ----------------------------------------------------------- the cache itself


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _context(kiosk_id: str):
    from backend.deposits.store import KioskContext, KioskRef, Setup
    from backend.ledger.points import RuleBook

    return KioskContext(
        KioskRef(kiosk_id, 1, "c", "UTC", "key"),
        "n",
        "s",
        True,
        None,
        Setup({}, {}, RuleBook([])),
    )


def test_copies_expire_after_the_ttl():
    clock = FakeClock()
    cache = KioskCache(ttl_s=5, clock=clock)
    cache.put(_context("k1"))
    clock.now += 4.9
    assert cache.get("k1") is not None
    clock.now += 0.1
    assert cache.get("k1") is None
    assert len(cache) == 0


def test_the_least_recently_used_copy_goes_first():
    cache = KioskCache(ttl_s=60, max_kiosks=2, clock=FakeClock())
    cache.put(_context("k1"))
    cache.put(_context("k2"))
    assert cache.get("k1") is not None  # k2 is now the least recently used
    cache.put(_context("k3"))
    assert [k for k in ("k1", "k2", "k3") if cache.get(k)] == ["k1", "k3"]


def test_seen_updates_last_seen_but_not_the_age():
    clock = FakeClock()
    cache = KioskCache(ttl_s=5, clock=clock)
    cache.put(_context("k1"))
    clock.now += 3
    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    cache.seen("k1", at)
    assert cache.get("k1").last_seen_at == at
    clock.now += 2
    assert cache.get("k1") is None


def test_a_refused_request_leaves_no_nonce_and_no_copy(world):
    cache = KioskCache(ttl_s=60)
    with db.begin() as s:
        s.execute(update(Kiosk).where(Kiosk.id == world.kiosk.id).values(enabled=False))
    headers = signed(world.kiosk.id, world.secret, "GET", "/api/v1/kiosk/config")
    with pytest.raises(Unauthorized) as refused, db.begin() as s:
        auth.authenticate(
            s,
            headers=headers,
            method="GET",
            target="/api/v1/kiosk/config",
            body=b"",
            now=dt.datetime.now(dt.UTC),
            max_skew_s=300,
            cache=cache,
        )
    assert refused.value.code == "kiosk_disabled"
    assert len(cache) == 0
