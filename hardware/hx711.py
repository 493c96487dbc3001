"""HX711 chip driver over ``Pins``: bit-banged reads that return raw counts only.

Modelled on Klipper's hx71x.py (the chip layer knows counts, not grams; tare
and counts-per-gram live in ``hardware.loadcell``) and on what the Python
drivers learned the hard way (HARDWARE.md):

* Linux can preempt us with PD_SCK high; past 60 us the chip powers down and
  the rest of the word reads as ones.  Every clock-high phase is timed with
  ``perf_counter_ns`` and a read that overran is discarded.  After an overrun
  the chip may have reset to A/128, so the wanted channel/gain is selected
  again and the settling time is waited out before the next kept read.
* Saturation codes (0x800000 / 0x7FFFFF) and spike codes (0 and 2^n-1, which a
  half-powered-down read produces) are rejected, as are reads far from the
  median (``outlier_counts``).
* The result is the median of the last ``samples`` (>= 3) accepted reads, once a
  strict majority of them lies within ``outlier_counts`` of it.  Every loop is
  bounded: ``max_attempts`` conversions per result, a ready timeout, then
  ``ScaleFault`` naming what went wrong.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from hardware import HardwareConfigError, ScaleFault
from hardware.clock import SYSTEM_CLOCK, Clock, perf_counter_ns
from hardware.gpio import Pins

MAX_HIGH_NS = 60_000
SATURATION_CODES = (0x7FFFFF, 0x800000)
#: extra pulses after the 24 data bits that select the NEXT conversion
GAIN_PULSES = {128: 1, 32: 2, 64: 3}
#: gain -> input channel (gain 32 exists only on channel B)
GAIN_CHANNEL = {128: "A", 64: "A", 32: "B"}
SETTLING_S = {10: 0.4, 80: 0.05}


@dataclass
class HX711Stats:
    """Counters since construction, for self-test output and tests."""

    conversions: int = 0
    #: filtered readings returned
    kept: int = 0
    overruns: int = 0
    saturated: int = 0
    spikes: int = 0
    outliers: int = 0
    unsettled: int = 0
    selects: int = 0


class _Overrun(Exception):
    """A clock-high phase exceeded 60 us: the word is corrupt and the chip may have reset."""


def is_spike(word: int) -> bool:
    """Return True for the codes a glitched read produces: 0 and 2^n-1 (trailing ones)."""
    return word == 0 or (word & (word + 1)) == 0


def to_signed(word: int) -> int:
    """Return a 24-bit two's complement word as a signed int."""
    return word - (1 << 24) if word & 0x800000 else word


