"""Journal pruning: what goes, what never goes, and the station's daily schedule in virtual time."""

from __future__ import annotations

import datetime as dt
import sqlite3
from contextlib import closing

import pytest

from hardware.fakes import FakeClock
from kiosk import ConfigError
from kiosk.config import config_from_dict
from kiosk.journal import Journal
from kiosk.parts import build_parts
from kiosk.station import Station
from kiosk.upkeep import DAY_S, RETRY_S, JournalPruner
from tests.kiosk.stations import Keys, kiosk_config, offline_config

AT = dt.datetime(2025, 6, 1, 8, 0, tzinfo=dt.UTC)


def deposit(journal: Journal, serial: str, net_g: int = 500) -> str:
    """Return the id of a weighed deposit ("recorded", or "empty" for net_g <= 0)."""
    deposit_id = journal.begin_deposit(
        label=f"SP1.green.H001.{serial}.sig",
        household="H001",
        serial=serial,
        door=1,
        category="plastic",
        before_g=0,
    )
    journal.finish_deposit(deposit_id, after_g=max(net_g, 0), net_g=net_g, occurred_at=AT)
    return deposit_id


def every_kind(journal: Journal) -> dict[str, str]:
    """Write one deposit in each state that pruning must tell apart; return kind -> id."""
    ids = {
        kind: deposit(journal, f"SER{n:03d}")
        for n, kind in enumerate(("synced", "flagged", "waiting", "held", "rejected", "conflict"))
    }
    ids["empty"] = deposit(journal, "SER100", net_g=0)
    ids["interrupted"] = journal.begin_deposit(
        label="SP1.green.H001.SER101.sig",
        household="H001",
        serial="SER101",
        door=1,
        category="plastic",
        before_g=0,
    )
    journal.interrupt(ids["interrupted"], "door never opened")
    ids["open"] = journal.begin_deposit(
        label="SP1.green.H001.SER102.sig",
        household="H001",
        serial="SER102",
        door=1,
        category="plastic",
        before_g=0,
    )
    journal.hold(ids["held"], "backend answered 400")
    journal.record_results(
        [
            {"id": ids["synced"], "status": "accepted", "points": 5, "balance": 5},
            {
                "id": ids["flagged"],
                "status": "flagged",
                "points": 0,
                "balance": 5,
                "reason": "label_reused",
            },
            {
                "id": ids["rejected"],
                "status": "rejected",
                "points": 0,
                "balance": None,
                "error": {"code": "label_revoked", "message": "revoked"},
            },
            {
                "id": ids["conflict"],
                "status": "conflict",
                "points": 0,
                "balance": None,
                "error": {"code": "conflict", "message": "different content"},
            },
        ]
    )
    return ids


def remaining(journal: Journal) -> set[str]:
    return {row.id for row in journal.deposits(limit=1000)}


def test_prune_keeps_everything_that_is_not_answered_and_synced(tmp_path):
    clock = FakeClock(start=AT.timestamp())
    journal = Journal(tmp_path / "j.sqlite3", clock=clock.now)
    ids = every_kind(journal)
    journal.raise_fault("scanner", "unplugged")
    journal.clear_fault("scanner")
    assert journal.prune(older_than_s=7 * DAY_S) == 0  # nothing is a week old yet
    clock.advance(8 * DAY_S)
    assert journal.prune(older_than_s=7 * DAY_S) == 3
    kept = {kind for kind, deposit_id in ids.items() if deposit_id in remaining(journal)}
    assert kept == {"waiting", "held", "rejected", "conflict", "interrupted", "open"}
    assert journal.outbox_depth() == 2 and journal.get(ids["held"]).held_reason
    with closing(sqlite3.connect(tmp_path / "j.sqlite3")) as raw:  # cleared faults went too
        keys = {row[0] for row in raw.execute("SELECT key FROM faults")}
    assert keys == {f"conflict:{ids['conflict']}", "held_deposits"}  # active ones stay
    journal.close()


