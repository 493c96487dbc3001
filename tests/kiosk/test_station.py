"""The station around the flow: systemd notify, fail-secure exits, threaded inputs, install script."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kiosk.config import load_config
from kiosk.crash import CrashHook
from kiosk.station import Station
from kiosk.systemd import Notifier
from tests.hardware.serial_rig import WAIT_S
from tests.kiosk.commands import install_dry_run
from tests.kiosk.stations import Keys, Session, offline_config, threaded_station, wait_for
from tests.kiosk.test_kiosk_cli import write_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def keys():
    return Keys()


@pytest.fixture
def notify_socket():
    """A datagram socket standing in for systemd's notify socket."""
    folder = tempfile.mkdtemp(prefix="sdn")  # short: AF_UNIX paths are limited to 108 bytes
    path = os.path.join(folder, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.1)
    yield path, sock
    sock.close()
    os.unlink(path)
    os.rmdir(folder)


def received(sock, until: str, timeout_s: float = 30.0) -> list[str]:
    """Collect notify messages until one contains ``until`` (bounded)."""
    messages, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            messages.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
        if until in messages[-1]:
            return messages
    raise AssertionError(f"no {until!r} within {timeout_s} s; got {messages}")


# -- systemd ---------------------------------------------------------------------------------


def test_notifier_sends_ready_and_pings_the_watchdog_at_half_its_interval(
    notify_socket,
):
    path, sock = notify_socket
    now = [100.0]
    notifier = Notifier(
        {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}, monotonic=lambda: now[0]
    )
    assert notifier.watchdog_interval_s() == 5.0
    notifier.ready("state idle")
    assert sock.recv(100).decode() == "READY=1\nSTATUS=state idle"
    assert notifier.ping_if_due() is True
    assert sock.recv(100) == b"WATCHDOG=1"
    now[0] += 4.9
    assert notifier.ping_if_due() is False
    now[0] += 0.2
    assert notifier.ping_if_due() is True


def test_notifier_is_silent_outside_systemd():
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval_s() is None
    notifier.ready()
    assert notifier.ping_if_due() is False


def test_watchdog_meant_for_another_process_is_ignored(notify_socket):
    path, _ = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_interval_s() is None