class HX711:
    """One HX711 on two GPIO pins; ``read_counts()`` returns a filtered raw reading."""

    def __init__(
        self,
        pins: Pins,
        dout_pin: int,
        sck_pin: int,
        *,
        gain: int = 128,
        rate_sps: int = 10,
        samples: int = 3,
        outlier_counts: int = 20_000,
        max_attempts: int | None = None,
        ready_timeout_s: float | None = None,
        poll_s: float = 0.001,
        clock: Clock | None = None,
    ):
        if gain not in GAIN_PULSES:
            raise HardwareConfigError(
                f"hx711 gain {gain!r} must be 128 or 64 (channel A) or 32 (channel B)"
            )
        if rate_sps not in SETTLING_S:
            raise HardwareConfigError(
                f"hx711 rate_sps {rate_sps!r} must be 10 or 80 (the RATE pin)"
            )
        if not isinstance(samples, int) or not 3 <= samples <= 50:
            raise HardwareConfigError(
                f"hx711 samples {samples!r} must be 3-50 (a median needs >= 3)"
            )
        if outlier_counts <= 0:
            raise HardwareConfigError("hx711 outlier_counts must be > 0")
        self.pins, self.dout_pin, self.sck_pin = pins, dout_pin, sck_pin
        self.gain, self.rate_sps, self.samples = gain, rate_sps, samples
        self.outlier_counts = outlier_counts
        self.max_attempts = max_attempts if max_attempts is not None else 4 * samples + 4
        if self.max_attempts < samples:
            raise HardwareConfigError("hx711 max_attempts must be >= samples")
        self.settling_s = SETTLING_S[rate_sps]
        # four missed conversions is not a slow chip, it is a dead or unwired one
        self.ready_timeout_s = (
            ready_timeout_s if ready_timeout_s is not None else 4.0 / rate_sps + 0.1
        )
        self.poll_s = poll_s
        self.clock = clock if clock is not None else SYSTEM_CLOCK
        self.stats = HX711Stats()
        # The selection the chip will use for the conversion after the next read:
        # unknown at start (a previous process may have left it at any gain).
        self._selected: int | None = None
        self._settle_until_s = 0.0
        self._powered_down = False
        pins.setup_output(sck_pin, initial=False)  # PD_SCK idles low; high > 60 us = power down
        try:
            pins.setup_input(dout_pin, pull="off")  # the chip drives DOUT push-pull
        except BaseException:
            pins.cleanup([sck_pin])
            raise

    @property
    def read_timeout_s(self) -> float:
        """Return a ``read_counts`` timeout long enough for a first read or one after overruns.

        The slow case is a reselecting conversion, the settling time, a dropped unsettled
        conversion, ``samples`` kept ones and a couple of overrun ones (0.8 s for a first
        read at 10 SPS, 0.1 s more per overrun); half again covers a loaded Pi: 1.5 s at
        10 SPS with 3 samples.  A dead chip still fails after ``ready_timeout_s``.
        """
        worst_s = self.settling_s + (self.samples + 3) / self.rate_sps
        return max(0.5, round(1.5 * worst_s, 3))

    @property
    def channel(self) -> str:
        """Return the input channel selected by the gain ("A" or "B")."""
        return GAIN_CHANNEL[self.gain]

    def set_gain(self, gain: int) -> None:
        """Select 128/64 (channel A) or 32 (channel B) from the next reading on."""
        if gain not in GAIN_PULSES:
            raise HardwareConfigError(f"hx711 gain {gain!r} must be 128, 64 or 32")
        self.gain = gain

    # -- one conversion --------------------------------------------------------------

    def _pulse(self) -> int:
        """Clock one PD_SCK pulse; return how long it was high (upper bound, ns)."""
        t0 = perf_counter_ns(self.clock)
        self.pins.write(self.sck_pin, True)
        self.pins.write(self.sck_pin, False)
        return perf_counter_ns(self.clock) - t0

    def _wait_ready(self, deadline_s: float) -> None:
        """Poll DOUT until low (conversion ready); ScaleFault at the deadline."""
        limit_s = min(deadline_s, self.clock.monotonic() + self.ready_timeout_s)
        while self.pins.read(self.dout_pin):
            if self.clock.monotonic() >= limit_s:
                raise ScaleFault(
                    f"HX711 on GPIO {self.dout_pin}/{self.sck_pin}: no conversion ready in time "
                    "(DOUT stays high: check power, wiring, or PD_SCK stuck high)"
                )
            self.clock.sleep(self.poll_s)

    def _read_word(self, deadline_s: float) -> int:
        """Read one 24-bit word and send the gain pulses; raise _Overrun if any high phase overran."""
        self._wait_ready(deadline_s)
        self.stats.conversions += 1
        word, longest_ns = 0, 0
        for _ in range(24):
            longest_ns = max(longest_ns, self._pulse())
            word = (word << 1) | self.pins.read(self.dout_pin)
        for _ in range(GAIN_PULSES[self.gain]):
            longest_ns = max(longest_ns, self._pulse())
        if longest_ns > MAX_HIGH_NS:
            self.stats.overruns += 1
            self._selected = None  # it may have powered down and come back at A/128
            raise _Overrun
        if self._selected != self.gain:
            self._selected = self.gain
            self._settle_until_s = self.clock.monotonic() + self.settling_s
        return word

    def _select_and_settle(self, deadline_s: float) -> int:
        """Make sure the next conversion is the wanted, settled one; return conversions used."""
        used = 0
        if self._selected != self.gain:
            self.stats.selects += 1
            used += 1
            try:
                self._read_word(deadline_s)  # its pulses select; its own data is discarded
            except _Overrun:
                return used
        wait_s = self._settle_until_s - self.clock.monotonic()
        if wait_s > 0:
            if self.clock.monotonic() + wait_s > deadline_s:
                raise ScaleFault(
                    f"HX711 on GPIO {self.dout_pin}: cannot settle before the deadline"
                )
            self.clock.sleep(wait_s)
            if not self.pins.read(self.dout_pin):
                # this conversion finished before the settling time ended: drop it
                self.stats.unsettled += 1
                used += 1
                try:
                    self._read_word(deadline_s)
                except _Overrun:
                    # counted in stats.overruns, and _read_word cleared _selected: the
                    # next read_counts() re-selects the gain and settles again; this
                    # word was to be dropped anyway
                    return used
        return used

    # -- filtered reading -------------------------------------------------------------

    def read_counts(self, timeout_s: float = 5.0) -> int:
        """Return the median of ``samples`` accepted reads, in raw counts; ScaleFault if none."""
        deadline_s = self.clock.monotonic() + timeout_s
        if self._powered_down:
            self.power_up()  # asked to weigh: wake it (it then needs the settling time)
        window: deque[int] = deque(maxlen=self.samples)  # newest accepted reads
        attempts = 0
        while attempts < self.max_attempts:
            attempts += self._select_and_settle(deadline_s)
            if self._selected != self.gain or attempts >= self.max_attempts:
                continue
            attempts += 1
            try:
                word = self._read_word(deadline_s)
            except _Overrun:
                continue
            if not self._accept(word):
                continue
            window.append(to_signed(word))
            if len(window) == self.samples:
                result = self._agreed_median(window)
                if result is not None:
                    self.stats.kept += 1
                    return result
        raise ScaleFault(self._failure_text(attempts, len(window)))

    def _accept(self, word: int) -> bool:
        if word in SATURATION_CODES:
            self.stats.saturated += 1
            return False
        if is_spike(word):
            self.stats.spikes += 1
            return False
        return True

    def _agreed_median(self, window: deque[int]) -> int | None:
        """Return the window's median if a strict majority lies within ``outlier_counts`` of it."""
        middle = statistics.median_low(window)
        outliers = sum(1 for c in window if abs(c - middle) > self.outlier_counts)
        if 2 * (len(window) - outliers) <= len(window):
            return None  # scattered: a moving load or a noisy cable; read on (bounded)
        self.stats.outliers += outliers
        return middle

    def _failure_text(self, attempts: int, kept: int) -> str:
        s = self.stats
        return (
            f"HX711 on GPIO {self.dout_pin}/{self.sck_pin}: no {self.samples} agreeing reads "
            f"in {attempts} conversions ({kept} usable; totals: {s.overruns} overrun, {s.saturated} saturated "
            f"(overload or wiring), {s.spikes} spike, {s.outliers} outlier)"
        )

    # -- power ---------------------------------------------------------------------------

    def power_down(self) -> None:
        """Hold PD_SCK high past 60 us so the chip sleeps."""
        self.pins.write(self.sck_pin, False)
        self.pins.write(self.sck_pin, True)
        self.clock.sleep(2 * MAX_HIGH_NS / 1e9)  # make sure it is down before we return
        self._selected = None
        self._powered_down = True

    def power_up(self) -> None:
        """Take PD_SCK low: the chip wakes reset to A/128 and must settle."""
        self.pins.write(self.sck_pin, False)
        self._selected = None
        self._powered_down = False
        self._settle_until_s = self.clock.monotonic() + self.settling_s

    def close(self) -> None:
        """Power the chip down and release both pins."""
        try:
            self.power_down()
        finally:
            self.pins.cleanup([self.sck_pin, self.dout_pin])
