"""ScaleMonitor's read timeout comes from the scale driver: a slow HX711 is not a faulty one."""

from __future__ import annotations

import pytest

from hardware import ScaleFault
from hardware.interfaces import WeightSample
from hardware.loadcell import HX711Scale
from hardware.sim.hx711_model import HX711Model
from kiosk.monitors import (
    DEFAULT_SCALE_READ_TIMEOUT_S,
    ScaleMonitor,
    scale_read_timeout_s,
)
from tests.hardware.gpio_rig import make_rig

DOUT, SCK = 17, 27


def hx711_platform(*, samples: int = 3, rate_sps: int = 10, load_g: int = 2_000):
    """Return (rig, model, scale): a calibrated HX711Scale on the simulated chip."""
    rig = make_rig()
    model = rig.board.attach(
        HX711Model(
            DOUT, SCK, offset_counts=8_000, counts_per_g=10, rate_sps=rate_sps, load_g=load_g
        )
    )
    scale = HX711Scale(
        gpio="sim",
        dout_pin=DOUT,
        sck_pin=SCK,
        pins=rig.pins,
        clock=rig.clock,
        offset_counts=8_000,
        counts_per_g=10,
        samples=samples,
        rate_sps=rate_sps,
    )
    return rig, model, scale


def monitor_for(scale, clock, **kw) -> ScaleMonitor:
    return ScaleMonitor("main", scale, band_g=20, window_s=0.8, clock=clock, **kw)


def test_hx711_hints_at_least_1_5_s_at_10_sps_and_less_at_80():
    _, _, slow = hx711_platform(rate_sps=10)
    _, _, fast = hx711_platform(rate_sps=80)
    assert slow.read_timeout_s >= 1.5
    assert 0.5 <= fast.read_timeout_s < slow.read_timeout_s
    _, _, more = hx711_platform(samples=5)
    assert more.read_timeout_s > slow.read_timeout_s  # more samples per reading take longer


@pytest.mark.parametrize(("samples", "overruns"), [(3, 0), (3, 3), (5, 1), (5, 4)])
def test_first_reading_after_overruns_fits_the_hinted_timeout(samples, overruns):
    rig, model, scale = hx711_platform(samples=samples)
    model.inject_overrun(pulse=10, reads=overruns)
    start_s = rig.clock.monotonic()
    assert scale.read(scale.read_timeout_s).grams == 2_000
    taken_s = rig.elapsed_since(start_s)
    assert taken_s > 0.75  # reselect + 400 ms settling + the samples: slow, not faulty
    assert taken_s <= scale.read_timeout_s / 1.25  # and with room to spare


def test_monitor_uses_the_driver_hint_so_an_overrun_is_not_a_scale_fault():
    rig, model, scale = hx711_platform(samples=5)
    monitor = monitor_for(scale, rig.clock)
    assert monitor.read_timeout_s == scale.read_timeout_s
    model.inject_overrun(pulse=10)  # a preempted first read: about 1.1 s at 10 SPS
    monitor.poll_once()
    assert monitor.error is None and monitor.samples_seen == 1
    assert monitor.last_g() == 2_000
    # the old fixed 1 s timeout fails the same first reading
    rig, model, scale = hx711_platform(samples=5)
    model.inject_overrun(pulse=10)
    strict = monitor_for(scale, rig.clock, read_timeout_s=1.0)
    strict.poll_once()
    assert strict.error is not None and "HX711" in strict.error


class SlowScale:
    """A fake scale whose reading takes ``needs_s`` of virtual time (no ``read_timeout_s`` unless given)."""

    def __init__(self, clock, needs_s: float, hint_s: float | None = None):
        self.clock, self.needs_s = clock, needs_s
        self.timeouts: list[float] = []
        if hint_s is not None:
            self.read_timeout_s = hint_s

    def read(self, timeout_s: float) -> WeightSample:
        self.timeouts.append(timeout_s)
        self.clock.sleep(min(timeout_s, self.needs_s))
        if timeout_s < self.needs_s:
            raise ScaleFault(f"no reading within {timeout_s} s")
        return WeightSample(grams=500, stable=None, at_s=self.clock.monotonic())

    def zero(self) -> None:
        """Not used by these tests: the scripted weights are already net."""

    def close(self) -> None:
        """Nothing to release: the slow scale holds no port or thread."""


def test_a_fake_slow_scale_with_a_hint_reads_and_without_one_gets_the_default():
    rig = make_rig()
    hinted = SlowScale(rig.clock, needs_s=2.5, hint_s=3.0)
    monitor = monitor_for(hinted, rig.clock)
    monitor.poll_once()
    assert hinted.timeouts == [3.0] and monitor.error is None
    plain = SlowScale(rig.clock, needs_s=0.2)
    assert scale_read_timeout_s(plain) == DEFAULT_SCALE_READ_TIMEOUT_S == 1.0
    monitor_for(plain, rig.clock).poll_once()
    assert plain.timeouts == [1.0]
    explicit = monitor_for(SlowScale(rig.clock, 0.2, hint_s=3.0), rig.clock, read_timeout_s=0.7)
    assert explicit.read_timeout_s == 0.7  # an explicit timeout wins over the hint


def test_a_nonsense_hint_is_ignored():
    rig = make_rig()
    for bad in (0, -1.0, True, "2"):
        assert scale_read_timeout_s(SlowScale(rig.clock, 0.1, hint_s=bad)) == 1.0
