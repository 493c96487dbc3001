"""The stable-weight detector and wait_stable, over scripted scales and the simulated HX711."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from hardware import HardwareConfigError, ScaleFault
from hardware.clock import VirtualClock
from hardware.interfaces import WeightSample
from hardware.loadcell import HX711Scale
from hardware.sim.hx711_model import HX711Model
from hardware.stability import StabilityDetector, wait_stable
from tests.hardware.gpio_rig import make_rig


class ScriptedScale:
    """A Scale whose grams are a function of virtual time; one sample every ``period_s``."""

    def __init__(
        self, clock: VirtualClock, grams_at: Callable[[float], int], period_s: float = 0.1
    ):
        self.clock, self.grams_at, self.period_s = clock, grams_at, period_s
        self.reads = 0

    def read(self, timeout_s: float) -> WeightSample:
        self.clock.sleep(self.period_s)
        self.reads += 1
        t = round(self.reads * self.period_s, 6)  # exact tenths: no float noise in the script
        return WeightSample(grams=self.grams_at(t), stable=None, at_s=self.clock.monotonic())

    def zero(self) -> None:
        """Not used by these tests: the scripted weights are already net."""

    def close(self) -> None:
        """Nothing to release: the scripted scale holds no port or thread."""


def samples(values: list[int], period_s: float = 0.1) -> list[WeightSample]:
    return [WeightSample(grams=g, stable=None, at_s=i * period_s) for i, g in enumerate(values)]


def feed_all(
    detector: StabilityDetector, values: list[int], period_s: float = 0.1
) -> list[int | None]:
    return [detector.feed(s) for s in samples(values, period_s)]


def test_constant_weight_is_stable_once_the_window_is_full():
    out = feed_all(StabilityDetector(band_g=5, window_s=1.0, filter_len=1), [500] * 12)
    assert out[:10] == [None] * 10  # 0.0 .. 0.9 s: the window is not yet 1 s long
    assert out[10] == 500 and out[11] == 500


def test_noise_inside_the_band_is_stable():
    values = [1000, 1003, 998, 1001, 1004, 999, 1002, 1000, 997, 1003, 1001, 1000]
    out = feed_all(StabilityDetector(band_g=8, window_s=1.0, filter_len=1), values)
    assert out[-1] in range(997, 1005)


def test_motion_restarts_the_window():
    # 0.6 s at 200 g, then a bag lands: 1.0 s must pass again at the new weight
    values = [200] * 6 + [900] * 12
    out = feed_all(StabilityDetector(band_g=10, window_s=1.0, filter_len=1), values)
    assert all(v is None for v in out[:16])
    assert out[16] == 900


def test_a_single_stray_sample_does_not_count_as_motion():
    values = [300] * 8 + [5_000] + [300] * 3
    detector = StabilityDetector(band_g=10, window_s=1.0, filter_len=3)
    out = feed_all(detector, values)
    assert out[10] == 300 and out[11] == 300


def test_swinging_load_never_settles_and_faults_with_why():
    clock = VirtualClock()
    scale = ScriptedScale(clock, lambda t: 1_000 + (60 if int(t * 10) % 4 < 2 else -60))
    with pytest.raises(ScaleFault, match="never settled within 3 s") as info:
        wait_stable(scale, timeout_s=3.0, band_g=20, window_s=0.8, clock=clock)
    assert "last motion 120 g" in str(info.value)
    assert 29 <= scale.reads <= 31  # bounded by the timeout, not by luck


def test_wait_stable_returns_once_the_bag_settles():
    clock = VirtualClock()

    # lands at 0.5 s, swings until 1.5 s, then rests at 2 340 g
    def grams_at(t: float) -> int:
        if t < 0.5:
            return 0
        if t < 1.5:
            return 2_340 + (300 if int(t * 10) % 2 else -300)
        return 2_340

    scale = ScriptedScale(clock, grams_at)
    start_s = clock.monotonic()
    assert wait_stable(scale, timeout_s=10, band_g=10, window_s=1.0, clock=clock) == 2_340
    assert 2.5 <= clock.monotonic() - start_s <= 2.9


def test_scale_faults_propagate_unchanged():
    class DeadScale(ScriptedScale):
        def read(self, timeout_s: float) -> WeightSample:
            raise ScaleFault("HX711: no conversion ready in time")

    clock = VirtualClock()
    with pytest.raises(ScaleFault, match="no conversion ready"):
        wait_stable(DeadScale(clock, lambda t: 0), timeout_s=5, clock=clock)


def test_zero_tracking_follows_drift_near_zero_in_small_steps():
    detector = StabilityDetector(
        band_g=5, window_s=1.0, filter_len=1, zero_track_band_g=10, zero_track_step_g=1
    )
    out = feed_all(detector, [4] * 80)
    stable = [v for v in out if v is not None]
    assert stable[0] == 3  # first stable reading: one 1 g step taken
    assert stable[-1] == 0 and detector.zero_offset_g == 4
    # steps are at most 1 g per window: never a jump
    assert all(abs(a - b) <= 1 for a, b in itertools.pairwise(stable))


def test_zero_tracking_leaves_a_real_load_alone():
    detector = StabilityDetector(
        band_g=5, window_s=1.0, filter_len=1, zero_track_band_g=10, zero_track_step_g=1
    )
    out = feed_all(detector, [250] * 80)
    assert out[-1] == 250 and detector.zero_offset_g == 0


def test_zero_tracking_is_off_by_default_and_never_tracks_motion():
    detector = StabilityDetector(band_g=5, window_s=1.0, filter_len=1)
    assert feed_all(detector, [4] * 40)[-1] == 4
    tracking = StabilityDetector(band_g=2, window_s=1.0, filter_len=1, zero_track_band_g=10)
    feed_all(tracking, [0, 6] * 40)  # moving near zero: never stable, so never tracked
    assert tracking.zero_offset_g == 0


def test_bad_settings_are_refused():
    for kwargs in ({"band_g": -1}, {"window_s": 0}, {"filter_len": 0}, {"zero_track_step_g": 0}):
        with pytest.raises(HardwareConfigError):
            StabilityDetector(**kwargs)


def test_works_over_the_hx711_driver_and_model():
    rig = make_rig()
    model = rig.board.attach(
        HX711Model(17, 27, offset_counts=5_000, counts_per_g=20, noise_counts=30, seed=3)
    )
    scale = HX711Scale(
        gpio="sim",
        dout_pin=17,
        sck_pin=27,
        offset_counts=5_000,
        counts_per_g=20,
        pins=rig.pins,
        clock=rig.clock,
    )
    assert abs(wait_stable(scale, timeout_s=10, band_g=10, window_s=1.0, clock=rig.clock)) <= 3
    model.set_load_g(1_500)
    assert (
        abs(wait_stable(scale, timeout_s=10, band_g=10, window_s=1.0, clock=rig.clock) - 1_500) <= 3
    )
