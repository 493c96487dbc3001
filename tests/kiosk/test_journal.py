"""The deposit journal: durable commits, the bounded outbox, answers, faults, schema."""

from __future__ import annotations

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kiosk import JournalError, OutboxFull
from kiosk.journal import MIGRATIONS, SCHEMA_VERSION, Journal

UTC = dt.UTC
WHEN = dt.datetime(2025, 6, 1, 8, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
REPO = Path(__file__).resolve().parents[2]


class Ticker:
    """A deterministic clock for the journal: each call one second later."""

    def __init__(self, start: float = 1_750_000_000.0):
        self.t = start

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def begin(journal: Journal, door: int = 1, serial: str = "ABC123", before_g: int = 100) -> str:
    return journal.begin_deposit(
        label=f"SP1.demo.H1.{serial}.sig",
        household="H1",
        serial=serial,
        door=door,
        category="paper",
        before_g=before_g,
    )


def record(journal: Journal, net_g: int = 500, **kwargs) -> str:
    deposit_id = begin(journal, **kwargs)
    journal.finish_deposit(deposit_id, after_g=100 + net_g, net_g=net_g, occurred_at=WHEN)
    return deposit_id


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite3", clock=Ticker())
    yield j
    j.close()


def test_durability_settings_and_schema_version(journal):
    assert journal.settings() == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "schema_version": SCHEMA_VERSION,
    }


def test_deposit_life_cycle_open_recorded_synced(journal):
    deposit_id = begin(journal, before_g=120)
    row = journal.get(deposit_id)
    assert row.state == "open" and row.before_g == 120 and row.net_g is None
    assert [d.id for d in journal.open_deposits()] == [deposit_id]

    journal.finish_deposit(deposit_id, after_g=870, net_g=750, occurred_at=WHEN)
    row = journal.get(deposit_id)
    assert (row.state, row.after_g, row.net_g, row.occurred_at) == ("recorded", 870, 750, WHEN)
    assert journal.open_deposits() == []
    assert [d.id for d in journal.outbox(10)] == [deposit_id]
    assert row.to_upload() == {
        "id": deposit_id,
        "label": "SP1.demo.H1.ABC123.sig",
        "door": 1,
        "category": "paper",
        "net_g": 750,
        "occurred_at": "2025-06-01T08:30:00+08:00",
    }

    counts = journal.record_results(
        [{"id": deposit_id, "status": "accepted", "points": 60, "balance": 1060, "error": None}]
    )
    assert counts == {"accepted": 1}
    row = journal.get(deposit_id)
    assert (row.state, row.sync_status, row.points, row.balance) == ("synced", "accepted", 60, 1060)
    assert row.answered and journal.outbox_depth() == 0


def test_empty_deposit_is_not_uploaded(journal):
    deposit_id = begin(journal)
    journal.finish_deposit(deposit_id, after_g=95, net_g=-5, occurred_at=WHEN)
    assert journal.get(deposit_id).state == "empty"
    assert journal.outbox(10) == []


def test_interrupted_deposit_is_kept_and_not_uploaded(journal):
    deposit_id = begin(journal)
    journal.interrupt(deposit_id, "power lost before the door closed")
    row = journal.get(deposit_id)
    assert (row.state, row.reason) == ("interrupted", "power lost before the door closed")
    assert journal.outbox(10) == [] and journal.open_deposits() == []


def test_transitions_only_from_open(journal):
    deposit_id = record(journal)
    with pytest.raises(JournalError, match="'recorded', not 'open'"):
        journal.finish_deposit(deposit_id, after_g=1, net_g=1, occurred_at=WHEN)
    with pytest.raises(JournalError):
        journal.interrupt(deposit_id, "too late")
    with pytest.raises(JournalError, match="no deposit"):
        journal.get("00000000-0000-0000-0000-000000000000")
    other = begin(journal)
    with pytest.raises(ValueError, match="timezone"):
        journal.finish_deposit(other, after_g=1, net_g=1, occurred_at=dt.datetime(2025, 1, 1))
    assert journal.get(other).state == "open"


def test_outbox_is_oldest_first_and_limited(journal):
    ids = [record(journal, serial=f"SER{n:03d}") for n in range(5)]
    assert [d.id for d in journal.outbox(3)] == ids[:3]
    assert journal.outbox_depth() == 5


