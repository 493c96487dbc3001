"""Stable-weight detection over any ``Scale`` (HX711, serial indicator, fake).

The industry rule (HARDWARE.md): the weight is "in motion" while it moves more
than a band within a window; stable = max - min <= ``band_g`` for
``window_s`` over filtered samples.  Samples first pass a short moving median
(``filter_len``) so one stray sample cannot fake motion; any move beyond the
band restarts the window, so a bag still swinging never counts as stable.

Zero tracking (off by default) follows slow drift of an empty platform: only
when stable, only within ``zero_track_band_g`` of zero, at most
``zero_track_step_g`` per window, so a real deposit is never tracked away.
"""

from __future__ import annotations

import statistics
from collections import deque

from hardware import HardwareConfigError, ScaleFault
from hardware.clock import SYSTEM_CLOCK, Clock
from hardware.interfaces import Scale, WeightSample


class StabilityDetector:
    """Feed ``WeightSample``s; ``feed`` returns the stable grams, or None while in motion."""

    def __init__(
        self,
        *,
        band_g: int = 10,
        window_s: float = 1.0,
        filter_len: int = 3,
        zero_track_band_g: int = 0,
        zero_track_step_g: int = 1,
        max_samples: int = 1_000,
    ):
        if not isinstance(band_g, int) or band_g < 0:
            raise HardwareConfigError(f"stability band_g {band_g!r} must be an integer >= 0")
        if not window_s > 0:
            raise HardwareConfigError(f"stability window_s {window_s!r} must be > 0")
        if not isinstance(filter_len, int) or not 1 <= filter_len <= 15:
            raise HardwareConfigError(f"stability filter_len {filter_len!r} must be 1-15")
        if zero_track_band_g < 0 or zero_track_step_g < 1:
            raise HardwareConfigError("zero tracking: band >= 0 (0 = off), step >= 1")
        self.band_g, self.window_s, self.filter_len = band_g, window_s, filter_len
        self.zero_track_band_g, self.zero_track_step_g = zero_track_band_g, zero_track_step_g
        self.zero_offset_g = 0
        self._raw: deque[int] = deque(maxlen=filter_len)
        # bounded: a scale streaming fast for a long window cannot grow it without limit
        self._window: deque[tuple[float, int]] = deque(maxlen=max_samples)
        self._last_track_s: float | None = None
        self.last_g: int | None = None
        #: the largest spread that last restarted the window (for the fault text)
        self.motion_g = 0

    def reset(self) -> None:
        """Forget every sample (zero tracking offset is kept)."""
        self._raw.clear()
        self._window.clear()
        self.last_g = None
        self.motion_g = 0

    def feed(self, sample: WeightSample) -> int | None:
        """Add one sample; return the stable weight in grams, or None if not (yet) stable."""
        self._raw.append(sample.grams)
        filtered = statistics.median_low(self._raw) - self.zero_offset_g
        self.last_g = filtered
        self._window.append((sample.at_s, filtered))
        # motion: drop the oldest samples until the rest fit in the band again
        spread_g = self.spread_g()
        if spread_g > self.band_g:
            self.motion_g = spread_g
        while self.spread_g() > self.band_g:
            self._window.popleft()
        oldest_s, newest_s = self._window[0][0], self._window[-1][0]
        if newest_s - oldest_s < self.window_s:
            return None
        stable_g = statistics.median_low(g for _, g in self._window)
        return self._track_zero(stable_g, newest_s)

    def spread_g(self) -> int:
        """Return max - min of the samples in the current window."""
        values = [g for _, g in self._window]
        return max(values) - min(values) if values else 0

    def _track_zero(self, stable_g: int, now_s: float) -> int:
        if self.zero_track_band_g == 0 or stable_g == 0 or abs(stable_g) > self.zero_track_band_g:
            return stable_g
        if self._last_track_s is not None and now_s - self._last_track_s < self.window_s:
            return stable_g
        step = max(-self.zero_track_step_g, min(self.zero_track_step_g, stable_g))
        self.zero_offset_g += step
        self._last_track_s = now_s
        # the window holds values under the old zero: shift them with it
        self._window = deque(((t, g - step) for t, g in self._window), maxlen=self._window.maxlen)
        return stable_g - step


def wait_stable(
    scale: Scale,
    timeout_s: float,
    band_g: int = 10,
    window_s: float = 1.0,
    clock: Clock | None = None,
    *,
    detector: StabilityDetector | None = None,
    read_timeout_s: float = 5.0,
) -> int:
    """Read ``scale`` until the weight is stable; return grams, or raise ScaleFault at ``timeout_s``."""
    clock = clock if clock is not None else SYSTEM_CLOCK
    detector = (
        detector if detector is not None else StabilityDetector(band_g=band_g, window_s=window_s)
    )
    detector.reset()
    deadline_s = clock.monotonic() + timeout_s
    samples = 0
    while True:
        remaining_s = deadline_s - clock.monotonic()
        if remaining_s <= 0:
            break
        try:
            sample = scale.read(min(read_timeout_s, remaining_s))
        except ScaleFault:
            if remaining_s < read_timeout_s and clock.monotonic() >= deadline_s:
                break  # the read was cut short by our own deadline: report "never settled"
            raise
        samples += 1
        stable_g = detector.feed(sample)
        if stable_g is not None:
            return stable_g
    raise ScaleFault(
        f"weight never settled within {timeout_s:g} s: {samples} samples, last {detector.last_g} g, "
        f"last motion {detector.motion_g} g (band {detector.band_g} g over {detector.window_s:g} s)"
    )
