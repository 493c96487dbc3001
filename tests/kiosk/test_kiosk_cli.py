"""The `kiosk` command line: calibrate, selftest, status, reset, requeue, scan-image, run --sim."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
import qrcode
from click.testing import CliRunner

from hardware.fakes import FakeScale
from hardware.loadcell import HX711Scale
from hardware.sim.hx711_model import HX711Model
from kiosk.calibrate import calibrate_scale, write_calibration
from kiosk.cli import _ago, main
from kiosk.config import load_config
from kiosk.journal import Journal
from tests.hardware.gpio_rig import make_rig
from tests.kiosk.commands import run_kiosk
from tests.kiosk.stations import SECRET, Keys, Session, fake_station_toml, refused_port

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, keys: Keys, *, url: str | None = None, doors=None) -> Path:
    """Write an all-fake kiosk TOML config and return its path."""
    doors = doors or {1: "plastic", 2: "paper"}
    path = tmp_path / "kiosk.toml"
    path.write_text(
        fake_station_toml(
            name="cli-test",
            state_dir="state",
            backend={
                "url": url or f"http://127.0.0.1:{refused_port()}",
                "kiosk_id": "k_cli",
                "secret": SECRET,
                "community": "green",
                "label_public_key": keys.public,
            },
            doors={n: (category, 40_000) for n, category in doors.items()},
            timeout_s=3.0,
            backend_answer_s=1.0,
        )
    )
    return path


@pytest.fixture
def keys():
    return Keys()


# -- calibrate -----------------------------------------------------------------------------


def test_calibrate_writes_counts_that_reload_to_true_grams(tmp_path, keys, monkeypatch):
    config_path = write_config(tmp_path, keys)
    scale = FakeScale(settle_s=0.0, raw_offset_counts=8_000, raw_counts_per_g=420.0)
    monkeypatch.setattr("kiosk.config.build_driver", lambda kind, spec, **kw: scale)
    monkeypatch.setattr("click.pause", lambda *a, **k: scale.place(2_000))
    result = CliRunner().invoke(
        main, ["calibrate", "--config", str(config_path), "--known-g", "2000"]
    )
    assert result.exit_code == 0, result.output
    calibration = (tmp_path / "state" / "calibration.toml").read_text()
    assert "offset_counts = 8000" in calibration and "counts_per_g = 420.0" in calibration
    config = load_config(config_path)  # merged over [scale]
    assert config.scale.options == {"offset_counts": 8000, "counts_per_g": 420.0}
    reloaded = FakeScale(settle_s=0.0, initial_g=1_234, **config.scale.options)
    assert reloaded.read(1.0).grams == 1_234


def test_calibrate_without_the_mass_fails_and_writes_nothing(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    result = CliRunner().invoke(
        main, ["calibrate", "--config", str(config_path), "--known-g", "1000", "--yes"]
    )
    assert result.exit_code == 1
    assert "did not move the reading" in result.output
    assert not (tmp_path / "state" / "calibration.toml").exists()


def test_calibrate_uses_the_load_cell_helpers_of_an_hx711():
    rig = make_rig()
    model = rig.board.attach(HX711Model(17, 27, offset_counts=8_000, counts_per_g=Fraction(43, 2)))
    scale = HX711Scale(gpio="sim", dout_pin=17, sck_pin=27, pins=rig.pins, clock=rig.clock)
    result = calibrate_scale(scale, 5_000, lambda: model.set_load_g(5_000))
    assert result.method == "load-cell"
    assert result.values == {"offset_counts": 8_000, "counts_per_g": "43/2"}
    model.set_load_g(777)
    assert scale.read(5).grams == 777


def test_calibration_file_round_trips_exact_fraction(tmp_path):
    path = write_calibration(
        tmp_path / "calibration.toml", {"offset_counts": -12, "counts_per_g": "43/2"}
    )
    assert 'counts_per_g = "43/2"' in path.read_text() and "offset_counts = -12" in path.read_text()


class GramsOnlyScale:
    """A scale that calibrates itself (a serial indicator): only zero() and grams."""

    def __init__(self, reads_g: int):
        self.zeroed = False
        self.reads_g = reads_g

    def zero(self):
        self.zeroed = True

    def read(self, timeout_s):
        from hardware.interfaces import WeightSample

        return WeightSample(self.reads_g, True, 0.0)


@pytest.mark.parametrize("reads_g, ok", [(1_004, True), (1_050, False)])
def test_grams_only_scale_is_zeroed_and_checked(reads_g, ok):
    scale = GramsOnlyScale(reads_g)
    result = calibrate_scale(scale, 1_000, lambda: None)
    assert scale.zeroed and result.values == {} and result.ok is ok
    assert f"reads {reads_g} g for 1000 g" in result.message


# -- selftest ------------------------------------------------------------------------------


def test_selftest_reports_each_part_and_fails_when_the_backend_is_down(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    result = CliRunner().invoke(main, ["selftest", "--config", str(config_path), "--json"])
    assert result.exit_code == 1, result.output
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert set(checks) == {
        "door 1 (plastic)",
        "door 2 (paper)",
        "scanner",
        "scale main",
        "backend",
        "journal",
    }
    assert all(checks[name]["ok"] for name in checks if name != "backend")
    assert not checks["backend"]["ok"] and "unreachable" in checks["backend"]["detail"]
    assert "WAL, synchronous=FULL" in checks["journal"]["detail"]
    text = CliRunner().invoke(main, ["selftest", "--config", str(config_path)])
    assert "PASS door 1 (plastic)" in text.output and "FAIL backend" in text.output


# -- status and reset ------------------------------------------------------------------------


def test_status_reads_the_journal_and_the_status_file(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    session = Session(load_config(config_path))
    session.run(f"{keys.label()}\npaper\ndrop 420\nclose\nexpect 420 g of paper")
    session.station._write_status(force=True)
    live = CliRunner().invoke(main, ["status", "--config", str(config_path), "--json"])
    report = json.loads(live.output)
    assert report["station"]["state"] == "showing_result" and report["station"]["running"] is True
    assert report["journal"]["outbox_depth"] == 1
    assert report["journal"]["states"]["recorded"] == 1
    session.close()
    after = CliRunner().invoke(main, ["status", "--config", str(config_path)])
    assert "NOT running" in after.output and "outbox: 1 of 100000" in after.output


def test_status_after_a_virtual_script_shows_wall_clock_times(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    script = tmp_path / "long.txt"
    # ten virtual minutes of an offline backend: the syncer retries all along
    script.write_text(f"{keys.label()}\npaper\ndrop 500\nclose\nexpect 500 g of paper\nwait 600\n")
    before = time.time()
    ran = run_kiosk(
        "run", "--sim", "--config", str(config_path), "--script", str(script), cwd=tmp_path
    )
    after = time.time()
    assert ran.returncode == 0, ran.stdout + ran.stderr
    report = json.loads(
        run_kiosk("status", "--config", str(config_path), "--json", cwd=tmp_path).stdout
    )
    journal, station = report["journal"], report["station"]
    stamps = {
        "last sync": journal["last_sync_at"],
        "last sync ok": journal["last_sync_ok_at"],  # a pass with nothing to send
        "status written": station["updated_at"],
        "station started": station["started_at"],
    }
    with Journal(load_config(config_path).journal_path) as opened:
        (deposit,) = opened.deposits()
    stamps |= {
        "deposit begun": deposit.created_at,
        "deposit finished": deposit.finished_at,
        "deposit occurred": deposit.occurred_at.timestamp(),
    }
    outside = {name: ts for name, ts in stamps.items() if not before - 1 <= ts <= after + 1}
    assert not outside, f"not real times of the run ({before:.0f}..{after:.0f}): {outside}"
    text = run_kiosk("status", "--config", str(config_path), cwd=tmp_path).stdout
    ago = r"\S+ \S+ \(\d+ s ago\)"
    assert re.search(rf"^last sync: {ago}; last ok: {ago}$", text, re.M), text


def test_status_never_shows_a_negative_age(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    now = time.time()
    with Journal(load_config(config_path).journal_path) as journal:
        journal.set_meta("last_sync_at", now + 3_600)  # written by a clock an hour ahead
        journal.set_meta("last_sync_ok_at", now - 30)
    result = CliRunner().invoke(main, ["status", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("last sync:"))
    assert re.fullmatch(
        r"last sync: \S+ \S+ \(3[56]\d\d s ahead of this machine's clock\);"
        r" last ok: \S+ \S+ \(3\d s ago\)",
        line,
    ), line
    assert not re.search(r"\(-", result.output)


def test_age_of_a_stamp_within_the_same_second_is_zero_not_ahead():
    stamp = dt.datetime(2026, 1, 2, 3, 4, 5).timestamp()
    assert _ago(stamp, now=stamp - 0.4).endswith("(0 s ago)")
    assert _ago(stamp, now=stamp + 61.9).endswith("(61 s ago)")
    assert _ago(stamp, now=stamp - 2.5).endswith("(2 s ahead of this machine's clock)")
    assert _ago(None) == "never"


def record_deposits(config_path: Path, keys: Keys, n: int) -> list[str]:
    """Journal ``n`` recorded deposits straight into the configured journal; return their ids."""
    import datetime as dt

    config = load_config(config_path)
    ids = []
    with Journal(config.journal_path) as journal:
        for _ in range(n):
            deposit_id = journal.begin_deposit(
                label=keys.label(),
                household="H001",
                serial="S",
                door=2,
                category="paper",
                before_g=0,
            )
            journal.finish_deposit(
                deposit_id, after_g=500, net_g=500, occurred_at=dt.datetime.now(dt.UTC)
            )
            ids.append(deposit_id)
    return ids


def test_status_warns_of_the_outbox_at_the_configured_ratio_and_limit(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    with config_path.open("a") as toml:
        toml.write("\n[journal]\noutbox_limit = 10\noutbox_warn_ratio = 0.2\n")
    record_deposits(config_path, keys, 1)
    quiet = json.loads(
        CliRunner().invoke(main, ["status", "--config", str(config_path), "--json"]).output
    )
    assert quiet["journal"]["outbox_limit"] == 10
    assert "outbox_capacity" not in {f["key"] for f in quiet["journal"]["faults"]}
    record_deposits(config_path, keys, 1)  # 2 of 10 reaches 0.2 (the default 0.5 would not)
    result = CliRunner().invoke(main, ["status", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    assert "FAULT outbox_capacity: outbox holds 2 of at most 10 deposits" in result.output


def test_reset_request_clears_a_fault_once_repaired(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    session = Session(load_config(config_path))
    try:
        session.run(f"{keys.label()}\npaper\ndrop 300\nblock\nclose\nexpect-state fault")
        session.door(2).repair()
        result = CliRunner().invoke(main, ["reset", "--config", str(config_path)])
        assert result.exit_code == 0 and "reset requested" in result.output
        session.run("wait 1\nexpect-state idle")
        assert not (tmp_path / "state" / "reset-request").exists()
    finally:
        session.close()


def test_a_reset_request_outside_a_fault_is_dropped(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    session = Session(load_config(config_path))
    try:
        CliRunner().invoke(main, ["reset", "--config", str(config_path)])
        session.run("wait 1\nexpect-state idle")
        assert not (tmp_path / "state" / "reset-request").exists()  # not left for a later fault
    finally:
        session.close()


# -- requeue ----------------------------------------------------------------------------------


def answer(deposit_id: str, status: str) -> dict:
    """A backend result item for ``deposit_id``."""
    error = None if status == "accepted" else {"code": status, "message": f"{status} by backend"}
    return {"id": deposit_id, "status": status, "points": 0, "balance": 0, "error": error}


def test_requeue_puts_held_rejected_and_conflict_deposits_back_in_the_queue(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    held, rejected, conflict = record_deposits(config_path, keys, 3)
    journal_path = load_config(config_path).journal_path
    with Journal(journal_path) as journal:
        journal.hold(held, "backend cannot take it (400)")
        journal.record_results([answer(rejected, "rejected"), answer(conflict, "conflict")])
        assert journal.outbox(10) == []
    results = {}
    for deposit_id in (held, rejected, conflict):
        result = CliRunner().invoke(
            main, ["requeue", "--config", str(config_path), deposit_id, "--json"]
        )
        assert result.exit_code == 0, result.output
        results[deposit_id] = json.loads(result.output)["requeued"]
    assert results[held] == [{"id": held, "was": "held", "reason": "backend cannot take it (400)"}]
    assert results[rejected][0]["was"] == "rejected"
    assert results[conflict] == [
        {"id": conflict, "was": "conflict", "reason": "conflict by backend"}
    ]
    with Journal(journal_path) as journal:
        assert [d.id for d in journal.outbox(10)] == [held, rejected, conflict]
        assert [d.sync_status for d in journal.outbox(10)] == [None, None, None]
        assert {f["key"] for f in journal.faults()}.isdisjoint(
            {"held_deposits", f"conflict:{conflict}"}
        )


def test_requeue_all_held_takes_only_the_held_ones(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    first, queued, second = record_deposits(config_path, keys, 3)
    journal_path = load_config(config_path).journal_path
    with Journal(journal_path) as journal:
        journal.hold(first, "bad one")
        journal.hold(second, "bad two")
    result = CliRunner().invoke(main, ["requeue", "--config", str(config_path), "--all-held"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"requeued {first} (was held: bad one)",
        f"requeued {second} (was held: bad two)",
        "2 deposit(s) back in the upload queue; the kiosk uploads them at its next sync",
    ]
    with Journal(journal_path) as journal:
        assert [d.id for d in journal.outbox(10)] == [first, queued, second]
        assert journal.status()["held"] == 0


def test_requeue_refuses_an_unknown_id_and_a_deposit_that_is_not_held(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    queued, synced = record_deposits(config_path, keys, 2)
    with Journal(load_config(config_path).journal_path) as journal:
        journal.record_results([answer(synced, "accepted")])

    def requeue(*args):
        return CliRunner().invoke(main, ["requeue", "--config", str(config_path), *args])

    unknown = requeue("0f0f0f0f-0000-4000-8000-000000000000")
    assert unknown.exit_code == 1
    assert "no deposit 0f0f0f0f-0000-4000-8000-000000000000 in the journal" in unknown.output
    not_held = requeue(queued)
    assert not_held.exit_code == 1
    assert f"deposit {queued} is queued for upload: only held, rejected or conflict" in (
        not_held.output
    )
    done = requeue(synced)
    assert done.exit_code == 1 and f"deposit {synced} is 'synced'" in done.output
    assert requeue().exit_code == 2 and "give one DEPOSIT_ID or --all-held" in requeue().output
    assert requeue(queued, "--all-held").exit_code == 2
    with Journal(load_config(config_path).journal_path) as journal:
        assert journal.get(synced).state == "synced" and journal.get(queued).held_reason is None


def test_requeue_without_a_journal_says_so_and_creates_none(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    result = CliRunner().invoke(main, ["requeue", "--config", str(config_path), "--all-held"])
    assert result.exit_code == 1 and "no journal at" in result.output
    assert not load_config(config_path).journal_path.exists()


# -- scan-image -----------------------------------------------------------------------------


def test_scan_image_prints_file_and_payload(tmp_path, keys):
    payload = keys.label()
    with_code = tmp_path / "label.png"
    qrcode.make(payload).save(with_code)
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("L", (200, 200), 255).save(blank)
    result = CliRunner().invoke(main, ["scan-image", str(with_code), str(blank)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"{with_code}\t{payload}", f"{blank}\t"]
    as_json = CliRunner().invoke(
        main, ["scan-image", "--json", "--decoder", "pyzbar", str(with_code)]
    )
    assert json.loads(as_json.output) == [{"file": str(with_code), "payload": payload}]


# -- run --sim --script (a real child process) ----------------------------------------------


def test_run_sim_script_exit_status_follows_its_expectations(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    good = tmp_path / "good.txt"
    good.write_text(
        f"# a deposit while the backend is down\n{keys.label()}\npaper\n"
        "drop 500\nclose\nexpect 500 g of paper\nwait 2\nexpect balance pending\n"
    )
    ok = run_kiosk(
        "run",
        "--sim",
        "--config",
        str(config_path),
        "--script",
        str(good),
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok: 'balance pending'" in ok.stdout
    bad = tmp_path / "bad.txt"
    bad.write_text("expect Scan the label\nexpect something else entirely\nexpect never reached\n")
    failed = run_kiosk(
        "run", "--sim", "--config", str(config_path), "--script", str(bad), cwd=tmp_path
    )
    assert failed.returncode == 1
    assert "FAILED at line 2: expected 'something else entirely'" in failed.stdout
    assert "never reached" not in failed.stdout  # the script stopped at the failure


def test_run_sim_keeps_log_lines_out_of_the_transcript(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    script = tmp_path / "offline.txt"
    script.write_text(f"{keys.label()}\npaper\ndrop 500\nclose\nwait 5\nexpect balance pending\n")
    kiosk = Path(sys.executable).with_name("kiosk")
    # stdout and stderr into one stream, as a terminal shows them
    seen = subprocess.run(
        [str(kiosk), "run", "--sim", "--config", str(config_path), "--script", str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    assert seen.returncode == 0, seen.stdout
    log_path = load_config(config_path).state_path / "kiosk-sim.log"
    header, *transcript = seen.stdout.splitlines()
    assert header.endswith(f"; log in {log_path}")
    strays = [
        line
        for line in transcript
        if not re.match(r"  \[[>+!X]\] |\s*\d+> |  ok: |  \(", line)  # screens, echo, notes
    ]
    assert not strays, f"not transcript: {strays}"
    log = log_path.read_text()
    assert "WARNING kiosk.sync: sync failed" in log and "backend unreachable" in log


def test_run_sim_without_a_demo_file_says_what_to_do(tmp_path):
    result = run_kiosk(
        "run",
        "--sim",
        cwd=tmp_path,
        env={"SORTPOINT_INSTANCE_PATH": str(tmp_path / "nothing")},
    )
    assert result.returncode == 1
    assert "demo-kiosk.json not found" in result.stderr and "scripts/demo" in result.stderr


def test_run_with_a_bad_config_names_the_key(tmp_path, keys):
    config_path = write_config(tmp_path, keys)
    config_path.write_text(
        config_path.read_text().replace(
            '[scale]\ndriver = "fake"', '[scale]\ndriver = "fake"\nbogus = 1'
        )
    )
    result = CliRunner().invoke(main, ["run", "--config", str(config_path)])
    assert result.exit_code == 1 and "scale.bogus: unknown key" in result.output


# -- the demo's simulated kiosk: run --sim and status --sim ------------------------------------


def write_demo_instance(instance: Path, keys: Keys) -> None:
    """Write what `sortpoint demo seed` leaves for the simulator: the kiosk file and 3 labels."""
    instance.mkdir(parents=True)
    demo = {
        "backend_url": f"http://127.0.0.1:{refused_port()}",
        "kiosk_id": "k_demo",
        "secret": SECRET,
        "community": "green",
        "label_public_key": keys.public,
        "doors": [{"door": 1, "category": "plastic"}, {"door": 2, "category": "paper"}],
    }
    (instance / "demo-kiosk.json").write_text(json.dumps(demo))
    (instance / "demo-labels.txt").write_text(
        "".join(
            f"H00{n}\tSER000000{n}\t{keys.label(household=f'H00{n}', serial=f'SER000000{n}')}\n"
            for n in (1, 2, 3)
        )
    )


def deposit_script(tmp_path: Path, grams: int) -> Path:
    """Write a script that makes one deposit with the next unused label; return its path."""
    path = tmp_path / f"deposit-{grams}.txt"
    path.write_text(f"label next\npaper\ndrop {grams}\nclose\nexpect {grams} g of paper\n")
    return path


#: the instance folder as a new user has it: ./var, found without setting anything
AS_A_NEW_USER = {"SORTPOINT_INSTANCE_PATH": ""}


def test_status_sim_finds_the_simulated_demo_kiosk_as_run_sim_does(tmp_path, keys):
    write_demo_instance(tmp_path / "var", keys)
    ran = run_kiosk(
        "run",
        "--sim",
        "--script",
        str(deposit_script(tmp_path, 420)),
        cwd=tmp_path,
        env=AS_A_NEW_USER,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    elsewhere = tmp_path / "elsewhere"
    ran = run_kiosk(
        "run",
        "--sim",
        "--state-dir",
        str(elsewhere),
        "--script",
        str(deposit_script(tmp_path, 310)),
        cwd=tmp_path,
        env=AS_A_NEW_USER,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr

    def status(*args: str) -> dict:
        result = run_kiosk("status", "--sim", *args, "--json", cwd=tmp_path, env=AS_A_NEW_USER)
        assert result.returncode == 0, result.stdout + result.stderr
        return json.loads(result.stdout)

    default, other = status(), status("--state-dir", str(elsewhere))
    assert default["kiosk"] == other["kiosk"] == "sim-k_demo"
    assert default["station"]["kiosk"] == "sim-k_demo" and default["station"]["running"] is False
    assert (default["journal"]["outbox_depth"], other["journal"]["outbox_depth"]) == (1, 1)
    with Journal(tmp_path / "var" / "kiosk-sim" / "journal.sqlite3") as journal:
        assert [d.net_g for d in journal.deposits()] == [420]
    with Journal(elsewhere / "journal.sqlite3") as journal:
        assert [d.net_g for d in journal.deposits()] == [310]
    text = run_kiosk("status", "--sim", cwd=tmp_path, env=AS_A_NEW_USER)
    assert text.returncode == 0 and "kiosk sim-k_demo: NOT running" in text.stdout
    assert "outbox: 1 of 100000 awaiting upload" in text.stdout


def test_status_needs_a_config_or_sim(tmp_path, keys):
    neither = CliRunner().invoke(main, ["status"])
    assert neither.exit_code == 2 and "give --config FILE (or --sim)" in neither.output
    stray = CliRunner().invoke(main, ["status", "--state-dir", str(tmp_path)])
    assert stray.exit_code == 2 and "--state-dir needs --sim" in stray.output
    no_demo = run_kiosk(
        "status", "--sim", cwd=tmp_path, env={"SORTPOINT_INSTANCE_PATH": str(tmp_path / "none")}
    )
    assert no_demo.returncode == 1
    assert "demo-kiosk.json not found" in no_demo.stderr and "scripts/demo" in no_demo.stderr