def test_every_answer_status(journal):
    ids = [record(journal, serial=f"SER{n:03d}") for n in range(5)]
    results = [
        {"id": ids[0], "status": "accepted", "points": 10, "balance": 10, "error": None},
        {"id": ids[1], "status": "flagged", "points": 0, "balance": 10, "error": None},
        {"id": ids[2], "status": "duplicate", "points": 5, "balance": 15, "error": None},
        {
            "id": ids[3],
            "status": "rejected",
            "points": 0,
            "balance": None,
            "error": {"code": "label_revoked", "message": "label revoked"},
        },
        {
            "id": ids[4],
            "status": "conflict",
            "points": 0,
            "balance": None,
            "error": {"code": "conflict", "message": "different content"},
        },
    ]
    counts = journal.record_results(results)
    assert counts == {"accepted": 1, "flagged": 1, "duplicate": 1, "rejected": 1, "conflict": 1}
    states = [journal.get(i).state for i in ids]
    assert states == ["synced", "synced", "synced", "rejected", "conflict"]
    rejected = journal.get(ids[3])
    assert (rejected.error_code, rejected.error_message) == ("label_revoked", "label revoked")
    # rejected and conflicting deposits are never offered for upload again
    assert journal.outbox(10) == []
    faults = journal.faults()
    assert [f["key"] for f in faults] == [f"conflict:{ids[4]}"]
    assert "different content" in faults[0]["message"]
    # a repeated answer (a retried batch) changes nothing
    again = journal.record_results(
        [{"id": ids[0], "status": "accepted", "points": 99, "balance": 99, "error": None}]
    )
    assert again == {"ignored": 1} and journal.get(ids[0]).points == 10


def test_unknown_status_changes_nothing(journal):
    ids = [record(journal, serial=f"SER{n:03d}") for n in range(2)]
    with pytest.raises(JournalError, match="unknown deposit status"):
        journal.record_results(
            [
                {"id": ids[0], "status": "accepted", "points": 1, "balance": 1, "error": None},
                {"id": ids[1], "status": "maybe", "points": 1, "balance": 1, "error": None},
            ]
        )
    # the whole answer was applied in one transaction, so none of it stuck
    assert [d.id for d in journal.outbox(10)] == ids


def test_outbox_bound_refuses_new_deposits_and_warns_long_before(tmp_path):
    journal = Journal(
        tmp_path / "j.sqlite3", outbox_limit=10, outbox_warn_ratio=0.5, clock=Ticker()
    )
    for n in range(4):
        record(journal, serial=f"SER{n:03d}")
    assert journal.capacity_fault() is None
    record(journal, serial="SER004")
    message = journal.capacity_fault()
    assert message is not None and "5 of at most 10" in message and "never synced" in message
    assert any(f["key"] == "outbox_capacity" for f in journal.status()["faults"])
    for n in range(5, 9):
        record(journal, serial=f"SER{n:03d}")
    last_open = begin(journal, serial="SER009")  # an open deposit also holds a place
    with pytest.raises(OutboxFull, match="limit 10"):
        begin(journal, serial="SER010")
    journal.finish_deposit(last_open, after_g=200, net_g=100, occurred_at=WHEN)
    answers = [
        {"id": d.id, "status": "accepted", "points": 1, "balance": 1, "error": None}
        for d in journal.outbox(3)
    ]
    journal.record_results(answers)
    begin(journal, serial="SER011")  # room again once the backend answered
    journal.close()


def test_faults_and_meta_round_trip(journal):
    journal.raise_fault("sync_auth", "first")
    journal.raise_fault("sync_auth", "second")
    assert [(f["key"], f["message"]) for f in journal.faults()] == [("sync_auth", "second")]
    journal.clear_fault("sync_auth")
    assert journal.faults() == []
    journal.set_meta("backend_config", {"doors": [{"door": 1}], "revoked": []})
    assert journal.get_meta("backend_config") == {"doors": [{"door": 1}], "revoked": []}
    assert journal.get_meta("missing", "dflt") == "dflt"


def test_status_counts_states(journal):
    record(journal, serial="SER001")
    begin(journal, serial="SER002")
    journal.set_meta("last_sync_at", 1_750_000_100.0)
    status = journal.status()
    assert status["states"]["recorded"] == 1 and status["states"]["open"] == 1
    assert status["states"]["synced"] == 0
    assert status["outbox_depth"] == 1 and status["last_sync_at"] == 1_750_000_100.0


def test_prune_removes_only_old_answered_rows(tmp_path):
    clock = Ticker()
    journal = Journal(tmp_path / "j.sqlite3", clock=clock)
    synced = record(journal, serial="SER001")
    journal.record_results([{"id": synced, "status": "accepted", "points": 1, "balance": 1}])
    waiting = record(journal, serial="SER002")
    clock.t += 10 * 86_400
    assert journal.prune(older_than_s=86_400) == 1
    assert journal.get(waiting).state == "recorded"
    with pytest.raises(JournalError):
        journal.get(synced)
    journal.close()


