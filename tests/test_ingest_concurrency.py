"""Racing batches credit every deposit exactly once (service on separate connections, and real HTTP)."""

from __future__ import annotations

import collections
import json
import logging
import random
import threading
import uuid

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from werkzeug.serving import make_server

from backend.core.db import db
from backend.deposits import ingest
from backend.deposits.models import Deposit
from backend.ledger import services as ledger
from backend.ledger.models import Account, LedgerEntry
from backend.registry.models import Label
from tests.factories import as_deposits, build_world, deposit_item, make_kiosk, signed

THREADS = 4


@pytest.fixture
def world(app):
    with db.begin() as s:
        return build_world(s, households=5, labels_per_household=4)


def overlapping_items(world, count=30, seed=7):
    """Deposits where several share a label (so reuse races too), all distinct ids."""
    rng = random.Random(seed)
    payloads = [p for labels in world.labels.values() for p in labels]
    return [deposit_item(rng.choice(payloads), net_g=rng.randint(100, 5_000)) for _ in range(count)]


def in_threads(worker, count=THREADS):
    """Run worker(i) in ``count`` threads started together; return their results or raise."""
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def run(i):
        try:
            barrier.wait()
            results[i] = worker(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    if errors:
        raise errors[0]
    return results


def shuffled_batches(items, seed, size=10):
    rng = random.Random(seed)
    mine = list(items)
    rng.shuffle(mine)
    return [mine[i : i + size] for i in range(0, len(mine), size)]


def check_exactly_once(items, outcomes_by_worker):
    """Each id recorded once; every other answer a duplicate of it; balances verify."""
    by_id = collections.defaultdict(list)
    for outcomes in outcomes_by_worker:
        for o in outcomes:
            by_id[o["id"]].append(o)
    assert set(by_id) == {i["id"] for i in items}
    for answers in by_id.values():
        firsts = [a for a in answers if a["status"] in ("accepted", "flagged")]
        assert len(firsts) == 1, answers
        for a in answers:
            if a is not firsts[0]:
                assert a["status"] == "duplicate"
                assert (a["original_status"], a["points"]) == (
                    firsts[0]["status"],
                    firsts[0]["points"],
                )
    credited = sum(
        a["points"] for answers in by_id.values() for a in answers if a["status"] == "accepted"
    )
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Deposit)) == len(items)
        entries = s.scalars(select(LedgerEntry.source_id)).all()
        assert len(entries) == len(set(entries))
        assert s.scalar(select(func.coalesce(func.sum(Account.balance), 0))) == credited
        assert s.scalar(select(func.sum(Deposit.points))) == credited
        # a label credits once: at most one accepted deposit per label
        per_label = s.execute(
            select(Deposit.label_serial, func.count())
            .where(Deposit.status == "accepted")
            .group_by(Deposit.label_serial)
        ).all()
        assert all(n == 1 for _, n in per_label)
        claimed = s.scalar(
            select(func.count()).select_from(Label).where(Label.first_deposit_id.is_not(None))
        )
        assert claimed == len(per_label)
        assert ledger.verify(s) == []
    return by_id


def no_deadlocks(caplog):
    return not [r for r in caplog.records if "deadlock" in r.getMessage().lower()]


def test_overlapping_batches_through_the_service(world, caplog):
    caplog.set_level(logging.INFO, logger="backend.deposits.ingest")
    items = overlapping_items(world)

    def worker(i):
        out = []
        for batch in shuffled_batches(items, seed=i):
            out += [o.to_json() for o in ingest.ingest(db, world.kiosk.id, as_deposits(batch))]
        return out

    check_exactly_once(items, in_threads(worker))
    assert no_deadlocks(caplog)


def test_two_kiosks_racing_with_one_label(world):
    with db.begin() as s:
        other, _ = make_kiosk(s, world.community, world.categories, {1: "plastic"})
    kiosks = [world.kiosk.id, other.id]
    labels = [p for ps in world.labels.values() for p in ps]
    items = [[deposit_item(label) for label in labels] for _ in kiosks]

    def worker(i):
        return [ingest.ingest(db, kiosks[i], as_deposits([item]))[0] for item in items[i]]

    first, second = in_threads(worker, count=2)
    for a, b in zip(first, second, strict=True):
        assert sorted((a.status, b.status)) == ["accepted", "flagged"]
        assert "label_reused" in (a.reason, b.reason)
    with db.session() as s:
        assert ledger.verify(s) == []
        assert s.scalar(select(func.count()).select_from(LedgerEntry)) == len(labels)


