"""The fakes behave like the parts they stand for, deterministically on a FakeClock."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from hardware import DoorFault, HardwareConfigError, ScaleFault, ScannerFault
from hardware.clock import Clock, SystemClock, VirtualClock, WallClock
from hardware.fakes import (
    FakeClock,
    FakeDoor,
    FakeIndicator,
    FakeQrReader,
    FakeScale,
    NullIndicator,
)
from hardware.interfaces import Door, Indicator, QrReader, Scale
from hardware.registry import DRIVERS, build, driver_class

# -- clock ----------------------------------------------------------------------


def test_fake_clock_moves_only_when_told():
    clock = FakeClock(start=1_000_000.0, monotonic_start=50.0)
    assert clock.now() == 1_000_000.0 and clock.monotonic() == 50.0
    clock.sleep(2.5)
    clock.advance(0.5)
    assert clock.monotonic() == 53.0
    assert clock.now() == 1_000_003.0
    assert clock.utcnow().timestamp() == 1_000_003.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_fake_clock_runs_scheduled_callbacks_in_time_order():
    clock = FakeClock()
    fired: list[tuple[str, float]] = []
    clock.schedule(3.0, lambda: fired.append(("c", clock.monotonic())))
    clock.schedule(1.0, lambda: fired.append(("a", clock.monotonic())))
    # a callback that schedules another one, which is also due inside the advance
    clock.schedule(2.0, lambda: clock.schedule(0.5, lambda: fired.append(("b", clock.monotonic()))))
    start = clock.monotonic()
    clock.advance(2.9)
    assert [name for name, _ in fired] == ["a", "b"]
    assert [at - start for _, at in fired] == [1.0, 2.5]
    assert clock.monotonic() - start == pytest.approx(2.9)
    clock.advance(1)
    assert [name for name, _ in fired] == ["a", "b", "c"]


def test_fake_clock_wait_for_stops_at_the_event_that_satisfies_it():
    clock = FakeClock()
    box = {"done": False}
    clock.schedule(4.0, lambda: box.update(done=True))
    start = clock.monotonic()
    assert clock.wait_for(lambda: box["done"], 10.0)
    assert clock.monotonic() - start == 4.0
    start = clock.monotonic()
    assert not clock.wait_for(lambda: False, 1.5)
    assert clock.monotonic() - start == 1.5


def test_one_clock_family_real_and_virtual_clocks_fit_both_protocols():
    assert issubclass(FakeClock, VirtualClock)
    for clock in (SystemClock(), VirtualClock(), FakeClock()):
        assert isinstance(clock, Clock) and isinstance(clock, WallClock)


def test_the_kiosk_takes_no_clock_from_the_fakes():
    """Production code runs on hardware.clock; only the simulator builds on the fakes."""
    root = Path(__file__).resolve().parents[2]
    importers = {
        path.relative_to(root).as_posix()
        for folder in ("kiosk", "hardware")
        for path in (root / folder).rglob("*.py")
        if re.search(r"^\s*from hardware\.fakes import", path.read_text(), flags=re.M)
    }
    assert importers == {"kiosk/sim.py"}


# -- scanner --------------------------------------------------------------------


def test_fake_scanner_queues_scans_and_times_out_on_virtual_time():
    clock = FakeClock()
    reader = FakeQrReader(clock=clock)
    assert isinstance(reader, QrReader)
    start = clock.monotonic()
    assert reader.read(2.0) is None
    assert clock.monotonic() - start == 2.0
    reader.present("SP1.a")
    reader.present("SP1.b")
    assert reader.read(1.0) == "SP1.a"
    assert reader.read(1.0) == "SP1.b"
    assert reader.read(0.1) is None


def test_fake_scanner_delivers_a_scan_scheduled_later():
    clock = FakeClock()
    reader = FakeQrReader(clock=clock)
    clock.schedule(0.7, lambda: reader.present("late"))
    start = clock.monotonic()
    assert reader.read(5.0) == "late"
    assert clock.monotonic() - start == pytest.approx(0.7)


def test_fake_scanner_unplug_raises_until_replugged():
    reader = FakeQrReader(clock=FakeClock())
    reader.present("lost when unplugged")
    reader.unplug()
    with pytest.raises(ScannerFault, match="unplugged"):
        reader.read(1.0)
    reader.replug()
    assert reader.read(0.5) is None
    reader.present("x")
    assert reader.read(0.5) == "x"
    reader.close()
    with pytest.raises(ScannerFault):
        reader.read(0.5)


def test_fake_scanner_buffer_is_bounded():
    reader = FakeQrReader(max_queue=2, clock=FakeClock())
    for payload in ("1", "2", "3"):
        reader.present(payload)
    assert [reader.read(0.1), reader.read(0.1), reader.read(0.1)] == ["2", "3", None]


def test_fake_scanner_wakes_a_reader_blocked_on_the_real_clock():
    reader = FakeQrReader(clock=SystemClock())
    timer = threading.Timer(0.05, reader.present, args=("from another thread",))
    timer.start()
    try:
        # generous timeout: the assertion is on the value, not on speed
        assert reader.read(10.0) == "from another thread"
    finally:
        timer.cancel()


# -- scale ----------------------------------------------------------------------


def _reads(scale: FakeScale, n: int) -> list[int]:
    return [scale.read(1.0).grams for _ in range(n)]


def test_fake_scale_swings_for_settle_time_then_reads_the_load():
    clock = FakeClock()
    scale = FakeScale(settle_s=0.5, rate_hz=10, clock=clock)
    assert isinstance(scale, Scale)
    assert _reads(scale, 3) == [0, 0, 0]
    scale.place(1_234)
    moving = _reads(scale, 4)  # 0.4 s of motion
    assert max(moving) - min(moving) >= 400  # far outside any stable band
    assert _reads(scale, 5)[-3:] == [1_234, 1_234, 1_234]
    sample = scale.read(1.0)
    assert sample.stable is None and sample.at_s == clock.monotonic()


def test_fake_scale_samples_at_its_rate_and_faults_on_short_timeouts():
    clock = FakeClock()
    scale = FakeScale(rate_hz=20, clock=clock)
    start = clock.monotonic()
    _reads(scale, 10)
    assert clock.monotonic() - start == pytest.approx(0.5)
    with pytest.raises(ScaleFault, match="no scale sample"):
        scale.read(0.01)


def test_fake_scale_noise_stays_in_band_and_is_deterministic():
    def run() -> list[int]:
        scale = FakeScale(noise_g=10, seed=7, initial_g=500, settle_s=0, clock=FakeClock())
        return _reads(scale, 200)

    first = run()
    assert first == run()
    assert min(first) >= 495 and max(first) <= 505
    assert len(set(first)) > 3


def test_fake_scale_reports_its_own_stability_flag_when_asked():
    scale = FakeScale(reports_stable=True, settle_s=0.3, clock=FakeClock())
    scale.place(100)
    assert scale.read(1.0).stable is False
    _reads(scale, 3)
    assert scale.read(1.0).stable is True


def test_fake_scale_unstable_never_settles_until_turned_off():
    scale = FakeScale(settle_s=0.1, clock=FakeClock())
    scale.unstable(True)
    values = _reads(scale, 100)
    assert max(values[-10:]) - min(values[-10:]) >= 400
    scale.unstable(False)
    assert _reads(scale, 2) == [0, 0]


def test_fake_scale_drift_zero_and_remove():
    scale = FakeScale(settle_s=0, clock=FakeClock())
    scale.place(2_000)
    scale.drift(30)
    assert _reads(scale, 1) == [2_030]
    scale.zero()
    assert _reads(scale, 1) == [0]
    scale.remove(500)
    assert _reads(scale, 1) == [-500]
    assert scale.load_g == 1_500


def test_fake_scale_refuses_zero_in_motion_and_fails_on_command():
    scale = FakeScale(settle_s=1.0, clock=FakeClock())
    scale.place(300)
    with pytest.raises(ScaleFault, match="motion"):
        scale.zero()
    scale.fail()
    with pytest.raises(ScaleFault):
        scale.read(1.0)
    scale.recover()
    scale.read(1.0)


def test_fake_scale_overload_is_a_fault():
    scale = FakeScale(capacity_g=10_000, settle_s=0, clock=FakeClock())
    scale.place(10_001)
    with pytest.raises(ScaleFault, match="overload"):
        scale.read(1.0)


def test_fake_scale_calibration_maps_raw_counts_to_grams():
    clock = FakeClock()
    raw = FakeScale(settle_s=0, raw_offset_counts=5_000, raw_counts_per_g=100.0, clock=clock)
    empty = raw.read_counts(1.0)
    raw.place(1_000)
    loaded = raw.read_counts(1.0)
    assert (empty, loaded) == (5_000, 105_000)
    # a calibration that is off by 2 % shows up in the grams, as on a real cell
    skewed = FakeScale(
        settle_s=0,
        initial_g=1_000,
        raw_offset_counts=5_000,
        raw_counts_per_g=100.0,
        offset_counts=5_000,
        counts_per_g="102",
        clock=clock,
    )
    assert skewed.read(1.0).grams == 980
    with pytest.raises(HardwareConfigError):
        FakeScale(offset_counts=1)


# -- door -----------------------------------------------------------------------


def test_fake_door_is_locked_from_construction_and_refuses_to_open():
    door = FakeDoor(clock=FakeClock())
    assert isinstance(door, Door)
    assert door.locked and door.is_closed()
    assert door.open_by_hand() is False
    assert door.is_closed()


def test_fake_door_full_cycle_counts_and_history():
    clock = FakeClock()
    door = FakeDoor(clock=clock)
    door.unlock()
    assert not door.locked
    clock.schedule(1.0, door.open_by_hand)
    clock.schedule(4.0, door.close_by_hand)
    assert door.wait_closed(False, 5.0)
    assert door.wait_closed(True, 5.0)
    door.lock()
    assert door.locked
    assert (door.unlock_count, door.lock_count) == (1, 1)
    assert door.commands() == ["unlock", "opened", "closed", "lock"]


def test_fake_door_left_open_times_out():
    clock = FakeClock()
    door = FakeDoor(clock=clock)
    door.unlock()
    door.open_by_hand()
    start = clock.monotonic()
    assert door.wait_closed(True, 30.0) is False
    assert clock.monotonic() - start == 30.0


def test_fake_door_lock_waits_for_the_closed_sensor_as_a_gpio_door_does():
    clock = FakeClock()
    door = FakeDoor(close_timeout_s=10.0, clock=clock)
    door.unlock()
    door.open_by_hand()
    clock.schedule(3.0, door.close_by_hand)  # the resident shuts it while lock() waits
    start = clock.monotonic()
    door.lock()
    assert clock.monotonic() - start == pytest.approx(3.0)
    assert door.locked and door.is_closed()
    assert door.commands() == ["unlock", "opened", "lock", "closed"]


def test_fake_door_lock_of_a_door_left_open_fails_after_its_timeout_with_the_bolt_out():
    clock = FakeClock()
    door = FakeDoor(close_timeout_s=4.0, clock=clock)
    door.unlock()
    door.open_by_hand()
    start = clock.monotonic()
    with pytest.raises(DoorFault, match="still open 4 s after lock"):
        door.lock()
    assert clock.monotonic() - start == pytest.approx(4.0 + door.actuate_s)
    assert door.locked and not door.is_closed()  # fail-secure: it latches once shut
    assert door.commands()[-2:] == ["lock", "close_timeout"]
    door.close_by_hand()
    assert door.open_by_hand() is False


def test_fake_door_lock_has_the_gpio_doors_close_timeout_keyword_and_default():
    import inspect

    from hardware.door_gpio import GpioDoor

    def default(cls):
        return inspect.signature(cls).parameters["close_timeout_s"].default

    assert default(FakeDoor) == default(GpioDoor) == 10.0
    with pytest.raises(HardwareConfigError):
        FakeDoor(close_timeout_s=0, clock=FakeClock())


def test_fake_door_jam_fails_lock_after_the_configured_retries():
    door = FakeDoor(lock_retries=3, clock=FakeClock())
    door.unlock()
    door.block()
    with pytest.raises(DoorFault, match="3 attempts"):
        door.lock()
    assert not door.locked
    assert door.commands()[-4:] == ["lock", "lock_retry", "lock_retry", "lock_failed"]
    door.unblock()
    door.lock()
    assert door.locked


def test_fake_door_unlock_failure_keeps_it_locked():
    door = FakeDoor(clock=FakeClock())
    door.fail_unlock(times=1)
    with pytest.raises(DoorFault):
        door.unlock()
    assert door.locked and door.unlock_count == 0
    door.unlock()
    assert not door.locked
    door.lock()
    door.fail_unlock()
    for _ in range(3):
        with pytest.raises(DoorFault):
            door.unlock()
    door.repair()
    door.unlock()


def test_fake_door_close_locks_and_shuts_down():
    door = FakeDoor(clock=FakeClock())
    door.unlock()
    door.close()
    assert door.locked
    with pytest.raises(DoorFault):
        door.unlock()


# -- indicators and registry ------------------------------------------------------


def test_fake_indicator_records_and_rejects_unknown_states():
    indicator = FakeIndicator()
    assert isinstance(indicator, Indicator)
    indicator.show("busy")
    indicator.show("ok")
    indicator.beep()
    indicator.beep("error")
    assert indicator.states == ["busy", "ok"] and indicator.beeps == ["short", "error"]
    with pytest.raises(ValueError):
        indicator.show("disco")
    with pytest.raises(ValueError):
        indicator.beep("tune")
    indicator.close()
    assert indicator.state == "off" and indicator.closed


def test_null_indicator_fits_the_protocol():
    indicator = NullIndicator()
    assert isinstance(indicator, Indicator)
    indicator.show("idle")
    indicator.beep()
    indicator.close()


@pytest.mark.parametrize("kind", sorted(DRIVERS))
def test_registry_builds_every_fake(kind):
    obj = build(kind, "fake", clock=FakeClock())
    assert type(obj).__name__.startswith("Fake")
    assert driver_class("indicator", "none") is NullIndicator
