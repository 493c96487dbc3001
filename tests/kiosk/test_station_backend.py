"""Scripted kiosk sessions against the REAL backend, served in a thread (SQLite or PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from backend.core.db import db
from backend.deposits.models import Deposit
from backend.ledger.models import Account
from backend.registry.models import Label
from kiosk.cli import main
from tests.factories import build_world
from tests.kiosk.stations import ServedBackend, Session, kiosk_config
from tests.kiosk.test_kiosk_cli import write_config

POINTS_PER_KG = 20


@pytest.fixture
def world(app):
    with db.begin() as s:
        return build_world(s, households=3, labels_per_household=4, points_per_kg=POINTS_PER_KG)


@pytest.fixture
def backend(app, world):
    served = ServedBackend(app)
    yield served
    served.stop()


def backend_deposits(kiosk_id: str) -> list[Deposit]:
    with db.session() as s:
        return list(s.scalars(select(Deposit).where(Deposit.kiosk_id == kiosk_id)))


def balance(world, household: str) -> int:
    with db.session() as s:
        return s.scalar(
            select(Account.balance).where(Account.household_id == world.households[household].id)
        )


def session_for(tmp_path, world, backend, name: str = "state", **kw) -> Session:
    config = kiosk_config(
        tmp_path / name,
        backend_url=backend.url,
        public_key=None,  # the kiosk learns the key from GET /api/v1/kiosk/config
        kiosk_id=world.kiosk.id,
        secret=world.secret,
        community=world.community.slug,
        **kw,
    )
    return Session(config)


def test_happy_path_shows_the_backends_points_and_balance(tmp_path, world, backend):
    backend.start()
    s = session_for(tmp_path, world, backend)
    try:
        label = world.labels["H001"][0]
        s.run(f"""
            {label}
            expect Household H001: choose a bin: 1 plastic, 2 paper
            paper
            drop 1234
            close
            expect Thank you: 1234 g of paper. +24 points (estimate)
            expect +24 points - balance 24
        """)
        [row] = s.journal.deposits(limit=5)
        assert (row.state, row.sync_status, row.points, row.balance) == (
            "synced",
            "accepted",
            24,
            24,
        )
        [deposit] = backend_deposits(world.kiosk.id)
        assert (str(deposit.id), deposit.net_g, deposit.points, deposit.door) == (
            row.id,
            1234,
            24,
            2,
        )
        assert balance(world, "H001") == 24
    finally:
        s.close()


def test_a_reused_label_is_recorded_but_earns_nothing(tmp_path, world, backend):
    backend.start()
    s = session_for(tmp_path, world, backend)
    try:
        label = world.labels["H002"][0]
        s.run(
            f"{label}\nplastic\ndrop 500\nclose\nexpect +10 points - balance 10\nwait 6\nexpect-state idle"
        )
        s.run(f"{label}\nplastic\ndrop 700\nclose\nexpect 0 points")
        assert balance(world, "H002") == 10
        statuses = sorted(d.status for d in backend_deposits(world.kiosk.id))
        assert statuses == ["accepted", "flagged"]
    finally:
        s.close()


def test_backend_down_for_the_whole_session_then_back_uploads_exactly_once(
    tmp_path, world, backend
):
    # the kiosk has fetched its config once before (a kiosk never reached cannot verify labels)
    backend.start()
    s = session_for(tmp_path, world, backend, sync_interval_s=30.0)
    backend.stop()
    try:
        labels = world.labels["H003"]
        for label, grams in zip(labels[:3], (600, 800, 1000), strict=True):
            s.run(
                f"{label}\npaper\ndrop {grams}\nclose\nexpect {grams} g of paper\nwait 3\nexpect balance pending"
            )
            s.run("wait 3\nexpect-state idle")
        s.run("sync\nwait 60")  # retries with backoff against a dead backend: nothing lost
        assert s.journal.outbox_depth() == 3
        assert backend_deposits(world.kiosk.id) == []
        backend.start()
        s.run("wait 65")  # the next scheduled sync after the backoff
        assert s.journal.outbox_depth() == 0
        rows = s.journal.deposits(limit=10)
        assert [(r.state, r.sync_status) for r in rows] == [("synced", "accepted")] * 3
        stored = backend_deposits(world.kiosk.id)
        assert sorted(str(d.id) for d in stored) == sorted(r.id for r in rows)
        assert balance(world, "H003") == (600 + 800 + 1000) * POINTS_PER_KG // 1000
        s.run("sync\nwait 31")
        assert len(backend_deposits(world.kiosk.id)) == 3
    finally:
        s.close()
    # a restarted kiosk does not send them again either
    again = session_for(tmp_path, world, backend)
    try:
        again.run("sync")
        assert len(backend_deposits(world.kiosk.id)) == 3
    finally:
        again.close()


def test_a_label_revoked_at_the_backend_is_refused_after_the_config_refresh(
    tmp_path, world, backend
):
    backend.start()
    label = world.labels["H001"][1]
    serial = label.split(".")[3]
    s = session_for(tmp_path, world, backend)
    try:
        s.run(f"{label}\nexpect choose a bin\ncancel\nexpect-state idle")
        with db.begin() as session:
            session.execute(
                update(Label)
                .where(Label.serial == serial)
                .values(revoked_at=dt.datetime.now(dt.UTC), revoked_reason="lost")
            )
        s.station.refresh_config()
        backend.stop()  # refused offline, from the cached config
        s.run(f"{label}\nexpect Label refused: this label has been revoked\nexpect-state idle")
        assert s.journal.deposits(limit=5) == []
    finally:
        s.close()


def test_selftest_passes_against_a_live_backend(tmp_path, world, backend, monkeypatch):
    backend.start()
    from tests.kiosk.stations import Keys

    config_path = write_config(tmp_path, Keys("green"), url=backend.url)
    text = config_path.read_text().replace('kiosk_id = "k_cli"', f'kiosk_id = "{world.kiosk.id}"')
    text = text.replace('secret = "s3cret-s3cret-s3cret"', f'secret = "{world.secret}"')
    config_path.write_text(text)
    result = CliRunner().invoke(main, ["selftest", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    assert "PASS backend: signed config request answered (2 doors)" in result.output
    assert "FAIL" not in result.output


def test_a_kiosk_that_never_reached_the_backend_is_out_of_order_until_it_does(
    tmp_path, world, backend
):
    s = session_for(
        tmp_path, world, backend, sync_interval_s=10.0
    )  # no key in the config, backend down
    try:
        s.run("expect Out of order: cannot verify labels\nexpect-state fault")
        s.run(f"{world.labels['H001'][0]}\nexpect Out of order")
        backend.start()
        s.run("wait 12\nexpect-state idle")
        s.run(f"{world.labels['H001'][0]}\nexpect Household H001: choose a bin")
    finally:
        s.close()


def test_a_scan_before_any_label_key_is_a_self_clearing_config_fault(tmp_path, world, backend):
    s = session_for(tmp_path, world, backend, sync_interval_s=10.0)
    try:
        s.station.flow.send("cleared")  # leave the start-up fault, as if the check had not run yet
        s.flow.send("scan", payload=world.labels["H001"][0])
        assert s.state == "fault" and s.flow.fault_kind == "config"
        backend.start()
        s.run("wait 12\nexpect-state idle")
    finally:
        s.close()
