"""Kill the kiosk (SIGKILL) at each state of the deposit flow, restart it, count the deposits.

Each case runs ``kiosk run --sim --script`` as a child process against the real backend served in
a thread of this test (SQLite or PostgreSQL), with ``SORTPOINT_KIOSK_CRASH_AT`` making the child
SIGKILL itself on entering the chosen state (or right after an upload was answered but before the
journal stored the answer).  The simulator keeps the physical world (the bag on the scale, an open
door) across the crash, as a real station would.  A second run restarts the kiosk: it locks the
doors, resolves the open deposit, uploads.  Then the backend database must hold every deposit the
journal recorded exactly once, and nothing for a deposit whose bag never went in.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import func, select

from backend.core.db import db
from backend.deposits.models import Deposit
from backend.ledger.models import Account, LedgerEntry
from kiosk.journal import Journal
from tests.factories import build_world
from tests.kiosk.stations import ServedBackend

POINTS_PER_KG = 20
GRAMS = 500

SESSION = """\
{label}
expect choose a bin
paper
drop {grams}
close
expect {grams} g of paper
wait 10
expect-state idle
"""

RESTART = """\
# after the restart: a technician (or the resident) shuts the door if it stands open
close 2
wait 5
sync
expect-state idle
"""


@pytest.fixture
def world(app):
    with db.begin() as s:
        return build_world(s, households=2, labels_per_household=2, points_per_kg=POINTS_PER_KG)


@pytest.fixture
def backend(app):
    served = ServedBackend(app)
    served.start()
    yield served
    served.stop()


def write_kiosk(tmp_path: Path, world, backend) -> Path:
    config = tmp_path / "kiosk.toml"
    config.write_text(
        textwrap.dedent(f"""\
        [kiosk]
        name = "crash-test"
        state_dir = "state"
        [backend]
        url = "{backend.url}"
        kiosk_id = "{world.kiosk.id}"
        secret = "{world.secret}"
        community = "{world.community.slug}"
        timeout_s = 5.0
        [scanner]
        driver = "fake"
        [scale]
        driver = "fake"
        [[doors]]
        number = 1
        category = "plastic"
        capacity_g = 40000
        driver = "fake"
        [[doors]]
        number = 2
        category = "paper"
        capacity_g = 40000
        driver = "fake"
        """)
    )
    return config


def run_kiosk(
    tmp_path: Path, config: Path, script: str, crash_at: str | None
) -> subprocess.CompletedProcess:
    script_file = tmp_path / f"script-{crash_at or 'restart'}.txt"
    script_file.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "SORTPOINT_KIOSK_CRASH_AT"}
    if crash_at:
        env["SORTPOINT_KIOSK_CRASH_AT"] = crash_at
    kiosk = Path(sys.executable).with_name("kiosk")
    # the simulator logs to <state_dir>/kiosk-sim.log, not stderr: keep this run's part of it
    log_file = tmp_path / "state" / "kiosk-sim.log"
    logged_before = log_file.stat().st_size if log_file.exists() else 0
    result = subprocess.run(
        [
            str(kiosk),
            "-v",
            "run",
            "--sim",
            "--config",
            str(config),
            "--script",
            str(script_file),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    result.log = log_file.read_bytes()[logged_before:].decode() if log_file.exists() else ""
    return result


def backend_state(world) -> tuple[dict[str, int], int, int]:
    """Return ({deposit id: net_g}, ledger entries, H001's balance) for the test kiosk."""
    with db.session() as s:
        deposits = {
            str(d.id): d.net_g
            for d in s.scalars(select(Deposit).where(Deposit.kiosk_id == world.kiosk.id))
        }
        household_id = world.households["H001"].id
        entries = s.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.household_id == household_id)
        )
        balance = s.scalar(select(Account.balance).where(Account.household_id == household_id))
    return deposits, entries, balance


# crash point -> deposits that must reach the backend (the bag went in: 1; it never did: 0)
CASES = [
    ("choosing", 0),
    ("weighing_before", 0),
    ("door_unlocked", 0),  # journalled and unlocked, nothing dropped: interrupted
    ("door_open", 1),  # the door open, the bag dropping: recovered by weighing
    ("weighing_after", 1),  # door shut, not yet weighed: recovered by weighing
    ("showing_result", 1),  # recorded and locked, not yet uploaded
    ("idle:2", 1),  # uploaded and shown, back at idle
    ("upload", 1),  # the backend credited it; the answer was lost with the process
]


@pytest.mark.slow
@pytest.mark.parametrize("crash_at, expected", CASES, ids=[c for c, _ in CASES])
def test_sigkill_at_each_state_loses_and_duplicates_nothing(
    tmp_path, world, backend, crash_at, expected
):
    config = write_kiosk(tmp_path, world, backend)
    label = world.labels["H001"][0]
    crashed = run_kiosk(tmp_path, config, SESSION.format(label=label, grams=GRAMS), crash_at)
    assert crashed.returncode == -9, crashed.stdout + crashed.stderr
    assert "crash hook: SIGKILL at" in crashed.log
    restarted = run_kiosk(tmp_path, config, RESTART, None)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    rows = assert_exactly_once(tmp_path, world, expected)
    if crash_at == "upload":  # the lost answer: sent again, answered duplicate, credited once
        assert [r.sync_status for r in rows] == ["duplicate"]
    if crash_at in ("door_open", "weighing_after"):
        assert "recovered deposit" in restarted.log


@pytest.mark.slow
def test_a_crash_during_recovery_is_recovered_by_the_next_start(tmp_path, world, backend):
    config = write_kiosk(tmp_path, world, backend)
    label = world.labels["H001"][0]
    first = run_kiosk(tmp_path, config, SESSION.format(label=label, grams=GRAMS), "door_open")
    assert first.returncode == -9
    second = run_kiosk(tmp_path, config, RESTART, "recovering")
    assert second.returncode == -9, second.stdout + second.stderr
    third = run_kiosk(tmp_path, config, RESTART, None)
    assert third.returncode == 0, third.stdout + third.stderr
    assert_exactly_once(tmp_path, world, 1)


@pytest.mark.slow
def test_without_a_crash_the_session_credits_once(tmp_path, world, backend):
    config = write_kiosk(tmp_path, world, backend)
    done = run_kiosk(
        tmp_path,
        config,
        SESSION.format(label=world.labels["H001"][0], grams=GRAMS),
        None,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "+10 points - balance 10" in done.stdout
    assert_exactly_once(tmp_path, world, 1)


def assert_exactly_once(tmp_path: Path, world, expected: int) -> list:
    """Check the journal and the backend agree, deposit by deposit; return the journal rows."""
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    try:
        rows = journal.deposits(limit=100)
    finally:
        journal.close()
    assert not [r for r in rows if r.state == "open"], "an open deposit was left unresolved"
    credited = {r.id: r.net_g for r in rows if r.state == "synced"}
    assert not [r for r in rows if r.state == "recorded"], "a recorded deposit was never uploaded"
    deposits, entries, balance = backend_state(world)
    assert deposits == credited  # the same ids and weights on both sides: nothing lost
    assert len(deposits) == expected  # and nothing twice
    assert entries == expected and balance == expected * GRAMS * POINTS_PER_KG // 1000
    if expected:
        assert list(deposits.values()) == [GRAMS]
    else:
        assert all(r.state == "interrupted" for r in rows)
    return rows
