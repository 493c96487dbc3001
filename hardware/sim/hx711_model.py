"""A bit-level HX711 on the simulated GPIO header (datasheet pp. 4-5, see /work/shared/HARDWARE.md).

What it models, so the real driver can be tested against it:

* DOUT is high while no conversion is ready; conversions complete every
  1/rate (10 or 80 SPS) on the clock, and a newer one replaces an unread one.
* A read starts on the first rising PD_SCK edge while DOUT is low; each rising
  edge shifts out one of 24 bits, MSB first, two's complement; pulses 25-27
  set DOUT high and select channel/gain for the NEXT conversions
  (25 = A/128, 26 = B/32, 27 = A/64).  Any other count is a communication
  error (counted, selection unchanged).
* PD_SCK high for more than 60 us powers the chip down (DOUT high); taking it
  low powers it up reset to A/128.  After power-up, reset or a channel/gain
  change, conversions inside the settling time (400 ms at 10 SPS, 50 ms at
  80 SPS) are wrong by ``unsettled_error_counts``.
* The load: ``set_load_g(grams)`` gives channel A/128 counts of
  ``offset_counts + grams * counts_per_g`` (halved at gain 64, both being
  input-referred); channel B returns ``channel_b_counts``.  Values clip to the
  saturation codes 0x7FFFFF / 0x800000.
* Faults: Gaussian ``noise_counts``; spikes (0 or 2^n-1 codes) in a fraction of
  reads or queued exactly; forced saturation; overruns, where the model itself
  stalls the clock for ``overrun_s`` while PD_SCK is high (as a preempted
  driver process would), so the driver's own timing sees the overrun and the
  chip really powers down mid-read.
"""

from __future__ import annotations

import random
from collections import deque
from fractions import Fraction
from typing import Any

from hardware.clock import Clock, perf_counter_ns

POWER_DOWN_NS = 60_000
SELECTION_BY_PULSES = {25: ("A", 128), 26: ("B", 32), 27: ("A", 64)}
SATURATION_HIGH = 0x7FFFFF
SATURATION_LOW = 0x800000
_MIN, _MAX = -(1 << 23), (1 << 23) - 1


def settling_s(rate_sps: int) -> float:
    """Return the datasheet settling time for a data rate."""
    return 0.4 if rate_sps == 10 else 0.05