def test_a_deposit_synced_late_is_kept_for_the_full_period_after_its_answer(tmp_path):
    clock = FakeClock(start=AT.timestamp())
    journal = Journal(tmp_path / "j.sqlite3", clock=clock.now)
    late = deposit(journal, "SER001")
    clock.advance(10 * DAY_S)  # offline for ten days
    journal.record_results([{"id": late, "status": "accepted", "points": 5, "balance": 5}])
    clock.advance(DAY_S)
    assert journal.prune(older_than_s=7 * DAY_S) == 0  # answered a day ago: kept
    clock.advance(7 * DAY_S)
    assert journal.prune(older_than_s=7 * DAY_S) == 1
    journal.close()


class FlakyJournal:
    """A journal whose prune fails the first ``failures`` times."""

    def __init__(self, failures: int):
        self.failures, self.calls = failures, []

    def prune(self, older_than_s: float) -> int:
        self.calls.append(older_than_s)
        if len(self.calls) <= self.failures:
            raise OSError("disk I/O error")
        return 4


def test_pruner_runs_at_start_then_daily_and_retries_a_failure_hourly():
    clock = FakeClock()
    journal = FlakyJournal(failures=1)
    pruner = JournalPruner(journal, keep_synced_days=30, clock=clock)
    assert pruner.run_if_due() is None and journal.calls == [30 * DAY_S]  # failed at start
    clock.advance(RETRY_S - 1)
    assert pruner.run_if_due() is None and len(journal.calls) == 1
    clock.advance(1)
    assert pruner.run_if_due() == 4 and len(journal.calls) == 2
    clock.advance(DAY_S - 1)
    assert pruner.run_if_due() is None and len(journal.calls) == 2
    clock.advance(1)
    assert pruner.run_if_due() == 4 and (pruner.runs, pruner.removed) == (2, 8)
    with pytest.raises(ValueError):
        JournalPruner(journal, keep_synced_days=0, clock=clock)


def test_keep_synced_days_is_checked_in_the_config(tmp_path):
    config = kiosk_config(tmp_path, backend_url="http://127.0.0.1:9", public_key=None)
    assert config.journal.keep_synced_days == 30
    raw = {
        "kiosk": {"name": "k", "state_dir": str(tmp_path)},
        "backend": {
            "url": "http://127.0.0.1:9",
            "kiosk_id": "k_1",
            "secret": "s" * 16,
            "community": "green",
        },
        "scanner": {"driver": "fake"},
        "scale": {"driver": "fake"},
        "doors": [{"number": 1, "category": "plastic", "capacity_g": 1000, "driver": "fake"}],
        "journal": {"keep_synced_days": 0},
    }
    with pytest.raises(ConfigError, match="keep_synced_days"):
        config_from_dict(raw)
    raw["journal"]["keep_synced_days"] = 7
    assert config_from_dict(raw).journal.keep_synced_days == 7


def test_the_station_prunes_once_a_day_in_virtual_time(tmp_path):
    config = offline_config(tmp_path / "state", Keys().public)
    config.journal.keep_synced_days = 7
    clock = FakeClock(start=AT.timestamp())
    journal = Journal(config.journal_path, clock=clock.now)
    ids = every_kind(journal)
    station = Station(config, build_parts(config, clock=clock, journal=journal), threaded=False)
    try:
        station.start()
        for _ in range(400):  # the open deposit is resolved first; pruning waits for idle
            station.step()
            if station.flow.state == "idle":
                break
        station.step()
        assert station.flow.state == "idle" and station.pruner.runs == 1
        assert len(remaining(journal)) == len(ids)
        clock.advance(6 * DAY_S)
        station.step()  # due again (a day passed), but nothing is 7 days old yet
        assert station.pruner.runs == 2 and len(remaining(journal)) == len(ids)
        clock.advance(2 * DAY_S)
        for _ in range(20):
            station.step()  # many loop turns, one prune
        assert station.pruner.runs == 3
        gone = {kind for kind, deposit_id in ids.items() if deposit_id not in remaining(journal)}
        assert gone == {"synced", "flagged", "empty"}
        assert journal.get(ids["waiting"]).state == "recorded"  # unsynced: never pruned
    finally:
        station.shutdown()
