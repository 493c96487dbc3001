"""Pure parsers for the lines serial weighing indicators send.

Two families (see ``/work/shared/HARDWARE.md``):

* continuous frames, ``ST,GS,+ 12.345kg``: status ST (stable) / US
  (unstable) / OL (overload), kind GS (gross) / NT (net), sign, value, unit.
  Vendors vary commas and spaces, so the parser is tolerant; an MCU next to an
  HX711 may also stream a bare number (``1234`` or ``1234 g``).
* Mettler Toledo MT-SICS replies: ``S S  100.00 g``, ``S D ...``, ``S I``,
  ``S +``, ``S -``, ``Z A``, ``Z I``, ``Z +``, ``Z -``, and ``ES``/``ET``/``EL``.

Values become integer grams with ``decimal.Decimal`` so that ``1.005 kg`` is
exactly 1005 g (in floats it is 1004.999..., which truncates to 1004).  Sub-gram values round half
to even.  Every malformed input raises :class:`FrameError` and nothing else,
which the property tests check on random bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

#: exact grams per unit; 1 lb = 0.45359237 kg by definition (1959 agreement)
GRAMS_PER_UNIT: dict[str, Decimal] = {
    "mg": Decimal("0.001"),
    "g": Decimal(1),
    "kg": Decimal(1000),
    "lb": Decimal("453.59237"),
    "oz": Decimal("28.349523125"),
}
_UNIT_ALIASES = {"lbs": "lb", "gr": "g"}
#: a frame longer than this is garbage (real frames are ~20 characters)
MAX_FRAME_LEN = 64
#: limit on digits so a hostile line cannot make Decimal work hard
_NUMBER = r"(?:\d{1,12}(?:\.\d{0,9})?|\.\d{1,9})"

_CONTINUOUS_RE = re.compile(
    rf"""
    (?P<status>ST|US)
    [\s,;:]*
    (?:(?P<kind>GS|NT|TR|G|N)(?![A-Z])[\s,;:]*)?
    (?P<sign>[+-])?\s*
    (?P<value>{_NUMBER})
    \s*(?P<unit>[A-Za-z]{{1,3}})?
    """,
    re.IGNORECASE | re.VERBOSE,
)
_OVERLOAD_RE = re.compile(r"OL(?:[\s,;:].*|)", re.IGNORECASE | re.DOTALL)
_BARE_RE = re.compile(rf"(?P<sign>[+-])?\s*(?P<value>{_NUMBER})\s*(?P<unit>[A-Za-z]{{1,3}})?")
_SICS_WEIGHT_RE = re.compile(
    rf"S\s+(?P<status>[SD])\s+(?P<sign>[+-])?\s*(?P<value>{_NUMBER})\s*(?P<unit>[A-Za-z]{{1,3}})?"
)
_SICS_STATUS_RE = re.compile(r"(?P<command>S|SI|Z)\s+(?P<status>[I+\-A])")
SICS_ERRORS = {
    "ES": "syntax error (command not recognised)",
    "ET": "transmission error (parity or break)",
    "EL": "logical error (command cannot be executed)",
}


class FrameError(ValueError):
    """A line that is not a frame this parser understands."""


@dataclass(frozen=True, slots=True)
class ContinuousFrame:
    """One continuous-output frame.  ``grams`` is None only on overload."""

    #: "ST" stable, "US" unstable, "OL" overload, "" for a bare number (no flag)
    status: str
    #: "GS" gross, "NT" net, "TR" tare, or "" when the frame does not say
    kind: str
    grams: int | None

    @property
    def stable(self) -> bool | None:
        """Return the instrument's stability flag, None when it sent none."""
        return {"ST": True, "US": False}.get(self.status)


@dataclass(frozen=True, slots=True)
class SicsReply:
    """One MT-SICS reply line.

    ``status`` is "S" stable, "D" dynamic, "I" busy / not executed,
    "+" overload (or above the zero range), "-" underload, "A" done, or for an
    error line the error code itself ("ES", "ET", "EL").
    """

    command: str
    status: str
    grams: int | None = None

    @property
    def is_error(self) -> bool:
        """Return True for ES/ET/EL."""
        return self.command in SICS_ERRORS


