"""The Protocols the kiosk programs against.  Every driver and fake fits one.

Units are last in names and integer where they can be: grams are ``int``,
durations are seconds as ``float`` with an ``_s`` suffix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class WeightSample:
    """One filtered reading of a scale."""

    grams: int
    #: the instrument's own stability flag where it has one (ST/US, MT-SICS S/SI),
    #: else None; the kiosk still runs its own stable-weight detector.
    stable: bool | None
    #: time.monotonic() when the sample was taken
    at_s: float


@runtime_checkable
class QrReader(Protocol):
    """A source of scanned label payloads."""

    def read(self, timeout_s: float) -> str | None:
        """Return the next decoded payload, or None if none came in time."""
        ...

    def close(self) -> None:
        """Release the device."""
        ...


@runtime_checkable
class Scale(Protocol):
    """A weighing platform under one bin (or shared by all).

    A driver whose reads can take long (an HX711 at 10 SPS needs about 0.8 s for a first
    reading) may also have a ``read_timeout_s`` attribute: the ``read`` timeout its callers
    should use.  It is optional (not part of the Protocol check); without it the kiosk
    uses ``kiosk.monitors.DEFAULT_SCALE_READ_TIMEOUT_S``.
    """

    def read(self, timeout_s: float) -> WeightSample:
        """Return the next sample; raise ScaleFault if none comes in time."""
        ...

    def zero(self) -> None:
        """Set the current load as zero (only call while stable)."""
        ...

    def close(self) -> None:
        """Release the device."""
        ...


@runtime_checkable
class Door(Protocol):
    """A bin door: a lock (or actuator) output and a closed sensor.

    A door is locked (fail-secure) after construction, after ``close()`` and
    after any fault.
    """

    def unlock(self) -> None:
        """Release the lock (or drive the door open); raise DoorFault if it fails."""
        ...

    def lock(self) -> None:
        """Secure the door; raise DoorFault after bounded retries on a jam."""
        ...

    def is_closed(self) -> bool:
        """Return True while the closed sensor reports the door shut."""
        ...

    def wait_closed(self, closed: bool, timeout_s: float) -> bool:
        """Wait until the sensor reads ``closed``; return False on timeout."""
        ...

    def close(self) -> None:
        """Lock the door and release its pins."""
        ...


@runtime_checkable
class Indicator(Protocol):
    """A status light and buzzer."""

    def show(self, state: str) -> None:
        """Show one of: "idle", "busy", "ok", "error", "off"."""
        ...

    def beep(self, pattern: str = "short") -> None:
        """Sound "short", "long" or "error"."""
        ...

    def close(self) -> None:
        """Turn everything off and release the pins."""
        ...
