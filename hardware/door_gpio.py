"""A bin door on GPIO: a lock (or actuator) output and a closed sensor input.

Registry name ``gpio`` (``[[doors]] driver = "gpio"``).  Config keys:

``gpio``                 ``"rpi"`` (default) or ``"sim"``
``lock_pin``             BCM output to the relay / MOSFET of the lock or actuator
``sensor_pin``           BCM input from the closed sensor (reed or limit switch)
``kind``                 ``"solenoid"`` (default): energised = bolt released, the
                         resident pulls the door; ``"actuator"``: energised =
                         motor drives the door open, released = drives it shut
``active_low``           the relay closes on a LOW output (common relay boards)
``sensor_closed_level``  ``"low"`` (default: switch to GND, pull-up) or ``"high"``
``sensor_pull``          ``"up"``/``"down"``/``"off"`` (default follows the level)
``max_energise_s``       the output is never left energised longer: a timer
                         releases it (solenoid coils overheat); default 3 s for
                         a solenoid, 60 s for an actuator.  For an actuator that
                         release drives the door shut, supervised exactly as
                         ``lock()`` is (obstruction: stop, reopen, retry, then a
                         latched fault); it must exceed ``open_timeout_s`` and
                         ``reopen_s`` (one energised stretch of a normal move)
``open_timeout_s``       actuator: time to leave the closed sensor when opening
``close_timeout_s``      time for the sensor to read closed after ``lock()``
``retries``              actuator jam/obstruction: further attempts (stop, reopen,
                         try again) before a fault is latched
``reopen_s``             how long an obstructed actuator drives back open
``release_on_open``      solenoid: release the coil as soon as the door is seen open
``debounce_s``           a sensor state must hold this long to count

Fail-secure: the output is at its released (locked) level from construction,
after ``lock()``/``close()``, at interpreter exit (atexit) and after any
exception inside a door operation.  A latched fault refuses ``unlock()`` until
a technician calls ``reset_fault()``.  One movement at a time: ``unlock()``,
``lock()`` and an actuator's auto-close hold a motion lock, so a ``lock()``
that comes during an auto-close waits for it, then reports its outcome.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hardware import DoorFault, HardwareConfigError
from hardware.clock import SYSTEM_CLOCK, Clock, call_later
from hardware.gpio import Pins, resolve_pins

log = logging.getLogger("hardware.door")

KINDS = ("solenoid", "actuator")
DEFAULT_MAX_ENERGISE_S = {"solenoid": 3.0, "actuator": 60.0}


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise HardwareConfigError(f"door {name} {value!r} must be a number > 0")
    return float(value)


class GpioDoor:
    """A ``Door`` driven through ``Pins``."""

    def __init__(
        self,
        *,
        gpio: str = "rpi",
        lock_pin: int,
        sensor_pin: int,
        kind: str = "solenoid",
        active_low: bool = False,
        sensor_closed_level: str = "low",
        sensor_pull: str | None = None,
        max_energise_s: float | None = None,
        open_timeout_s: float = 5.0,
        close_timeout_s: float = 10.0,
        retries: int = 2,
        reopen_s: float = 1.0,
        release_on_open: bool = True,
        debounce_s: float = 0.05,
        poll_s: float = 0.01,
        name: str | None = None,
        pins: Pins | None = None,
        clock: Clock | None = None,
    ):
        if kind not in KINDS:
            raise HardwareConfigError(f"door kind {kind!r} must be one of {', '.join(KINDS)}")
        if sensor_closed_level not in ("low", "high"):
            raise HardwareConfigError(
                f"door sensor_closed_level {sensor_closed_level!r} must be 'low' or 'high'"
            )
        if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
            raise HardwareConfigError(f"door retries {retries!r} must be an integer 0-10")
        self.kind, self.active_low, self.retries = kind, bool(active_low), retries
        self.max_energise_s = _positive(
            "max_energise_s",
            DEFAULT_MAX_ENERGISE_S[kind] if max_energise_s is None else max_energise_s,
        )
        self.open_timeout_s = _positive("open_timeout_s", open_timeout_s)
        self.close_timeout_s = _positive("close_timeout_s", close_timeout_s)
        self.reopen_s = _positive("reopen_s", reopen_s)
        if kind == "actuator" and self.max_energise_s <= max(self.open_timeout_s, self.reopen_s):
            # the timer would cut an opening (or a reopen) short and close the door on it
            raise HardwareConfigError(
                f"door max_energise_s {self.max_energise_s:g} must exceed open_timeout_s "
                f"{self.open_timeout_s:g} and reopen_s {self.reopen_s:g} for an actuator"
            )
        self.poll_s = _positive("poll_s", poll_s)
        self.debounce_s = max(0.0, float(debounce_s))
        self.release_on_open = bool(release_on_open)
        self.lock_pin, self.sensor_pin = lock_pin, sensor_pin
        self.name = name or f"door@GPIO{lock_pin}"
        self._closed_level = sensor_closed_level == "high"
        self.clock = clock if clock is not None else SYSTEM_CLOCK
        self.pins = resolve_pins(gpio, pins)
        self._lock = threading.RLock()
        # one movement at a time: unlock(), lock() and an actuator's supervised auto-close
        self._motion = threading.RLock()
        self._energised = False
        self._generation = 0  # invalidates auto-release timers of earlier energisings
        self._released = False
        self.fault: str | None = None
        self.auto_releases = 0
        self.events: deque[tuple[float, str]] = deque(maxlen=256)
        self._setup_pins(sensor_pull or ("up" if sensor_closed_level == "low" else "down"))
        atexit.register(self._secure_at_exit)

    def _setup_pins(self, pull: str) -> None:
        # initial= puts the pin at the locked level the moment it becomes an output
        self.pins.setup_output(self.lock_pin, initial=self._level(False))
        try:
            self.pins.setup_input(self.sensor_pin, pull=pull)
        except BaseException:
            self.pins.cleanup([self.lock_pin])
            raise

    # -- output --------------------------------------------------------------------

    def _level(self, energised: bool) -> bool:
        return energised != self.active_low

    def _event(self, text: str) -> None:
        self.events.append((self.clock.monotonic(), text))

    def _set_output(self, energised: bool) -> None:
        with self._lock:
            self.pins.write(self.lock_pin, self._level(energised))
            self._energised = energised
            self._generation += 1
            generation = self._generation
        self._event("energise" if energised else "release")
        if energised:
            call_later(self.clock, self.max_energise_s, lambda: self._auto_release(generation))

    def _auto_release(self, generation: int) -> None:
        with self._lock:
            if not self._energised or generation != self._generation or self._released:
                return
            self.pins.write(self.lock_pin, self._level(False))
            self._energised = False
            self._generation += 1
            self.auto_releases += 1
        self._event("auto_release")
        log.warning("%s: output released after max_energise_s=%g s", self.name, self.max_energise_s)
        if self.kind == "actuator":
            self._auto_close()

    def _auto_close(self) -> None:
        """Supervise the close an actuator's auto-release started, as ``lock()`` would; never raise.

        It runs on the timer's thread (or, in virtual time, in the one advancing the
        clock): an obstruction is retried, then a fault is latched, which the next
        ``lock()``/``unlock()`` reports.
        """
        with self._motion:
            if self._released or self.fault is not None or self._energised:
                return  # closed driver, fault already latched, or a newer command took over
            self._event("auto_close")
            try:
                self._close_actuator()
            except DoorFault as exc:
                log.error("%s: auto-close after max_energise_s failed: %s", self.name, exc)
            except Exception:  # a timer thread must not die with the output live
                self._secure()
                log.exception("%s: auto-close after max_energise_s failed", self.name)

    def _secure(self) -> None:
        """Put the output at its locked level; never raises (it runs on the way out of errors)."""
        try:
            with self._lock:
                if not self._released:
                    self.pins.write(self.lock_pin, self._level(False))
                self._energised = False
                self._generation += 1
        except Exception:
            log.exception("%s: could not drive the lock output to its secure level", self.name)

    def _secure_at_exit(self) -> None:
        # The pin stays an output at the locked level after exit (no cleanup), so
        # the lock does not float while nothing drives it.
        self._secure()

    @contextmanager
    def _fail_secure(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self._secure()
            raise

    def _latch(self, reason: str) -> DoorFault:
        self._secure()
        self.fault = reason
        self._event(f"fault: {reason}")
        log.error("%s: fault latched: %s", self.name, reason)
        return DoorFault(f"{self.name}: {reason}; fault latched")

    def _check_usable(self) -> None:
        if self._released:
            raise DoorFault(f"{self.name}: door driver is closed")
        if self.fault is not None:
            raise DoorFault(
                f"{self.name}: fault latched ({self.fault}); reset_fault() after inspection"
            )

    # -- Door protocol --------------------------------------------------------------

    @property
    def energised(self) -> bool:
        """Return True while the lock/actuator output is energised."""
        return self._energised

    def is_closed(self) -> bool:
        """Return True while the sensor reads closed (a solenoid is released once the door is open)."""
        closed = self.pins.read(self.sensor_pin) == self._closed_level
        if not closed and self.kind == "solenoid" and self.release_on_open and self._energised:
            self._set_output(False)  # the bolt is clear; do not cook the coil
        return closed

    def wait_closed(self, closed: bool, timeout_s: float) -> bool:
        """Wait until the sensor reads ``closed`` for ``debounce_s``; return False on timeout."""
        with self._fail_secure():
            deadline_s = self.clock.monotonic() + max(0.0, timeout_s)
            since_s: float | None = None
            while True:
                state = self.is_closed()
                now_s = self.clock.monotonic()
                since_s = (since_s if since_s is not None else now_s) if state == closed else None
                if since_s is not None and now_s - since_s >= self.debounce_s:
                    return True
                if now_s >= deadline_s:
                    return state == closed
                self.clock.sleep(min(self.poll_s, deadline_s - now_s))

    def unlock(self) -> None:
        """Release the bolt (solenoid) or drive the door open (actuator); DoorFault if it fails."""
        with self._motion, self._fail_secure():
            self._check_usable()
            if not self.is_closed():
                raise DoorFault(
                    f"{self.name}: sensor reads open while locked (forced door or sensor fault)"
                )
            self._event("unlock")
            if self.kind == "solenoid":
                self._set_output(True)
                return
            self._open_actuator()

    def _open_actuator(self) -> None:
        for attempt in range(1, self.retries + 2):
            self._set_output(True)
            if self.wait_closed(False, self.open_timeout_s):
                return
            self._set_output(False)  # stop pushing against the jam before trying again
            self._event(f"open attempt {attempt} failed")
            if attempt <= self.retries:
                self.clock.sleep(self.reopen_s)
        raise self._latch(f"did not open after {self.retries + 1} attempts (jammed?)")

    def lock(self) -> None:
        """Secure the door: release the output, then confirm closed; DoorFault otherwise."""
        with self._motion, self._fail_secure():
            self._secure()  # first of all: whatever else fails, the output is at locked level
            self._check_usable()
            self._event("lock")
            if self.kind == "solenoid":
                if not self.wait_closed(True, self.close_timeout_s):
                    raise DoorFault(
                        f"{self.name}: still open {self.close_timeout_s:g} s after lock "
                        "(the bolt is out; the door is not shut)"
                    )
                return
            self._close_actuator()

    def _close_actuator(self) -> None:
        for attempt in range(1, self.retries + 2):
            self._set_output(False)
            if self.wait_closed(True, self.close_timeout_s):
                return
            self._event(f"close attempt {attempt} failed")
            if attempt <= self.retries:
                # obstruction: stop and reopen (EN 81 style) before trying again
                self._set_output(True)
                self.clock.sleep(self.reopen_s)
        raise self._latch(f"did not close after {self.retries + 1} attempts (obstruction or jam)")

    def reset_fault(self) -> None:
        """Clear a latched fault (a technician, after inspecting the door)."""
        with self._lock:
            self._secure()
            self._event("fault reset")
            self.fault = None

    def close(self) -> None:
        """Lock the output, release the pins, and stop watching for exit."""
        with self._lock:
            if self._released:
                return
            self._secure()
            self._released = True
        atexit.unregister(self._secure_at_exit)
        self.pins.cleanup([self.lock_pin, self.sensor_pin])