def to_grams(sign: str | None, value: str, unit: str | None, default_unit: str | None) -> int:
    """Convert a signed decimal value in ``unit`` to integer grams, exactly."""
    name = (unit or default_unit or "").lower()
    name = _UNIT_ALIASES.get(name, name)
    if not name:
        raise FrameError("frame has no unit and no default unit is configured")
    factor = GRAMS_PER_UNIT.get(name)
    if factor is None:
        raise FrameError(f"unsupported unit {unit!r}")
    try:
        amount = Decimal(value) * factor
    except InvalidOperation:
        raise FrameError(f"bad number {value!r}") from None
    grams = int(amount.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return -grams if sign == "-" else grams


def _clean(line: str | bytes) -> str:
    """Decode and strip a line; raise FrameError if it cannot be a frame."""
    if isinstance(line, bytes):
        try:
            line = line.decode("ascii")
        except UnicodeDecodeError:
            raise FrameError("frame is not ASCII") from None
    if not isinstance(line, str):
        raise FrameError(f"frame is a {type(line).__name__}, not text")
    # NULs and STX/ETX wrappers appear on some indicators; CR/LF are framing
    text = line.strip(" \t\r\n\x00\x02\x03")
    if not text:
        raise FrameError("empty frame")
    if len(text) > MAX_FRAME_LEN:
        raise FrameError(f"frame longer than {MAX_FRAME_LEN} characters")
    if not text.isascii() or not text.replace("\t", " ").isprintable():
        raise FrameError("frame holds non-printable characters")
    return text


def parse_continuous(line: str | bytes, default_unit: str | None = None) -> ContinuousFrame:
    """Parse one continuous frame (or a bare MCU number); raise FrameError."""
    text = _clean(line)
    if _OVERLOAD_RE.fullmatch(text):
        return ContinuousFrame("OL", "", None)
    match = _CONTINUOUS_RE.fullmatch(text)
    if match:
        status = match["status"].upper()
        kind = (match["kind"] or "").upper()
        kind = {"G": "GS", "N": "NT"}.get(kind, kind)
    else:
        match = _BARE_RE.fullmatch(text)
        if not match:
            raise FrameError(f"not a weight frame: {text!r}")
        status, kind = "", ""
    grams = to_grams(match["sign"], match["value"], match["unit"], default_unit)
    return ContinuousFrame(status, kind, grams)


def parse_sics(line: str | bytes) -> SicsReply:
    """Parse one MT-SICS reply line; raise FrameError."""
    text = _clean(line)
    if text in SICS_ERRORS:
        return SicsReply(text, text)
    match = _SICS_WEIGHT_RE.fullmatch(text)
    if match:
        grams = to_grams(match["sign"], match["value"], match["unit"], None)
        return SicsReply("S", match["status"], grams)
    match = _SICS_STATUS_RE.fullmatch(text)
    if match:
        command = "S" if match["command"] == "SI" else match["command"]
        if command == "S" and match["status"] == "A":
            raise FrameError(f"not an MT-SICS weight reply: {text!r}")
        return SicsReply(command, match["status"])
    raise FrameError(f"not an MT-SICS reply: {text!r}")


def format_continuous(grams: int, *, status: str = "ST", kind: str = "GS", unit: str = "kg") -> str:
    """Format grams as a continuous frame such as ``ST,GS,+ 12.345kg``."""
    sign = "-" if grams < 0 else "+"
    if status == "OL":
        return f"OL,{kind},+ --.---{unit}"
    value = _format_value(abs(grams), unit)
    return f"{status},{kind},{sign}{value:>8}{unit}"


def format_sics_weight(grams: int, *, stable: bool = True, unit: str = "g") -> str:
    """Format grams as an MT-SICS weight reply such as ``S S     100.00 g``."""
    sign = "-" if grams < 0 else ""
    value = _format_value(abs(grams), unit)
    return f"S {'S' if stable else 'D'} {sign + value:>10} {unit}"


def _format_value(abs_grams: int, unit: str) -> str:
    """Return ``abs_grams`` in ``unit`` with as many decimals as it needs."""
    if unit == "kg":
        return f"{Decimal(abs_grams) / 1000:.3f}"
    if unit == "g":
        return f"{abs_grams}.00"
    raise ValueError(f"cannot format in unit {unit!r}")
