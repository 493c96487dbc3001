"""The kiosk's sync against a REAL backend served in a thread (SQLite or PostgreSQL).

The backend is ``create_app`` on the test database, seeded with
tests/factories.py and served by werkzeug on a free port.  "Down" means the
server is stopped (connection refused); "answer lost" means the backend
applied the batch but the kiosk got a 503 instead of the answer.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import socket

import pytest
from sqlalchemy import func, select

from backend.core.db import db
from backend.deposits.models import Deposit
from backend.registry.models import Label
from hardware.fakes import FakeClock
from kiosk import BackendAuthError, BackendRejected, BackendUnavailable
from kiosk.journal import Journal
from kiosk.labels import LabelRevoked, LabelVerifier
from kiosk.sync import BackendClient, Syncer, backoff_delay_s
from tests.factories import World, build_world, make_label
from tests.kiosk import stations

UTC = dt.UTC
POINTS_PER_KG = 10


class Switchable:
    """WSGI wrapper: pass through, or apply the request and lose the answer (503)."""

    def __init__(self, app):
        self.app = app
        self.lose_answers = 0
        self.requests = 0
        self.deposit_batches: list[int] = []

    def __call__(self, environ, start_response):
        self.requests += 1
        if environ["PATH_INFO"].endswith("/deposits") and environ.get("CONTENT_LENGTH"):
            self.deposit_batches.append(int(environ["CONTENT_LENGTH"]))
        if self.lose_answers:
            self.lose_answers -= 1
            result = self.app(environ, lambda *a, **k: None)  # applied...
            try:
                b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"answer lost"]  # ...but the kiosk never hears of it
        return self.app(environ, start_response)


class ServedBackend(stations.ServedBackend):
    """The backend app behind ``Switchable``, on one port that can be stopped and started again."""

    def __init__(self, app, world: World):
        self.wsgi = Switchable(app)
        super().__init__(self.wsgi)
        self.world = world

    def client(self, **kwargs) -> BackendClient:
        args = {
            "url": self.url,
            "kiosk_id": self.world.kiosk.id,
            "secret": self.world.secret,
            "timeout_s": 30.0,
        }
        args.update(kwargs)
        return BackendClient(**args)

    def deposits(self) -> dict[str, Deposit]:
        with db.session() as s:
            return {str(d.id): d for d in s.scalars(select(Deposit))}


@pytest.fixture
def served(app):
    with db.begin() as s:
        world = build_world(s, households=20, labels_per_household=100, points_per_kg=POINTS_PER_KG)
    backend = ServedBackend(app, world)
    backend.start()
    yield backend
    backend.stop()


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite3")
    yield j
    j.close()


def all_labels(world: World) -> list[tuple[str, str]]:
    return [
        (household, label) for household, labels in sorted(world.labels.items()) for label in labels
    ]


def journal_deposits(
    journal: Journal,
    world: World,
    n: int,
    *,
    start: int = 0,
    spread_s: float = 0.0,
    net_g: int = 1_000,
) -> list[str]:
    """Record ``n`` deposits with distinct labels, occurring over the last ``spread_s`` seconds."""
    labels = all_labels(world)[start : start + n]
    now = dt.datetime.now(UTC) - dt.timedelta(seconds=5)
    ids = []
    for i, (household, label) in enumerate(labels):
        deposit_id = journal.begin_deposit(
            label=label,
            household=household,
            serial=label.split(".")[3],
            door=1,
            category="plastic",
            before_g=200,
        )
        at = now - dt.timedelta(seconds=spread_s * (n - i) / max(n, 1))
        journal.finish_deposit(deposit_id, after_g=200 + net_g, net_g=net_g, occurred_at=at)
        ids.append(deposit_id)
    return ids


def syncer(journal, client, **kwargs) -> Syncer:
    kwargs.setdefault("rng", random.Random(1))
    return Syncer(journal, client, **kwargs)


# -- the happy path ---------------------------------------------------------------------


def test_outbox_uploads_and_answers_are_journalled(served, journal):
    ids = journal_deposits(journal, served.world, 5, net_g=1_250)
    report = syncer(journal, served.client()).sync_once()
    assert report.ok and report.sent == 5 and report.remaining == 0
    assert report.counts == {"accepted": 5}
    for deposit_id in ids:
        row = journal.get(deposit_id)
        assert (row.state, row.sync_status) == ("synced", "accepted")
        assert row.points == 1_250 * POINTS_PER_KG // 1000
        assert row.balance is not None and row.balance >= row.points
    stored = served.deposits()
    assert set(stored) == set(ids)
    assert all(d.net_g == 1_250 and d.points == 12 for d in stored.values())
    assert journal.get_meta("last_sync_ok_at") is not None
    assert journal.get_meta("last_sync_error") is None


def test_batches_respect_the_batch_size(served, journal):
    journal_deposits(journal, served.world, 23)
    report = syncer(journal, served.client(), batch_size=10).sync_once()
    assert report.batches == 3 and report.sent == 23 and report.remaining == 0
    assert len(served.wsgi.deposit_batches) == 3


def test_max_batches_bounds_one_pass_and_says_go_again(served, journal):
    journal_deposits(journal, served.world, 12)
    sync = syncer(journal, served.client(), batch_size=5, max_batches=2, interval_s=30)
    first = sync.sync_once()
    assert (first.sent, first.remaining, first.next_delay_s) == (10, 2, 0.0)
    second = sync.sync_once()
    assert (second.sent, second.remaining, second.next_delay_s) == (2, 0, 30)


# -- offline for days -----------------------------------------------------------------


def test_two_thousand_deposits_offline_then_uploaded_exactly_once(served, journal):
    served.stop()
    clock = FakeClock()
    sync = syncer(
        journal,
        served.client(timeout_s=5.0),
        clock=clock,
        batch_size=100,
        max_batches=100,
        base_delay_s=1,
        max_delay_s=300,
    )
    ids = journal_deposits(journal, served.world, 2_000, spread_s=3 * 86_400)
    for _ in range(12):  # days of failed attempts: nothing lost, nothing duplicated
        report = sync.sync_once()
        assert not report.ok and report.sent == 0 and report.remaining == 2_000
        clock.advance(report.next_delay_s)
    assert sync.failures == 12
    assert "unreachable" in journal.get_meta("last_sync_error")

    served.start()
    report = sync.sync_once()
    assert report.ok and report.remaining == 0 and report.batches == 20
    assert report.counts == {"accepted": 2_000}  # not one duplicate: each sent once
    assert sync.failures == 0
    stored = served.deposits()
    assert set(stored) == set(ids)
    assert journal.status()["states"]["synced"] == 2_000
    with db.session() as s:
        credited = s.scalar(select(func.sum(Deposit.points)))
    assert credited == 2_000 * (1_000 * POINTS_PER_KG // 1000)


def test_lost_answer_is_retried_and_answered_duplicate(served, journal):
    ids = journal_deposits(journal, served.world, 8)
    sync = syncer(journal, served.client(), batch_size=8)
    served.wsgi.lose_answers = 1
    lost = sync.sync_once()
    assert not lost.ok and lost.remaining == 8
    assert len(served.deposits()) == 8  # the backend did apply the batch
    again = sync.sync_once()
    assert again.ok and again.counts == {"duplicate": 8}
    for deposit_id in ids:
        row = journal.get(deposit_id)
        assert (row.state, row.sync_status, row.points) == ("synced", "duplicate", 10)
        assert row.original_status == "accepted"
    with db.session() as s:
        assert s.scalar(select(func.sum(Deposit.points))) == 8 * 10  # credited once


# -- answers that are not success -------------------------------------------------------


def test_reused_label_is_flagged_with_its_reason(served, journal):
    household, label = all_labels(served.world)[0]
    ids = []
    for _ in range(2):
        deposit_id = journal.begin_deposit(
            label=label,
            household=household,
            serial=label.split(".")[3],
            door=1,
            category="plastic",
            before_g=0,
        )
        journal.finish_deposit(
            deposit_id,
            after_g=800,
            net_g=800,
            occurred_at=dt.datetime.now(UTC) - dt.timedelta(seconds=60),
        )
        ids.append(deposit_id)
    report = syncer(journal, served.client()).sync_once()
    assert report.counts == {"accepted": 1, "flagged": 1}
    second = journal.get(ids[1])
    assert (second.sync_status, second.points, second.sync_reason) == ("flagged", 0, "label_reused")
    answer = syncer(journal, served.client()).wait_result(ids[1], timeout_s=5)
    assert answer["reason"] == "label_reused" and answer["status"] == "flagged"


def test_undecodable_deposit_is_held_and_the_rest_go_up(served, journal):
    # a kiosk bug: a category longer than the protocol allows makes the whole batch a 400
    before, after = journal_deposits(journal, served.world, 2)
    _, label = all_labels(served.world)[50]
    bad = journal.begin_deposit(
        label=label,
        household="H001",
        serial=label.split(".")[3],
        door=1,
        category="x" * 100,
        before_g=0,
    )
    journal.finish_deposit(bad, after_g=500, net_g=500, occurred_at=dt.datetime.now(UTC))
    sync = syncer(journal, served.client())
    report = sync.sync_once()
    assert report.ok and report.held == 1 and report.remaining == 0
    assert report.counts == {"accepted": 2}
    assert journal.get(before).state == journal.get(after).state == "synced"
    row = journal.get(bad)
    assert row.state == "recorded" and "400" in row.held_reason  # kept, not lost
    faults = {f["key"] for f in journal.faults()}
    assert {"held_deposits", "sync_protocol"} <= faults
    assert sync.sync_once().sent == 0  # held: not retried on its own
    journal.requeue(bad)  # staff put it back: it is held again, nothing else breaks
    assert sync.sync_once().held == 1
    assert bad not in served.deposits()


class DownAfterAnswers:
    """WSGI wrapper: pass ``answers`` deposit batches through with 200, then answer 503."""

    def __init__(self, app, answers: int):
        self.app = app
        self.answers_left = answers

    def __call__(self, environ, start_response):
        if not environ["PATH_INFO"].endswith("/deposits"):
            return self.app(environ, start_response)
        if self.answers_left <= 0:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"down"]

        def counting(status, headers, *rest):
            if status.startswith("200"):
                self.answers_left -= 1
            return start_response(status, headers, *rest)

        return self.app(environ, counting)


class BodyLimit:
    """WSGI wrapper: a proxy that refuses a body over ``limit_bytes`` with 413 (nginx-like)."""

    def __init__(self, app, limit_bytes: int):
        self.app = app
        self.limit_bytes = limit_bytes

    def __call__(self, environ, start_response):
        if int(environ.get("CONTENT_LENGTH") or 0) > self.limit_bytes:
            start_response("413 Request Entity Too Large", [("Content-Type", "application/json")])
            return [b'{"error": {"code": "payload_too_large", "message": "body too large"}}']
        return self.app(environ, start_response)


def test_a_413_that_halving_resolves_is_logged_not_a_fault(app, served, journal, caplog):
    app.config["MAX_BATCH"] = 3  # the backend's own 413 above 3 deposits
    served.wsgi.app = DownAfterAnswers(served.wsgi.app, answers=1)  # then the backend goes down
    ids = journal_deposits(journal, served.world, 10)
    sync = syncer(journal, served.client(), batch_size=10)
    with caplog.at_level("WARNING", logger="kiosk.sync"):
        first = sync.sync_once()
    assert not first.ok and "503" in first.error  # the pass ends on the outage...
    assert sync.batch_size == 2 and first.sent == 2 and first.held == 0  # ...after 10 -> 5 -> 2
    assert "backend refused a batch of 10 as too large" in caplog.text
    assert "sync_protocol" not in {f["key"] for f in journal.faults()}  # halving dealt with it
    served.wsgi.app = served.wsgi.app.app  # the backend is back
    second = sync.sync_once()
    assert second.ok and second.remaining == 0 and second.held == 0
    assert set(served.deposits()) == set(ids)
    assert "sync_protocol" not in {f["key"] for f in journal.faults()}


def test_a_413_for_a_single_deposit_holds_it_with_a_fault(served, journal):
    served.wsgi.app = BodyLimit(served.wsgi.app, limit_bytes=64)  # smaller than any deposit
    (deposit_id,) = journal_deposits(journal, served.world, 1)
    report = syncer(journal, served.client()).sync_once()
    assert report.ok and report.held == 1 and report.sent == 0
    assert "413" in journal.get(deposit_id).held_reason
    assert {"held_deposits", "sync_protocol"} <= {f["key"] for f in journal.faults()}


def test_rejected_is_stored_and_never_retried(served, journal):
    world = served.world
    with db.begin() as s:
        community = s.merge(world.community)
        household = s.merge(world.households["H001"])
        revoked = make_label(
            s, community, household, world.private_key, revoked_at=dt.datetime.now(UTC)
        )
    deposit_id = journal.begin_deposit(
        label=revoked,
        household="H001",
        serial=revoked.split(".")[3],
        door=1,
        category="plastic",
        before_g=0,
    )
    journal.finish_deposit(deposit_id, after_g=900, net_g=900, occurred_at=dt.datetime.now(UTC))
    good = journal_deposits(journal, world, 1)[0]
    sync = syncer(journal, served.client())
    report = sync.sync_once()
    assert report.ok and report.counts == {"rejected": 1, "accepted": 1}
    row = journal.get(deposit_id)
    assert (row.state, row.sync_status) == ("rejected", "rejected")
    assert row.error_code and "revoked" in row.error_code
    assert journal.get(good).state == "synced"
    requests_before = served.wsgi.requests
    assert sync.sync_once().sent == 0  # nothing left to send: not retried
    assert served.wsgi.requests == requests_before
    assert deposit_id not in served.deposits()


def test_conflict_is_a_fault(served, journal):
    deposit_id = journal_deposits(journal, served.world, 1, net_g=700)[0]
    client = served.client()
    item = journal.get(deposit_id).to_upload()
    # another writer already used this id with other content (a restored journal, say)
    assert client.post_deposits([{**item, "net_g": 701}])[0]["status"] == "accepted"
    report = syncer(journal, client).sync_once()
    assert report.counts == {"conflict": 1}
    assert journal.get(deposit_id).state == "conflict"
    faults = journal.status()["faults"]
    assert [f["key"] for f in faults] == [f"conflict:{deposit_id}"]
    assert served.deposits()[deposit_id].net_g == 701  # the backend kept the first


# -- authentication -----------------------------------------------------------------------


def test_wrong_secret_is_a_clear_fault(served, journal):
    journal_deposits(journal, served.world, 2)
    sync = syncer(journal, served.client(secret="not-the-secret-at-all"))
    report = sync.sync_once()
    assert not report.ok and report.remaining == 2
    assert "401" in report.error and "backend.secret" in report.error
    assert "clocks agree" in report.error
    faults = {f["key"]: f["message"] for f in journal.faults()}
    assert "backend.secret" in faults["sync_auth"]
    # once the secret is right the fault clears itself
    sync.client = served.client()
    assert sync.sync_once().ok
    assert "sync_auth" not in {f["key"] for f in journal.faults()}


def test_disabled_kiosk_is_named(served, journal):
    from backend.registry.models import Kiosk

    with db.begin() as s:
        s.get(Kiosk, served.world.kiosk.id).enabled = False
    journal_deposits(journal, served.world, 1)
    report = syncer(journal, served.client()).sync_once()
    assert "kiosk_disabled" in report.error and "disabled this kiosk" in report.error
    assert journal.outbox_depth() == 1


def test_clock_skew_is_named_with_the_servers_date(served, journal):
    journal_deposits(journal, served.world, 1)
    behind = FakeClock(start=dt.datetime.now(UTC).timestamp() - 1_000)
    with pytest.raises(BackendAuthError) as info:
        served.client(clock=behind).post_deposits([journal.outbox(1)[0].to_upload()])
    message = str(info.value)
    skew = re.search(r"clock is \+(\d+) s from this kiosk", message)
    assert skew and 990 <= int(skew[1]) <= 1_010, message
    assert "NTP" in message


# -- backoff ----------------------------------------------------------------------------------


def test_backoff_is_exponential_with_full_jitter_and_bounded(journal):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    client = BackendClient(f"http://127.0.0.1:{dead_port}", "k_x", "s" * 32, timeout_s=5)
    deposit_id = journal.begin_deposit(
        label="x", household="H", serial="S", door=1, category="c", before_g=0
    )
    journal.finish_deposit(deposit_id, after_g=10, net_g=10, occurred_at=dt.datetime.now(UTC))
    clock = FakeClock()
    sync = Syncer(
        journal, client, base_delay_s=2, max_delay_s=60, clock=clock, rng=random.Random(99)
    )
    delays = []
    for _ in range(10):
        report = sync.sync_once()
        assert isinstance(report.error, str) and "unreachable" in report.error
        assert sync.next_attempt_s == pytest.approx(clock.monotonic() + report.next_delay_s)
        delays.append(report.next_delay_s)
        clock.advance(report.next_delay_s)
    expected_rng = random.Random(99)
    ceilings = [min(60, 2 * 2**k) for k in range(10)]
    assert delays == [expected_rng.uniform(0, c) for c in ceilings]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert ceilings[-4:] == [60, 60, 60, 60]  # bounded


def test_backoff_delay_function():
    class Top:
        def uniform(self, low, high):
            return high

    assert [backoff_delay_s(n, 1, 300, Top()) for n in range(0, 12)] == [
        0,
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
        300,
    ]
    assert backoff_delay_s(10_000, 1, 300, Top()) == 300


# -- config and waiting for an answer --------------------------------------------------------


def test_refresh_config_is_cached_and_feeds_the_label_verifier(served, journal, tmp_path):
    world = served.world
    with db.begin() as s:
        label = s.get(Label, world.labels["H002"][0].split(".")[3])
        label.revoked_at = dt.datetime.now(UTC)
    sync = syncer(journal, served.client())
    config = sync.refresh_config()
    assert config["label_public_key"] == world.public_key_text
    journal.close()
    reopened = Journal(tmp_path / "journal.sqlite3")  # offline after a restart
    try:
        cached = reopened.get_meta("backend_config")
        assert cached == config
        verifier = LabelVerifier.from_backend_config(
            cached, community=world.community.slug, fallback_public_key=None
        )
        assert verifier.verify(world.labels["H001"][0]).household == "H001"
        with pytest.raises(LabelRevoked):
            verifier.verify(world.labels["H002"][0])
    finally:
        reopened.close()


def test_wait_result_inline_returns_the_answer(served, journal):
    deposit_id = journal_deposits(journal, served.world, 1, net_g=2_000)[0]
    answer = syncer(journal, served.client()).wait_result(deposit_id, timeout_s=30)
    assert answer["status"] == "accepted" and answer["points"] == 20
    assert answer["balance"] >= 20


def test_wait_result_gives_none_when_the_backend_is_down(served, journal):
    served.stop()
    deposit_id = journal_deposits(journal, served.world, 1)[0]
    assert syncer(journal, served.client()).wait_result(deposit_id, timeout_s=5) is None
    assert journal.get(deposit_id).state == "recorded"  # still in the outbox


def test_background_thread_uploads_when_woken(served, journal):
    sync = syncer(journal, served.client(), interval_s=3_600, config_refresh_s=3_600)
    sync.start()
    try:
        deposit_id = journal_deposits(journal, served.world, 1)[0]
        answer = sync.wait_result(deposit_id, timeout_s=30)
        assert answer is not None and answer["status"] == "accepted"
        assert journal.get_meta("backend_config")["label_public_key"]
    finally:
        sync.stop()
    assert not sync.running


# -- the client on its own ----------------------------------------------------------------------


def test_client_maps_errors(served):
    client = served.client()
    with pytest.raises(ValueError):
        client.post_deposits([])
    served.stop()
    with pytest.raises(BackendUnavailable):
        client.fetch_config()
    assert issubclass(BackendAuthError, BackendRejected)
