"""Scale calibration for ``kiosk calibrate``: tare, then a known mass; written to calibration.toml.

Three paths, by what the scale driver offers:

* **load-cell helpers** (``hardware.loadcell.HX711Scale``): ``measure_offset()`` with the
  platform empty, then ``calibrate_with(known_g)``; the driver returns the exact values
  (``counts_per_g`` as a fraction string) to store.
* **raw counts** (a driver with ``read_counts()``, such as the fake scale): the median of a few
  raw readings empty and loaded gives ``offset_counts`` and ``counts_per_g``.
* **grams only** (a serial indicator that calibrates itself): ``zero()`` the platform, then
  check the known mass and report the error; nothing is written.

The file ``<state_dir>/calibration.toml`` holds one ``[scale]`` table that ``load_config``
merges over the config's ``[scale]`` table at the next start.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from hardware import ScaleFault

#: raw readings per median in the raw-counts path
READINGS = 5
#: a grams-only scale passes the check within this relative error
TOLERANCE = Fraction(1, 100)


@dataclass
class CalibrationResult:
    """What calibration found, and what (if anything) is to be written."""

    method: str
    values: dict
    message: str
    ok: bool = True


def _median_counts(scale, timeout_s: float) -> int:
    return int(statistics.median_low(scale.read_counts(timeout_s) for _ in range(READINGS)))


def calibrate_scale(
    scale, known_g: int, place_mass: Callable[[], None], *, timeout_s: float = 10.0
) -> CalibrationResult:
    """Tare ``scale``, call ``place_mass()`` (the technician puts the mass on), measure it."""
    if not isinstance(known_g, int) or known_g <= 0:
        raise ValueError("the known mass must be a positive integer of grams")
    if hasattr(scale, "measure_offset") and hasattr(scale, "calibrate_with"):
        scale.offset_counts = scale.measure_offset(timeout_s)
        place_mass()
        values = scale.calibrate_with(known_g, timeout_s)
        return CalibrationResult("load-cell", values, f"calibrated with {known_g} g: {values}")
    if hasattr(scale, "read_counts"):
        offset = _median_counts(scale, timeout_s)
        place_mass()
        span = _median_counts(scale, timeout_s) - offset
        if span == 0:
            raise ScaleFault(
                f"the {known_g} g mass did not move the reading: is it on the platform?"
            )
        # a float is what a counts driver such as the fake scale takes; 6 digits is far below noise
        values = {"offset_counts": offset, "counts_per_g": round(span / known_g, 6)}
        return CalibrationResult("raw-counts", values, f"calibrated with {known_g} g: {values}")
    scale.zero()
    place_mass()
    reading_g = scale.read(timeout_s).grams
    error = Fraction(reading_g - known_g, known_g)
    ok = abs(error) <= TOLERANCE
    message = (
        f"this scale calibrates itself; zeroed, it reads {reading_g} g for {known_g} g "
        f"({float(error) * 100:+.2f} %): {'within' if ok else 'OUTSIDE'} {float(TOLERANCE) * 100:g} %"
    )
    return CalibrationResult("check-only", {}, message, ok=ok)


def write_calibration(path: str | Path, values: dict) -> Path:
    """Write ``values`` as the ``[scale]`` table of ``calibration.toml`` (atomically)."""
    path = Path(path)
    lines = [
        "# written by `kiosk calibrate`; merged over [scale] in the kiosk config",
        "[scale]",
    ]
    for key, value in values.items():
        lines.append(f"{key} = {_toml_value(value)}")
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
