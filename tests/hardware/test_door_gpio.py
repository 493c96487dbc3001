"""GpioDoor against the simulated door on the fake RPi.GPIO header."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hardware import DoorFault, HardwareConfigError, registry
from hardware.door_gpio import GpioDoor
from hardware.interfaces import Door
from hardware.sim.door_model import DoorModel
from hardware.sim.fake_rpi_gpio import HIGH, LOW, PUD_DOWN
from tests.hardware.gpio_rig import make_rig

LOCK, SENSOR = 23, 24
ROOT = Path(__file__).resolve().parents[2]


def rig_door(kind: str = "solenoid", active_low: bool = False, travel_s: float = 1.0, **door_kw):
    """Return (rig, model, door): a door model wired to a GpioDoor on LOCK/SENSOR."""
    rig = make_rig()
    level = door_kw.get("sensor_closed_level", "low")
    model = rig.board.attach(
        DoorModel(
            LOCK,
            SENSOR,
            kind=kind,
            active_low=active_low,
            sensor_closed_level=level,
            travel_s=travel_s,
        )
    )
    door = GpioDoor(
        gpio="sim",
        lock_pin=LOCK,
        sensor_pin=SENSOR,
        kind=kind,
        active_low=active_low,
        pins=rig.pins,
        clock=rig.clock,
        **door_kw,
    )
    return rig, model, door


@pytest.fixture
def closers():
    """Close every door a test opened, so no atexit hook outlives the test."""
    doors: list[GpioDoor] = []
    yield doors
    for door in doors:
        door.close()


def energised_spans(history, on_level, end_ns):
    """Return how long (s) each energised stretch of the lock pin lasted."""
    spans, since = [], None
    for t_ns, level in history:
        if level == on_level and since is None:
            since = t_ns
        elif level != on_level and since is not None:
            spans.append((t_ns - since) / 1e9)
            since = None
    if since is not None:
        spans.append((end_ns - since) / 1e9)
    return spans


@pytest.mark.parametrize("active_low, locked_level", [(False, LOW), (True, HIGH)])
def test_locked_from_construction_without_a_glitch(closers, active_low, locked_level):
    rig, model, door = rig_door(active_low=active_low)
    closers.append(door)
    assert isinstance(door, Door)
    assert rig.board.history(LOCK) == [(rig.clock.perf_counter_ns(), locked_level)]
    assert not model.energised and door.is_closed()
    assert model.open_by_hand() is False


@pytest.mark.parametrize("active_low", [False, True])
def test_active_low_relay_is_driven_low_to_unlock(closers, active_low):
    rig, model, door = rig_door(active_low=active_low)
    closers.append(door)
    door.unlock()
    assert rig.board.output_state(LOCK) == (LOW if active_low else HIGH)
    assert model.energised
    door.lock()
    assert rig.board.output_state(LOCK) == (HIGH if active_low else LOW)
    assert not model.energised


def test_solenoid_deposit_cycle_releases_the_coil_once_open(closers):
    rig, model, door = rig_door()
    closers.append(door)
    door.unlock()
    assert model.open_by_hand()
    assert door.wait_closed(False, timeout_s=1)
    assert not model.energised  # released as soon as the door was seen open
    rig.clock.schedule(2.0, model.close_by_hand)
    assert door.wait_closed(True, timeout_s=5)
    door.lock()
    assert door.is_closed() and not model.energised and door.auto_releases == 0


def test_solenoid_is_never_energised_longer_than_max(closers):
    rig, model, door = rig_door(max_energise_s=3.0, release_on_open=False)
    closers.append(door)
    door.unlock()
    rig.clock.advance(2.9)
    assert model.energised
    rig.clock.advance(0.2)
    assert not model.energised and door.auto_releases == 1
    assert model.open_by_hand() is False  # the window to open has passed
    door.unlock()
    assert model.open_by_hand()
    rig.clock.advance(10)
    spans = energised_spans(rig.board.history(LOCK), HIGH, rig.clock.perf_counter_ns())
    assert len(spans) == 2 and max(spans) <= 3.0 + 1e-9


def test_an_old_auto_release_timer_does_not_cut_a_newer_unlock(closers):
    rig, model, door = rig_door(max_energise_s=3.0)
    closers.append(door)
    door.unlock()
    rig.clock.advance(1.0)
    door.lock()
    rig.clock.advance(1.0)
    door.unlock()
    rig.clock.advance(1.5)  # 3.5 s after the first unlock, 1.5 s into the second
    assert model.energised
    rig.clock.advance(1.6)
    assert not model.energised and door.auto_releases == 1


def test_solenoid_left_open_is_a_fault_but_stays_secure_and_unlatched(closers):
    rig, model, door = rig_door(close_timeout_s=4.0)
    closers.append(door)
    door.unlock()
    model.open_by_hand()
    start_s = rig.clock.monotonic()
    with pytest.raises(DoorFault, match="still open"):
        door.lock()
    assert 4.0 <= rig.elapsed_since(start_s) < 4.1
    assert not model.energised and door.fault is None
    model.close_by_hand()
    door.unlock()  # usable again once shut
    assert model.energised


def test_unlock_refused_when_the_door_reads_open_while_locked(closers):
    rig, model, door = rig_door()
    closers.append(door)
    rig.board.drive_high(SENSOR)  # forced open, or a cut sensor wire
    with pytest.raises(DoorFault, match="reads open while locked"):
        door.unlock()
    assert not model.energised


def test_actuator_opens_and_closes_within_its_timeouts(closers):
    rig, model, door = rig_door(kind="actuator", travel_s=1.5, open_timeout_s=3, close_timeout_s=3)
    closers.append(door)
    start_s = rig.clock.monotonic()
    door.unlock()
    assert 1.5 <= rig.elapsed_since(start_s) < 1.7
    assert not model.closed and model.energised
    start_s = rig.clock.monotonic()
    door.lock()
    assert 1.5 <= rig.elapsed_since(start_s) < 1.7
    assert model.closed and not model.energised


def test_actuator_jammed_shut_latches_a_fault_after_retries(closers):
    rig, model, door = rig_door(kind="actuator", open_timeout_s=2, retries=2, reopen_s=0.5)
    closers.append(door)
    model.block()
    start_s = rig.clock.monotonic()
    with pytest.raises(DoorFault, match="did not open after 3 attempts.*latched"):
        door.unlock()
    assert 3 * 2 + 2 * 0.5 <= rig.elapsed_since(start_s) < 7.2
    assert not model.energised and door.fault
    assert sum(1 for _, e in door.events if e == "energise") == 3
    before = len(rig.board.history(LOCK))
    with pytest.raises(DoorFault, match="fault latched"):
        door.unlock()
    assert len(rig.board.history(LOCK)) == before  # refused without touching the output
    model.unblock()
    door.reset_fault()
    door.unlock()
    assert not model.closed


def test_actuator_obstructed_stops_reopens_then_latches(closers):
    _rig, model, door = rig_door(kind="actuator", close_timeout_s=3, retries=2, reopen_s=1.0)
    closers.append(door)
    door.unlock()
    model.block()  # a bag stuck in the doorway
    with pytest.raises(DoorFault, match="did not close after 3 attempts"):
        door.lock()
    events = [e for _, e in door.events]
    after_lock = [e for e in events[events.index("lock") :] if e in ("energise", "release")]
    # close, fail, stop and drive back open (reopen), close again...: 3 closes, 2 reopens
    assert after_lock == ["release", "energise", "release", "energise", "release"]
    assert events[-1].startswith("fault: did not close")
    assert not model.energised and door.fault is not None


def test_actuator_obstruction_cleared_during_retries_closes(closers):
    rig, model, door = rig_door(
        kind="actuator", close_timeout_s=3, retries=2, reopen_s=1.0, travel_s=1.0
    )
    closers.append(door)
    door.unlock()
    model.block()
    rig.clock.schedule(3.5, model.unblock)  # the resident pulls the bag out during the reopen
    door.lock()
    assert model.closed and door.fault is None


def _moves_since(door, marker):
    events = [e for _, e in door.events]
    return [e for e in events[events.index(marker) :] if e in ("energise", "release")]


def test_actuator_auto_release_closes_the_door_supervised(closers):
    rig, model, door = rig_door(kind="actuator", max_energise_s=20, close_timeout_s=3, travel_s=1.0)
    closers.append(door)
    start_s = rig.clock.monotonic()
    door.unlock()
    rig.clock.advance(19.9 - rig.elapsed_since(start_s))
    assert not model.closed and model.energised
    rig.clock.advance(0.2)  # max_energise_s runs out with the door still open
    assert model.closed and not model.energised
    assert door.auto_releases == 1 and door.fault is None
    assert "auto_close" in [e for _, e in door.events]
    door.lock()  # the kiosk's own lock finds it shut
    door.unlock()  # and the door is usable again
    assert not model.closed


def test_actuator_auto_release_into_an_obstruction_retries_then_latches(closers):
    rig, model, door = rig_door(
        kind="actuator", max_energise_s=20, close_timeout_s=3, retries=2, reopen_s=1.0
    )
    closers.append(door)
    door.unlock()
    model.block()  # a bag stuck in the doorway when the timer runs out
    rig.clock.advance(20)
    # release, fail, stop and reopen, close again...: 3 closes, 2 reopens, then a latched fault
    assert _moves_since(door, "auto_release") == [
        "release",
        "energise",
        "release",
        "energise",
        "release",
    ]
    assert [e for _, e in door.events][-1].startswith("fault: did not close")
    assert not model.energised and door.fault is not None
    with pytest.raises(DoorFault, match="fault latched"):
        door.lock()  # the kiosk's next lock reports it: door_jammed
    with pytest.raises(DoorFault, match="fault latched"):
        door.unlock()


def test_actuator_auto_close_obstruction_cleared_during_retries_closes(closers):
    rig, model, door = rig_door(
        kind="actuator", max_energise_s=20, close_timeout_s=3, retries=2, reopen_s=1.0
    )
    closers.append(door)
    door.unlock()
    model.block()
    rig.clock.schedule(22.5, model.unblock)  # pulled out during the first reopen
    rig.clock.advance(30)
    assert model.closed and not model.energised and door.fault is None
    door.lock()


def test_actuator_auto_release_after_the_kiosk_locked_does_nothing(closers):
    rig, model, door = rig_door(kind="actuator", max_energise_s=20, close_timeout_s=3)
    closers.append(door)
    door.unlock()
    door.lock()
    rig.clock.advance(30)
    assert door.auto_releases == 0 and "auto_close" not in [e for _, e in door.events]
    assert model.closed and not model.energised


def test_actuator_max_energise_must_outlast_one_opening():
    rig = make_rig()
    for kwargs in (
        {"max_energise_s": 5, "open_timeout_s": 5},
        {"max_energise_s": 2, "reopen_s": 3},
    ):
        with pytest.raises(HardwareConfigError, match="max_energise_s"):
            GpioDoor(
                gpio="sim",
                lock_pin=LOCK,
                sensor_pin=SENSOR,
                kind="actuator",
                pins=rig.pins,
                clock=rig.clock,
                **kwargs,
            )
        assert rig.pins.in_use() == {}


def test_any_exception_inside_a_door_operation_leaves_it_locked(closers, monkeypatch):
    rig, model, door = rig_door(release_on_open=False)
    closers.append(door)
    door.unlock()
    assert model.energised

    def interrupted(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(rig.clock, "sleep", interrupted)
    with pytest.raises(KeyboardInterrupt):
        door.wait_closed(False, timeout_s=5)
    assert not model.energised


def test_a_failing_sensor_read_during_unlock_leaves_it_locked(closers, monkeypatch):
    rig, model, door = rig_door(kind="actuator")
    closers.append(door)
    real_read = rig.pins.read
    calls = {"n": 0}

    def flaky(pin):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError("GPIO read failed")
        return real_read(pin)

    monkeypatch.setattr(rig.pins, "read", flaky)
    with pytest.raises(OSError):
        door.unlock()
    assert not model.energised


def test_sensor_chatter_is_debounced(closers):
    rig = make_rig()
    door = GpioDoor(
        gpio="sim",
        lock_pin=LOCK,
        sensor_pin=SENSOR,
        debounce_s=0.05,
        pins=rig.pins,
        clock=rig.clock,
    )
    closers.append(door)
    rig.board.drive_high(SENSOR)  # open
    start_s = rig.clock.monotonic()
    rig.clock.schedule(0.10, lambda: rig.board.drive_low(SENSOR))  # a bounce...
    rig.clock.schedule(0.12, lambda: rig.board.drive_high(SENSOR))
    rig.clock.schedule(0.30, lambda: rig.board.drive_low(SENSOR))  # ...then shut for good
    assert door.wait_closed(True, timeout_s=2)
    assert 0.35 <= rig.elapsed_since(start_s) < 0.4


def test_sensor_closed_high_uses_a_pull_down(closers):
    rig, model, door = rig_door(sensor_closed_level="high")
    closers.append(door)
    assert rig.board._pins[SENSOR].pull == PUD_DOWN
    assert door.is_closed()
    door.unlock()
    model.open_by_hand()
    assert not door.is_closed()


def test_close_releases_pins_and_the_exit_hook(monkeypatch):
    hooks = []

    class Recorder:
        register = staticmethod(hooks.append)
        unregister = staticmethod(hooks.remove)

    monkeypatch.setattr("hardware.door_gpio.atexit", Recorder)
    rig, model, door = rig_door()
    assert hooks == [door._secure_at_exit]
    door.unlock()
    door.close()
    assert hooks == []
    assert not model.energised
    assert rig.pins.in_use() == {} and rig.board.direction(LOCK) is None
    with pytest.raises(DoorFault, match="closed"):
        door.unlock()
    door.close()  # idempotent


def test_bad_configuration_is_refused_and_frees_pins():
    rig = make_rig()
    bad = (
        {"kind": "gate"},
        {"sensor_closed_level": "mid"},
        {"retries": -1},
        {"max_energise_s": 0},
        {"open_timeout_s": "3"},
        {"sensor_pull": "sideways"},
    )
    for kwargs in bad:
        with pytest.raises(HardwareConfigError):
            GpioDoor(
                gpio="sim",
                lock_pin=LOCK,
                sensor_pin=SENSOR,
                pins=rig.pins,
                clock=rig.clock,
                **kwargs,
            )
        assert rig.pins.in_use() == {}


def test_registry_knows_the_gpio_door():
    assert registry.driver_class("door", "gpio") is GpioDoor


def test_process_exit_leaves_the_door_locked():
    script = textwrap.dedent(
        f"""
        import atexit
        from hardware.sim import fake_rpi_gpio
        from hardware.sim.door_model import DoorModel
        from hardware.door_gpio import GpioDoor

        board = fake_rpi_gpio.board()
        model = board.attach(DoorModel({LOCK}, {SENSOR}, active_low=True))
        # registered first, so it runs after the door's own exit hook (atexit is LIFO)
        atexit.register(lambda: print("at exit: lock pin", board.output_state({LOCK}), "energised", model.energised))
        door = GpioDoor(gpio="sim", lock_pin={LOCK}, sensor_pin={SENSOR}, active_low=True, max_energise_s=30)
        door.unlock()
        print("unlocked: lock pin", board.output_state({LOCK}), "energised", model.energised)
        # no close(): the process just ends
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "unlocked: lock pin 0 energised True" in done.stdout
    assert "at exit: lock pin 1 energised False" in done.stdout