def test_sigterm_locks_every_door_and_exits_cleanly(tmp_path, keys, notify_socket):
    path, sock = notify_socket
    config_path = write_config(tmp_path, keys)
    kiosk = Path(sys.executable).with_name("kiosk")
    child = subprocess.Popen(
        [str(kiosk), "run", "--config", str(config_path)],
        cwd=tmp_path,
        env={**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        messages = received(sock, "READY=1")
        messages += received(sock, "WATCHDOG=1")
        child.send_signal(signal.SIGTERM)
        messages += received(sock, "STOPPING=1")
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["stopped"] is True
    assert all(door["locked"] for door in status["doors"].values())
    assert "stopping on signal" in child.stderr.read()


# -- fail-secure on an unhandled exception ------------------------------------------------------


def test_an_unhandled_exception_leaves_every_door_locked(tmp_path, keys):
    session = Session(offline_config(tmp_path / "s", keys.public))
    session.run(f"{keys.label()}\npaper\nexpect-state door_unlocked")
    door = session.door(2)
    assert not door.locked

    def broken():
        raise RuntimeError("a bug in the loop")

    session.station._watch_doors = broken
    with pytest.raises(RuntimeError, match="a bug in the loop"):
        session.station.run(install_signals=False)
    assert door.locked and all(s.door.locked for s in session.station.hardware.doors.values())


def test_an_action_error_takes_the_flow_to_fault_with_doors_locked(tmp_path, keys):
    session = Session(offline_config(tmp_path / "s", keys.public))
    try:
        session.door(1).fail_unlock()
        session.run(
            f"{keys.label()}\nplastic\nexpect door fault: door did not unlock\nexpect-state fault"
        )
        [row] = session.journal.deposits(limit=5)
        assert row.state == "interrupted" and row.reason == "door did not unlock"
        assert session.flow.fault_kind == "door_jammed"
    finally:
        session.close()


def test_a_full_outbox_puts_the_kiosk_out_of_order_until_it_drains(tmp_path, keys):
    config = offline_config(tmp_path / "s", keys.public)
    config.journal.outbox_limit = 1
    session = Session(config)
    try:
        session.run(f"{keys.label()}\npaper\ndrop 100\nclose\nwait 6\nexpect-state idle")
        session.run(
            f"{keys.label(serial='NEXT000001')}\npaper\nexpect the deposit journal is full\nexpect-state fault"
        )
        assert session.door(2).unlock_count == 1  # the refused deposit never unlocked a door
        [row] = session.journal.outbox(10)
        session.journal.record_results(
            [{"id": row.id, "status": "accepted", "points": 1, "balance": 1}]
        )
        session.run("wait 2\nexpect-state idle")
    finally:
        session.close()


# -- threaded mode (as on a Pi), real time -------------------------------------------------------


def test_threaded_station_takes_a_deposit_in_real_time(tmp_path, keys):
    config = offline_config(tmp_path / "s", keys.public, weighing={"window_s": 0.3})
    with threaded_station(config) as station:
        station.hardware.scanner.present(keys.label())
        wait_for(lambda: station.flow.state == "choosing")
        station.post("choose", choice="plastic")
        wait_for(lambda: station.flow.state == "door_unlocked")
        door = station.hardware.doors[1].door
        assert door.open_by_hand()
        station.hardware.scales["main"].place(333)
        wait_for(lambda: station.flow.state == "door_open")
        door.close_by_hand()
        wait_for(lambda: station.flow.state == "showing_result")
        [row] = station.journal.deposits(limit=5)
        assert (row.state, row.net_g) == ("recorded", 333)


def test_real_time_simulator_waits_for_the_loop_to_apply_what_it_took(tmp_path, keys):
    """``kiosk run --sim`` in real time: a command returns once the loop has acted on it.

    The loop is held between taking the scan off its queue and applying it; nothing is
    queued or pending then, yet the state is still idle, and the next command ("paper")
    would reach a station that has not seen the label.
    """
    import io
    import threading

    from kiosk.sim import SimDriver, build_sim_station

    station, screen = build_sim_station(
        offline_config(tmp_path / "s", keys.public), virtual=False, out=io.StringIO()
    )
    driver = SimDriver(station, screen, virtual=False, out=io.StringIO())
    taken, release = threading.Event(), threading.Event()
    dispatch = station._dispatch

    def held_dispatch(name, kwargs):
        if name == "scan":
            taken.set()
            assert release.wait(WAIT_S)
        dispatch(name, kwargs)

    station._dispatch = held_dispatch
    runner = threading.Thread(target=station.run, kwargs={"install_signals": False})
    runner.start()
    try:
        done = threading.Event()
        command = threading.Thread(target=lambda: (driver.execute(keys.label()), done.set()))
        command.start()
        assert taken.wait(WAIT_S)
        assert not done.wait(1.0)  # the command must not return while the scan is in the air
        release.set()
        assert done.wait(WAIT_S)
        assert station.flow.state == "choosing"
        command.join(WAIT_S)
    finally:
        release.set()
        station.stop()
        runner.join(timeout=20)
    assert not runner.is_alive()


# -- crash hook -------------------------------------------------------------------------------------


def test_crash_hook_counts_entries_and_ignores_other_points(monkeypatch):
    kills = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append(sig))
    hook = CrashHook("idle:2")
    hook.hit("door_open")
    hook.hit("idle")
    assert kills == []
    hook.hit("idle")
    assert kills == [signal.SIGKILL]
    assert CrashHook(None).point is None


# -- install-pi.sh ------------------------------------------------------------------------------------


def test_install_script_uses_rpi_lgpio_on_a_pi_5(tmp_path):
    out = install_dry_run(tmp_path, "Raspberry Pi 5 Model B Rev 1.0")
    assert "GPIO module: rpi-lgpio" in out
    [pip_line] = [
        line for line in out.splitlines() if "pip install" in line and "upgrade" not in line
    ]
    assert "rpi-lgpio" in pip_line and "sdnotify" in pip_line and "[pi]" not in pip_line
    assert "RPi.GPIO" not in pip_line


def test_install_script_uses_the_pi_extra_on_a_pi_4(tmp_path):
    out = install_dry_run(tmp_path, "Raspberry Pi 4 Model B Rev 1.5")
    assert "GPIO module: RPi.GPIO" in out and f"pip install {ROOT}\\[pi\\]" in out
    assert f"sortpoint-kiosk.service {tmp_path / 'units'}/sortpoint-kiosk.service" in out
    assert "99-sortpoint-scanner.rules" in out and "kiosk/example.toml" in out
    assert "systemctl enable sortpoint-kiosk.service" in out


def test_install_script_leaves_what_is_already_in_place(tmp_path):
    (tmp_path / "units").mkdir()
    (tmp_path / "udev").mkdir()
    (tmp_path / "etc").mkdir()
    (tmp_path / "units" / "sortpoint-kiosk.service").write_bytes(
        (ROOT / "deploy" / "sortpoint-kiosk.service").read_bytes()
    )
    (tmp_path / "udev" / "99-sortpoint-scanner.rules").write_bytes(
        (ROOT / "deploy" / "99-sortpoint-scanner.rules").read_bytes()
    )
    (tmp_path / "etc" / "kiosk.toml").write_text("# edited by the technician\n")
    venv_python = tmp_path / "opt" / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text("#!/bin/sh\n")
    venv_python.chmod(0o755)
    out = install_dry_run(tmp_path, "Raspberry Pi 4 Model B Rev 1.5")
    assert (
        "sortpoint-kiosk.service is up to date" in out
        and "99-sortpoint-scanner.rules is up to date" in out
    )
    assert "kiosk.toml exists (left as it is)" in out and "venv" in out and "exists" in out
    assert (
        "+ install" not in out
        and "udevadm" not in out
        and "daemon-reload" not in out
        and "-m venv" not in out
    )
    assert (tmp_path / "etc" / "kiosk.toml").read_text() == "# edited by the technician\n"


def test_scanner_udev_rule_keeps_modemmanager_off_every_scanner_line():
    text = (ROOT / "deploy" / "99-sortpoint-scanner.rules").read_text()
    rules = [
        line.lstrip("#") for line in text.splitlines() if 'SYMLINK+="sortpoint-scanner"' in line
    ]
    active = [line for line in text.splitlines() if line.startswith("SUBSYSTEM")]
    assert len(rules) == 6 and len(active) == 3
    for rule in rules:  # the commented examples too: they are meant to be uncommented
        keys = [part.strip() for part in rule.split(",")]
        assert keys[0] == 'SUBSYSTEM=="tty"' and 'ENV{ID_MM_DEVICE_IGNORE}="1"' in keys, rule


def test_install_script_refuses_to_run_without_root_unless_dry(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: the refusal cannot be observed")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-pi.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "run as root" in result.stderr


def test_unit_file_has_the_systemd_settings_a_kiosk_needs():
    unit = (ROOT / "deploy" / "sortpoint-kiosk.service").read_text()
    for line in (
        "Type=notify",
        "Restart=always",
        "StartLimitIntervalSec=0",
        "WatchdogSec=",
        "RestartSec=",
        "ExecStart=/opt/sortpoint/venv/bin/kiosk run --config /etc/sortpoint/kiosk.toml",
    ):
        assert line in unit


def test_example_config_state_dir_is_the_units_state_directory():
    config = load_config(ROOT / "kiosk" / "example.toml")
    assert config.kiosk.state_dir == "/var/lib/sortpoint-kiosk"


def test_a_real_door_left_open_does_not_stall_the_loop_nor_count_as_a_jam(tmp_path, keys):
    """A GpioDoor (on the simulated header) waits for its sensor in lock(): never in the loop.

    The door's close timeout is long, so that lock() is still waiting when the test shuts the
    door (a short one ran out first on a slow machine) and a blocked loop cannot pass for a
    slow one.
    """
    import threading

    from hardware.clock import SystemClock
    from hardware.door_gpio import GpioDoor
    from hardware.fakes import FakeIndicator, FakeQrReader, FakeScale
    from hardware.gpio import Pins
    from hardware.sim.door_model import DoorModel
    from hardware.sim.fake_rpi_gpio import FakeGPIO
    from kiosk.flow import DoorSlot
    from kiosk.parts import Hardware, build_parts

    CLOSE_TIMEOUT_S = 80.0  # noqa: N806 - a constant of this test
    board = FakeGPIO(SystemClock())
    model = board.attach(DoorModel(23, 24))
    door = GpioDoor(
        gpio="sim",
        lock_pin=23,
        sensor_pin=24,
        close_timeout_s=CLOSE_TIMEOUT_S,
        pins=Pins(board, "sim"),
        clock=SystemClock(),
    )
    scale = FakeScale(settle_s=0.1)
    hardware = Hardware(
        scanner=FakeQrReader(),
        scales={"main": scale},
        doors={1: DoorSlot(1, "plastic", 40_000, door)},
        indicator=FakeIndicator(),
    )
    config = offline_config(
        tmp_path / "s",
        keys.public,
        doors={1: "plastic"},
        timeouts={"door_close_s": 1.0},
        weighing={"window_s": 0.3},
    )
    station = Station(config, build_parts(config, hardware=hardware), threaded=True, tick_s=0.01)
    runner = threading.Thread(target=station.run, kwargs={"install_signals": False})
    runner.start()
    try:
        station.hardware.scanner.present(keys.label())
        wait_for(lambda: station.flow.state == "door_unlocked")
        assert model.open_by_hand()
        scale.place(400)
        wait_for(lambda: station.flow.state == "fault")
        assert station.flow.fault_kind == "door_left_open"
        entered = time.monotonic()
        station.hardware.scanner.present(keys.label(serial="NEXT000001"))
        wait_for(
            lambda: "Out of order" in station.screen.text and station.hardware.scanner.pending == 0
        )
        # a blocked loop would wait out the door's close timeout: far longer than this bound
        assert time.monotonic() - entered < CLOSE_TIMEOUT_S / 4
        assert station.flow.fault_kind == "door_left_open"  # an open door is not a jam
        assert model.close_by_hand()
        wait_for(lambda: station.flow.state == "idle")
        [row] = station.journal.deposits(limit=5)
        assert (row.state, row.net_g) == ("recorded", 400)
        assert not model.energised
    finally:
        station.stop()
        runner.join(timeout=20)
        door.close()
