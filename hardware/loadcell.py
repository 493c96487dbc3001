"""The load-cell layer over the HX711 chip driver: tare, counts-per-gram, integer grams.

Registry name ``hx711`` (``[scale] driver = "hx711"``).  Config keys, passed
as constructor keywords:

``gpio``            ``"rpi"`` (default) or ``"sim"``
``dout_pin``        BCM pin wired to HX711 DOUT
``sck_pin``         BCM pin wired to HX711 PD_SCK
``gain``            128 (default) or 64 on channel A, 32 on channel B
``rate_sps``        10 (default) or 80: how the board's RATE pin is wired
``offset_counts``   raw counts with the platform empty (``measure_offset``)
``counts_per_g``    counts per gram, exact: an int, or a string holding a
                    decimal ``"21.4735"`` or a fraction ``"429470/20000"`` as
                    ``calibrate_with`` writes it; may be negative (a load cell
                    wired the other way round).  Unset: uncalibrated, ``read``
                    raises ScaleFault until calibrated.
``samples``         reads per median (>= 3, default 3)
``outlier_g``       a read further than this from the median is an outlier
                    (default 2000 g; converted to counts)
``ready_timeout_s`` longest wait for one conversion (default 4 periods)

Grams are ``round((counts - offset_counts) / counts_per_g)``, computed with
``fractions.Fraction`` so no float ever touches a weight.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from hardware import HardwareConfigError, ScaleFault
from hardware.clock import SYSTEM_CLOCK, Clock
from hardware.gpio import Pins, resolve_pins
from hardware.hx711 import HX711
from hardware.interfaces import WeightSample

#: a calibration mass must move the reading by at least this many counts
MIN_SPAN_COUNTS = 1_000


def parse_counts_per_g(value: Any) -> Fraction | None:
    """Return ``counts_per_g`` as an exact Fraction (None stays None: uncalibrated)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise HardwareConfigError(f"counts_per_g {value!r} is not a number")
    try:
        ratio = Fraction(str(value).strip()) if not isinstance(value, int) else Fraction(value)
    except (ValueError, ZeroDivisionError) as exc:
        raise HardwareConfigError(
            f"counts_per_g {value!r} is not a number or fraction: {exc}"
        ) from None
    if ratio == 0:
        raise HardwareConfigError("counts_per_g must not be 0")
    return ratio


def format_counts_per_g(ratio: Fraction) -> str:
    """Return the config text for a ratio: ``"N"`` or ``"N/D"`` (exact, reloads unchanged)."""
    return str(ratio)


class HX711Scale:
    """A ``Scale`` made of an HX711 and its load cell(s)."""

    def __init__(
        self,
        *,
        gpio: str = "rpi",
        dout_pin: int,
        sck_pin: int,
        gain: int = 128,
        rate_sps: int = 10,
        offset_counts: int = 0,
        counts_per_g: int | str | None = None,
        samples: int = 3,
        outlier_g: int = 2_000,
        ready_timeout_s: float | None = None,
        pins: Pins | None = None,
        clock: Clock | None = None,
    ):
        if not isinstance(offset_counts, int) or isinstance(offset_counts, bool):
            raise HardwareConfigError(f"offset_counts {offset_counts!r} must be an integer")
        if not isinstance(outlier_g, int) or outlier_g <= 0:
            raise HardwareConfigError(f"outlier_g {outlier_g!r} must be a positive integer")
        self.offset_counts = offset_counts
        self.counts_per_g = parse_counts_per_g(counts_per_g)
        self.outlier_g = outlier_g
        self.clock = clock if clock is not None else SYSTEM_CLOCK
        self.chip = HX711(
            resolve_pins(gpio, pins),
            dout_pin,
            sck_pin,
            gain=gain,
            rate_sps=rate_sps,
            samples=samples,
            outlier_counts=self._outlier_counts(),
            ready_timeout_s=ready_timeout_s,
            clock=self.clock,
        )
        self._closed = False

    def _outlier_counts(self) -> int:
        if self.counts_per_g is None:
            return 20_000  # uncalibrated: a generous band in counts
        return max(1, round(abs(self.outlier_g * self.counts_per_g)))

    # -- Scale protocol -------------------------------------------------------------

    @property
    def read_timeout_s(self) -> float:
        """Return how long a caller should let ``read`` take (the chip's worst case, see HX711)."""
        return self.chip.read_timeout_s

    def read(self, timeout_s: float) -> WeightSample:
        """Return one filtered sample in integer grams (``stable`` is None: no instrument flag)."""
        if self.counts_per_g is None:
            raise ScaleFault("scale not calibrated: set counts_per_g (run `kiosk calibrate`)")
        counts = self._counts(timeout_s)
        return WeightSample(
            grams=self.grams_from_counts(counts), stable=None, at_s=self.clock.monotonic()
        )

    def zero(self) -> None:
        """Tare: take the current raw reading as the new offset (call only while stable)."""
        self.offset_counts = self.measure_offset()

    def close(self) -> None:
        """Power the HX711 down and release its pins."""
        if not self._closed:
            self._closed = True
            self.chip.close()

    # -- conversions and calibration ----------------------------------------------------

    def grams_from_counts(self, counts: int) -> int:
        """Return integer grams for a raw reading under the current calibration."""
        if self.counts_per_g is None:
            raise ScaleFault("scale not calibrated")
        return round(Fraction(counts - self.offset_counts) / self.counts_per_g)

    def _counts(self, timeout_s: float) -> int:
        if self._closed:
            raise ScaleFault("scale is closed")
        return self.chip.read_counts(timeout_s)

    def measure_offset(self, timeout_s: float = 10.0) -> int:
        """Return the median raw counts now (platform empty: this is the offset)."""
        return self._counts(timeout_s)

    def calibrate_with(self, known_mass_g: int, timeout_s: float = 10.0) -> dict[str, int | str]:
        """Read ``known_mass_g`` on the platform; apply and return the new calibration values.

        Call ``measure_offset()`` (or ``zero()``) with the platform empty first; the
        offset kept is ``self.offset_counts``.  Returns the config keys to store:
        ``{"offset_counts": int, "counts_per_g": "N/D"}``.
        """
        if not isinstance(known_mass_g, int) or isinstance(known_mass_g, bool) or known_mass_g <= 0:
            raise HardwareConfigError(
                f"known mass {known_mass_g!r} must be a positive integer of grams"
            )
        span = self._counts(timeout_s) - self.offset_counts
        if abs(span) < MIN_SPAN_COUNTS:
            raise ScaleFault(
                f"the {known_mass_g} g mass moved the reading by only {span} counts: "
                "is it on the platform, and is the load cell wired?"
            )
        self.counts_per_g = Fraction(span, known_mass_g)
        self.chip.outlier_counts = self._outlier_counts()
        return {
            "offset_counts": self.offset_counts,
            "counts_per_g": format_counts_per_g(self.counts_per_g),
        }

    def calibration(self) -> dict[str, int | str | None]:
        """Return the current calibration as config values."""
        ratio = self.counts_per_g
        return {
            "offset_counts": self.offset_counts,
            "counts_per_g": None if ratio is None else format_counts_per_g(ratio),
        }