def test_outbox_survives_restart(tmp_path):
    path = tmp_path / "journal.sqlite3"
    first = Journal(path, clock=Ticker())
    ids = [record(first, serial=f"SER{n:03d}", net_g=100 + n) for n in range(3)]
    open_id = begin(first, serial="SER999")
    first.close()
    again = Journal(path, clock=Ticker())
    assert [(d.id, d.net_g) for d in again.outbox(10)] == list(
        zip(ids, [100, 101, 102], strict=True)
    )
    assert [d.id for d in again.open_deposits()] == [open_id]
    again.close()


def test_held_deposit_leaves_the_queue_until_requeued(journal):
    first, held, last = (record(journal, serial=f"SER{n:03d}") for n in range(3))
    journal.hold(held, "backend answered 400: category too long")
    assert [d.id for d in journal.outbox(10)] == [first, last]
    assert journal.outbox_depth() == 3 and journal.outbox_depth(include_held=False) == 2
    assert journal.get(held).held_reason == "backend answered 400: category too long"
    faults = {f["key"]: f["message"] for f in journal.faults()}
    assert "1 deposits held back" in faults["held_deposits"]
    assert journal.status()["held"] == 1
    journal.requeue(held)
    assert [d.id for d in journal.outbox(10)] == [first, held, last]
    assert "held_deposits" not in {f["key"] for f in journal.faults()}
    with pytest.raises(JournalError, match="not held"):
        journal.requeue(first)
    journal.record_results([{"id": first, "status": "accepted", "points": 1, "balance": 1}])
    with pytest.raises(JournalError, match="not awaiting upload"):
        journal.hold(first, "too late")


def test_requeue_a_conflict_clears_its_fault_and_forgets_the_answer(journal):
    deposit_id = record(journal)
    journal.record_results(
        [
            {
                "id": deposit_id,
                "status": "conflict",
                "points": 0,
                "balance": None,
                "error": {"code": "conflict", "message": "differs"},
            }
        ]
    )
    assert journal.faults()
    journal.requeue(deposit_id)
    row = journal.get(deposit_id)
    assert (row.state, row.sync_status, row.error_code) == ("recorded", None, None)
    assert journal.faults() == []


def test_answer_reason_and_original_status_are_kept(journal):
    flagged, dup = record(journal, serial="SER001"), record(journal, serial="SER002")
    journal.record_results(
        [
            {
                "id": flagged,
                "status": "flagged",
                "points": 0,
                "balance": 5,
                "reason": "label_reused",
                "original_status": None,
                "error": None,
            },
            {
                "id": dup,
                "status": "duplicate",
                "points": 7,
                "balance": 12,
                "reason": None,
                "original_status": "accepted",
                "error": None,
            },
        ]
    )
    assert journal.get(flagged).sync_reason == "label_reused"
    assert journal.get(dup).original_status == "accepted"


def test_a_version_1_journal_is_migrated_in_place(tmp_path):
    path = tmp_path / "journal.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[1])
    conn.execute(
        "INSERT INTO deposits (id, label, household, serial, door, category, before_g, after_g,"
        " net_g, occurred_at, state, created_at) VALUES ('old-1', 'L', 'H1', 'S1', 1, 'paper',"
        " 10, 510, 500, '2025-06-01T00:00:00+00:00', 'recorded', 1.0)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    journal = Journal(path)
    assert journal.settings()["schema_version"] == SCHEMA_VERSION == 3
    row = journal.get("old-1")
    assert (row.state, row.net_g, row.held_reason) == ("recorded", 500, None)
    assert [d.id for d in journal.outbox(5)] == ["old-1"]
    journal.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "journal.sqlite3"
    Journal(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(JournalError, match="newer than this release"):
        Journal(path)


# -- durability against a killed process ---------------------------------------------

CHILD = textwrap.dedent(
    """
    import datetime as dt, sys, time
    from kiosk.journal import Journal
    journal = Journal(sys.argv[1])
    deposit_id = journal.begin_deposit(label="SP1.demo.H1.KILL01.sig", household="H1",
                                       serial="KILL01", door=2, category="glass", before_g=40)
    if sys.argv[2] == "finish":
        journal.finish_deposit(deposit_id, after_g=1040, net_g=1000,
                               occurred_at=dt.datetime(2025, 6, 1, tzinfo=dt.timezone.utc))
    # report the id, then hang: the parent kills us with SIGKILL, no clean-up runs
    print(deposit_id, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("step, state", [("begin", "open"), ("finish", "recorded")])
def test_committed_row_survives_sigkill(tmp_path, step, state):
    path = tmp_path / "journal.sqlite3"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), step],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        deposit_id = child.stdout.readline().strip()
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert deposit_id, "child printed no deposit id"
    journal = Journal(path)
    row = journal.get(deposit_id)
    assert (row.state, row.door, row.before_g) == (state, 2, 40)
    if state == "recorded":
        assert row.net_g == 1000 and [d.id for d in journal.outbox(5)] == [deposit_id]
    else:
        assert [d.id for d in journal.open_deposits()] == [deposit_id]
    journal.close()