@pytest.fixture
def server(app):
    """The app served over real HTTP by a threaded werkzeug server."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=10)


def test_overlapping_batches_through_http(world, server, caplog):
    caplog.set_level(logging.INFO, logger="backend.deposits.ingest")
    items = overlapping_items(world, count=40, seed=11)

    def worker(i):
        out = []
        with requests.Session() as http:
            for batch in shuffled_batches(items, seed=100 + i, size=8):
                body = json.dumps({"deposits": batch}).encode()
                headers = signed(world.kiosk.id, world.secret, "POST", "/api/v1/deposits", body)
                response = http.post(
                    server + "/api/v1/deposits", data=body, headers=headers, timeout=60
                )
                assert response.status_code == 200, response.text
                out += response.json()["results"]
        return out

    check_exactly_once(items, in_threads(worker))
    assert no_deadlocks(caplog)


# ------------------------------------------------------------- the retry loop


class FakeDb:
    """Counts transactions; ``begin`` yields a placeholder session."""

    def __init__(self):
        self.transactions = 0

    def begin(self):
        import contextlib

        @contextlib.contextmanager
        def tx():
            self.transactions += 1
            yield object()

        return tx()


class FakeOrig(Exception):
    def __init__(self, sqlstate):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_a_lost_race_retries_the_whole_transaction(monkeypatch):
    monkeypatch.setattr(ingest.time, "sleep", lambda s: None)
    fake, calls = FakeDb(), []

    def work(session, attempt):
        calls.append(attempt)
        if len(calls) < 3:
            raise ingest._RaceLost("someone else recorded it")
        return "done"

    assert ingest.in_transaction(fake, work) == "done"
    assert fake.transactions == 3 and calls == [1, 2, 3]


def test_retries_are_bounded(monkeypatch):
    monkeypatch.setattr(ingest.time, "sleep", lambda s: None)
    fake = FakeDb()

    def deadlock(session, attempt):
        raise DBAPIError("stmt", {}, FakeOrig("40P01"))

    with pytest.raises(ingest.IngestBusy):
        ingest.in_transaction(fake, deadlock)
    assert fake.transactions == ingest.MAX_ATTEMPTS


def test_other_database_errors_are_not_retried(monkeypatch):
    monkeypatch.setattr(ingest.time, "sleep", lambda s: None)
    fake = FakeDb()

    def broken(session, attempt):
        raise DBAPIError("stmt", {}, FakeOrig("42P01"))

    with pytest.raises(DBAPIError):
        ingest.in_transaction(fake, broken)
    assert fake.transactions == 1


def test_claim_labels_counts_only_the_claims_that_held(world):
    """A label claimed in between (by a batch that committed first) is not claimed again."""
    from backend.deposits import store as ingest_store
    from protocol import labels as plabels

    serials = [plabels.parse_label(world.labels["H001"][n])[0].serial for n in range(3)]
    earlier, mine = uuid.uuid4(), uuid.uuid4()
    with db.begin() as s:
        assert ingest_store.claim_labels(s.connection(), {serials[0]: earlier}) == 1
    with db.begin() as s:
        assert ingest_store.claim_labels(s.connection(), {serial: mine for serial in serials}) == 2
    with db.session() as s:
        assert s.get(Label, serials[0]).first_deposit_id == earlier
        assert s.get(Label, serials[1]).first_deposit_id == mine


def test_a_claim_lost_after_the_reads_retries_the_batch_as_label_reuse(world, monkeypatch, caplog):
    """The plan saw the label unclaimed, a batch that committed first claimed it: retried."""
    import dataclasses

    from backend.deposits import store as ingest_store

    caplog.set_level(logging.INFO, logger="backend.deposits.ingest")
    label = world.labels["H001"][0]
    [first] = ingest.ingest(db, world.kiosk.id, as_deposits([deposit_item(label)]))
    assert first.status == "accepted"
    real, calls = ingest_store.labels_with_locked_accounts, []

    def stale_once(session, serials):
        labels, accounts = real(session, serials)
        calls.append(1)
        if len(calls) == 1:  # as read before the other batch committed
            labels = {s: dataclasses.replace(r, first_deposit_id=None) for s, r in labels.items()}
        return labels, accounts

    monkeypatch.setattr(ingest_store, "labels_with_locked_accounts", stale_once)
    [again] = ingest.ingest(db, world.kiosk.id, as_deposits([deposit_item(label)]))
    assert (again.status, again.reason, again.points) == ("flagged", "label_reused", 0)
    assert len(calls) == 2
    assert any("retried" in r.getMessage() for r in caplog.records)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(LedgerEntry)) == 1
        assert ledger.verify(s) == []