class HX711Model:
    """One simulated HX711 with its load cell; attach with ``board.attach(model)``."""

    def __init__(
        self,
        dout_pin: int,
        sck_pin: int,
        *,
        rate_sps: int = 10,
        offset_counts: int = 0,
        counts_per_g: Fraction | int | str = 1,
        load_g: int = 0,
        channel_b_counts: int = 0,
        noise_counts: float = 0.0,
        spike_fraction: float = 0.0,
        overrun_fraction: float = 0.0,
        overrun_s: float = 100e-6,
        unsettled_error_counts: int = 50_000,
        seed: int = 0,
    ):
        if rate_sps not in (10, 80):
            raise ValueError("HX711 rate is 10 or 80 SPS")
        self.dout_pin, self.sck_pin = dout_pin, sck_pin
        self.rate_sps = rate_sps
        self.period_ns = 1_000_000_000 // rate_sps
        self.settling_ns = round(settling_s(rate_sps) * 1e9)
        self.offset_counts = offset_counts
        self.counts_per_g = Fraction(counts_per_g)
        self.load_g = load_g
        self.channel_b_counts = channel_b_counts
        self.noise_counts = noise_counts
        self.spike_fraction = spike_fraction
        self.overrun_fraction = overrun_fraction
        self.overrun_s = overrun_s
        self.unsettled_error_counts = unsettled_error_counts
        self.saturation: str | None = None  # "high" / "low": every conversion saturates
        self._rng = random.Random(seed)
        self._spikes: deque[int] = deque()
        self._overruns: deque[int] = deque()
        self.clock: Clock | None = None
        self.board: Any = None
        # chip state
        self.selection = ("A", 128)
        self._anchor_ns = 0
        self._settle_until_ns = 0
        self._consumed_k = 0
        self._in_read = False
        self._pulses = 0
        self._word = 0
        self._prepared: tuple[int, int] | None = None  # (k, word) computed before the read
        self._overrun_at = 0
        self._last_pulse_ns = 0
        self._sck_high = False
        self._rise_ns = 0
        # what a test asserts on
        self.pulse_log: list[int] = []  # pulse count of each finished read
        self.words_sent: list[int] = []  # 24-bit word latched by each read
        self.comm_errors = 0
        self.stray_pulses = 0
        self.power_downs = 0
        self.power_ups = 0

    # -- wiring ------------------------------------------------------------------

    def attach(self, board: Any) -> None:
        """Wire DOUT and PD_SCK to ``board`` and power up on its clock."""
        self.board, self.clock = board, board.clock
        board.set_input_source(self.dout_pin, self._dout_level)
        board.watch_output(self.sck_pin, self._on_sck)
        self._power_up(self._now())

    def _now(self) -> int:
        return perf_counter_ns(self.clock)

    # -- test handles --------------------------------------------------------------

    def set_load_g(self, grams: int) -> None:
        """Put ``grams`` on the platform (takes effect from the next conversion)."""
        self.load_g = grams

    def inject_spikes(self, *words: int) -> None:
        """Make the next conversions read exactly these 24-bit codes."""
        self._spikes.extend(w & 0xFFFFFF for w in words)

    def inject_overrun(self, pulse: int = 12, reads: int = 1) -> None:
        """Stall PD_SCK high past 60 us at ``pulse`` (1-27) of each of the next ``reads`` reads."""
        self._overruns.extend([pulse] * reads)

    def saturate(self, side: str | None) -> None:
        """Force every conversion to saturate ("high", "low"), or stop (None)."""
        if side not in (None, "high", "low"):
            raise ValueError("saturate('high' | 'low' | None)")
        self.saturation = side

    @property
    def powered_down(self) -> bool:
        """Return True while PD_SCK has been high for more than 60 us."""
        return self._sck_high and self._now() - self._rise_ns > POWER_DOWN_NS

    def expected_counts(self, channel: str = "A", gain: int = 128) -> int:
        """Return the settled, noise-free reading the model gives for the current load."""
        if channel == "B":
            return self.channel_b_counts
        return round((self.offset_counts + self.load_g * self.counts_per_g) * gain / 128)

    # -- pins ----------------------------------------------------------------------

    def _latest_k(self, now: int) -> int:
        return (now - self._anchor_ns) // self.period_ns

    def _ready(self, now: int) -> bool:
        return self._latest_k(now) > self._consumed_k

    def _dout_level(self) -> int:
        now = self._now()
        if self._sck_high and now - self._rise_ns > POWER_DOWN_NS:
            return 1  # powered down
        self._maybe_finish_read(now)
        if self._in_read:
            if 1 <= self._pulses <= 24:
                return (self._word >> (24 - self._pulses)) & 1
            return 1  # pulse 25 pulled DOUT back high
        if not self._ready(now):
            return 1
        self._prepare(self._latest_k(now))
        return 0

    def _prepare(self, k: int) -> int:
        # Computed while the driver polls DOUT, not inside the first clock-high
        # phase, so the model's own work does not eat into the 60 us budget.
        if self._prepared is None or self._prepared[0] != k:
            self._prepared = (k, self._conversion_word(self._anchor_ns + k * self.period_ns))
        return self._prepared[1]

    def _on_sck(self, level: int | None) -> None:
        now = self._now()
        if level:
            if not self._sck_high:
                self._sck_high, self._rise_ns = True, now
                self._rising_edge(now)
            return
        if not self._sck_high:
            return
        self._sck_high = False
        if now - self._rise_ns > POWER_DOWN_NS:
            # It went down while high; going low now powers it up, reset to A/128.
            self.power_downs += 1
            self._abort_read()
            self._power_up(now)

    def _rising_edge(self, now: int) -> None:
        self._maybe_finish_read(now)
        if not self._in_read:
            if not self._ready(now):
                self.stray_pulses += 1
                return
            self._start_read(now)
        self._pulses += 1
        self._last_pulse_ns = now
        if self._pulses == self._overrun_at:
            self.clock.sleep(self.overrun_s)  # the driver is "preempted" with PD_SCK high

    # -- reads ---------------------------------------------------------------------

    def _start_read(self, now: int) -> None:
        k = self._latest_k(now)
        self._consumed_k = k
        self._in_read, self._pulses = True, 0
        self._word = self._prepare(k)
        self.words_sent.append(self._word)
        if self._overruns:
            self._overrun_at = self._overruns.popleft()
        elif self.overrun_fraction and self._rng.random() < self.overrun_fraction:
            self._overrun_at = self._rng.randint(1, 25)
        else:
            self._overrun_at = 0

    def _maybe_finish_read(self, now: int) -> None:
        """Close the read in progress once a newer conversion is ready (its pulse count is final)."""
        if not self._in_read or not self._ready(now):
            return
        self._in_read = False
        self.pulse_log.append(self._pulses)
        selection = SELECTION_BY_PULSES.get(self._pulses)
        if selection is None:
            self.comm_errors += 1
            return
        if selection != self.selection:
            self.selection = selection
            self._settle_until_ns = self._last_pulse_ns + self.settling_ns

    def _abort_read(self) -> None:
        if self._in_read:
            self.pulse_log.append(self._pulses)
            self.comm_errors += 1
        self._in_read = False

    def _power_up(self, now: int) -> None:
        self.power_ups += 1
        self.selection = ("A", 128)
        self._anchor_ns = now
        self._settle_until_ns = now + self.settling_ns
        self._consumed_k = 0
        self._in_read = False
        self._prepared = None

    @property
    def pulse_counts(self) -> list[int]:
        """Return the pulse count of every read so far, including one still in progress."""
        return self.pulse_log + ([self._pulses] if self._in_read else [])

    def _conversion_word(self, ready_ns: int) -> int:
        if self.saturation == "high":
            return SATURATION_HIGH
        if self.saturation == "low":
            return SATURATION_LOW
        if self._spikes:
            return self._spikes.popleft()
        if self.spike_fraction and self._rng.random() < self.spike_fraction:
            return self._rng.choice([0, (1 << self._rng.randint(1, 24)) - 1])
        value = self.expected_counts(*self.selection)
        if self.noise_counts:
            value += round(self._rng.gauss(0.0, self.noise_counts))
        if ready_ns < self._settle_until_ns:
            value += self.unsettled_error_counts
        return max(_MIN, min(_MAX, value)) & 0xFFFFFF
