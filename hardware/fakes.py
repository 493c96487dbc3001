"""Fakes of every ``hardware.interfaces`` Protocol, with handles a test can drive.

Each fake behaves like the real part at the level the kiosk sees it (a scale
that swings while a bag lands, a door that jams, a scanner that gets
unplugged) and takes an injectable clock (``hardware.clock``):

* ``SYSTEM_CLOCK`` (the default): real time and real sleeps; the handles may
  be driven from another thread (the terminal simulator).
* ``FakeClock`` (a ``VirtualClock``): virtual time that only moves when
  something sleeps or waits, so a scripted session replays identically and
  instantly.  ``schedule()`` runs a callback at a virtual time ("the resident
  closes the door 3 s later"); a fake waiting on a condition steps through
  those callbacks.

Registry names (``hardware.registry``): ``fake`` for every kind, ``none`` for
the indicator.  Every constructor keyword that is a plain value is also a
config option of the ``fake`` driver.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Callable
from fractions import Fraction

from hardware import DoorFault, HardwareConfigError, ScaleFault, ScannerFault
from hardware.clock import DEFAULT_WALL_START_S, SYSTEM_CLOCK, Clock, VirtualClock, wait_for
from hardware.interfaces import WeightSample
from hardware.loadcell import parse_counts_per_g

# -- clock --------------------------------------------------------------------


class FakeClock(VirtualClock):
    """A ``VirtualClock`` that reads wall time ``start`` at monotonic ``monotonic_start``."""

    def __init__(self, start: float = DEFAULT_WALL_START_S, monotonic_start: float = 1_000.0):
        super().__init__(monotonic_start, wall_start_s=start)


class _Fake:
    """Shared plumbing: the clock and a condition that handles notify."""

    def __init__(self, clock: Clock | None):
        self.clock = clock if clock is not None else SYSTEM_CLOCK
        self._cond = threading.Condition(threading.RLock())

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        return wait_for(self.clock, predicate, timeout_s, self._cond)


# -- scanner ------------------------------------------------------------------


class FakeQrReader(_Fake):
    """A scanner fed by ``present(payload)``; ``unplug()`` makes reads fail."""

    def __init__(self, *, max_queue: int = 16, clock: Clock | None = None):
        super().__init__(clock)
        if max_queue < 1:
            raise HardwareConfigError("max_queue must be at least 1")
        # a real scanner's buffer is small: the oldest scans fall out first
        self._queue: deque[str] = deque(maxlen=max_queue)
        self._plugged = True
        self._closed = False
        self.reads = 0

    def present(self, payload: str) -> None:
        """Queue one scan, as if a label were held under the scanner."""
        with self._cond:
            self._queue.append(payload)
            self._cond.notify_all()

    def unplug(self) -> None:
        """Disconnect the scanner: reads raise ScannerFault until ``replug()``."""
        with self._cond:
            self._plugged = False
            self._queue.clear()
            self._cond.notify_all()

    def replug(self) -> None:
        """Reconnect the scanner."""
        with self._cond:
            self._plugged = True
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        """Return how many scans are queued."""
        return len(self._queue)

    def read(self, timeout_s: float) -> str | None:
        """Return the next queued payload, or None if none came within ``timeout_s``."""
        self._check()
        self._wait_for(lambda: bool(self._queue) or not self._plugged or self._closed, timeout_s)
        with self._cond:
            self._check()
            self.reads += 1
            return self._queue.popleft() if self._queue else None

    def _check(self) -> None:
        if self._closed:
            raise ScannerFault("scanner is closed")
        if not self._plugged:
            raise ScannerFault("scanner unplugged")

    def close(self) -> None:
        """Release the (fake) device."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


# -- scale --------------------------------------------------------------------


class FakeScale(_Fake):
    """A load cell under the bins, driven by ``place``/``remove``.

    After every load change the reading swings by ``motion_g`` (or half the
    change, if larger), alternating sign sample to sample, for ``settle_s``;
    then it is steady within the noise band.  Samples come at ``rate_hz``.

    Raw counts (``read_counts``) follow ``raw_offset_counts`` and
    ``raw_counts_per_g``; grams are derived from them with the calibration
    (``offset_counts``, ``counts_per_g``) when one is given, else exactly.
    """

    def __init__(
        self,
        *,
        settle_s: float = 0.5,
        rate_hz: float = 10.0,
        noise_g: int = 0,
        motion_g: int = 200,
        capacity_g: int = 150_000,
        initial_g: int = 0,
        reports_stable: bool = False,
        seed: int = 0,
        raw_offset_counts: int = 8_000,
        raw_counts_per_g: float = 420.0,
        offset_counts: int | None = None,
        counts_per_g: int | str | float | None = None,
        clock: Clock | None = None,
    ):
        super().__init__(clock)
        if rate_hz <= 0 or settle_s < 0 or noise_g < 0 or motion_g < 0 or capacity_g <= 0:
            raise HardwareConfigError("fake scale: rate_hz, capacity_g > 0; others >= 0")
        if (offset_counts is None) != (counts_per_g is None):
            raise HardwareConfigError("fake scale: give offset_counts and counts_per_g together")
        self.settle_s = settle_s
        self.interval_s = 1.0 / rate_hz
        self.motion_g = motion_g
        self.capacity_g = capacity_g
        self.reports_stable = reports_stable
        self.raw_offset_counts = raw_offset_counts
        self.raw_counts_per_g = raw_counts_per_g
        self.offset_counts = offset_counts
        # the same exact format as the HX711 driver's, so a calibration file
        # written by `kiosk calibrate` loads into either
        self.counts_per_g = parse_counts_per_g(counts_per_g)
        self._rng = random.Random(seed)
        self._noise_g = noise_g
        self._load_g = initial_g
        self._drift_g = 0
        self._tare_g = 0
        self._swing_g = 0
        self._motion_until_s = self.clock.monotonic()
        self._always_moving = False
        self._failed: str | None = None
        self._closed = False
        self._sign = 1
        self.samples = 0

    # handles ---------------------------------------------------------------

    @property
    def load_g(self) -> int:
        """Return the true load on the platform (what a perfect scale shows)."""
        return self._load_g

    def place(self, grams: int) -> None:
        """Add ``grams`` of load; the reading swings for ``settle_s``, then settles."""
        with self._cond:
            self._load_g += int(grams)
            self._start_motion(abs(int(grams)))

    def remove(self, grams: int) -> None:
        """Take ``grams`` of load off (emptying a bin)."""
        self.place(-int(grams))

    def set_noise(self, band_g: int) -> None:
        """Make steady readings wander within +-``band_g``/2 (peak to peak ``band_g``)."""
        if band_g < 0:
            raise ValueError("band_g must be >= 0")
        self._noise_g = int(band_g)

    def drift(self, grams: int) -> None:
        """Shift the zero by ``grams`` (temperature or creep), without motion."""
        self._drift_g += int(grams)

    def unstable(self, on: bool = True) -> None:
        """Keep the reading moving forever (wind, a bin touched) until turned off."""
        with self._cond:
            self._always_moving = bool(on)

    def fail(self, reason: str = "scale not responding") -> None:
        """Make every read raise ScaleFault until ``recover()``."""
        self._failed = reason

    def recover(self) -> None:
        """Undo ``fail()``."""
        self._failed = None

    # Scale protocol ------------------------------------------------------------

    def _start_motion(self, delta_g: int) -> None:
        self._swing_g = max(self.motion_g, delta_g // 2)
        self._motion_until_s = self.clock.monotonic() + self.settle_s

    def in_motion(self) -> bool:
        """Return True while the platform is still swinging."""
        return self._always_moving or self.clock.monotonic() < self._motion_until_s

    def _gross_g(self) -> int:
        grams = self._load_g + self._drift_g
        if self._noise_g:
            half = self._noise_g // 2
            grams += self._rng.randint(-half, self._noise_g - half)
        if self.in_motion():
            self._sign = -self._sign
            grams += self._sign * (self._swing_g or self.motion_g)
        return grams

    def read_counts(self, timeout_s: float) -> int:
        """Return one raw reading in ADC counts (what calibration works from)."""
        self._next_sample(timeout_s)
        with self._cond:  # place() on another thread changes load and motion together
            return self._counts()

    def _counts(self) -> int:
        return round(self.raw_offset_counts + self._gross_g() * self.raw_counts_per_g)

    def _next_sample(self, timeout_s: float) -> None:
        if self._closed:
            raise ScaleFault("scale is closed")
        if timeout_s < self.interval_s:
            self.clock.sleep(max(0.0, timeout_s))
            raise ScaleFault(f"no scale sample within {timeout_s:.3f} s")
        self.clock.sleep(self.interval_s)
        if self._failed:
            raise ScaleFault(self._failed)
        self.samples += 1

    def read(self, timeout_s: float) -> WeightSample:
        """Return the next sample in grams; raise ScaleFault on failure or overload."""
        self._next_sample(timeout_s)
        # one consistent state for the counts, the overload and the stable flag: place() on
        # another thread (a test, the simulator) changes load and motion together
        with self._cond:
            counts = self._counts()
            overloaded = self._load_g + self._drift_g > self.capacity_g
            moving = self.in_motion()
        if self.counts_per_g is None:
            gross_g = round((counts - self.raw_offset_counts) / self.raw_counts_per_g)
        else:
            gross_g = round(Fraction(counts - self.offset_counts) / self.counts_per_g)
        if overloaded:
            raise ScaleFault(f"scale overloaded (capacity {self.capacity_g} g)")
        stable = (not moving) if self.reports_stable else None
        return WeightSample(
            grams=gross_g - self._tare_g, stable=stable, at_s=self.clock.monotonic()
        )

    def zero(self) -> None:
        """Take the current load as zero; refuse while the platform moves."""
        with self._cond:  # the load and its motion of one place(), never half of it
            if self.in_motion():
                raise ScaleFault("cannot zero while the scale is in motion")
            self._tare_g = self._load_g + self._drift_g

    def close(self) -> None:
        """Release the (fake) device."""
        self._closed = True


# -- door ---------------------------------------------------------------------


class FakeDoor(_Fake):
    """A bin door with a fail-secure lock and a closed sensor, on the real door's contract.

    The resident moves it with ``open_by_hand()``/``close_by_hand()`` (an open
    attempt on a locked door fails).  ``lock()`` does what ``GpioDoor.lock()``
    does: the bolt goes out at once, then it waits up to ``close_timeout_s`` for
    the closed sensor and raises DoorFault if the door stays open (bolt out, door
    not shut).  ``block()`` jams the bolt so ``lock()`` fails after
    ``lock_retries`` attempts; ``fail_unlock()`` makes ``unlock()`` fail.
    ``history`` keeps every command with its monotonic time.
    """

    def __init__(
        self,
        *,
        lock_retries: int = 3,
        actuate_s: float = 0.05,
        close_timeout_s: float = 10.0,
        start_open: bool = False,
        clock: Clock | None = None,
    ):
        super().__init__(clock)
        if lock_retries < 1 or actuate_s < 0 or not close_timeout_s > 0:
            raise HardwareConfigError(
                "fake door: lock_retries >= 1, actuate_s >= 0, close_timeout_s > 0"
            )
        self.lock_retries = lock_retries
        self.actuate_s = actuate_s
        self.close_timeout_s = close_timeout_s
        self._locked = True  # fail-secure from construction
        self._closed_sensor = not start_open
        self._blocked = False
        self._unlock_failures: int | None = 0  # None: fail until repaired
        self._shut_down = False
        self.unlock_count = 0
        self.lock_count = 0
        self.history: list[tuple[float, str]] = []

    @property
    def locked(self) -> bool:
        """Return True while the bolt is engaged."""
        return self._locked

    def _log(self, command: str) -> None:
        self.history.append((self.clock.monotonic(), command))

    def commands(self) -> list[str]:
        """Return the command names in ``history``, in order."""
        return [command for _, command in self.history]

    # handles ---------------------------------------------------------------

    def open_by_hand(self) -> bool:
        """Pull the door open; return False (nothing moves) while it is locked."""
        with self._cond:
            if self._locked and self._closed_sensor:
                self._log("open_refused")
                return False
            self._closed_sensor = False
            self._log("opened")
            self._cond.notify_all()
            return True

    def close_by_hand(self) -> None:
        """Push the door shut."""
        with self._cond:
            self._closed_sensor = True
            self._log("closed")
            self._cond.notify_all()

    def block(self) -> None:
        """Jam the bolt: ``lock()`` fails with DoorFault until ``unblock()``."""
        self._blocked = True

    def unblock(self) -> None:
        """Clear a jam."""
        self._blocked = False

    def fail_unlock(self, times: int | None = None) -> None:
        """Make the next ``times`` unlocks fail (None: every unlock until ``repair()``)."""
        self._unlock_failures = None if times is None else int(times)

    def repair(self) -> None:
        """Clear every injected failure."""
        self._blocked = False
        self._unlock_failures = 0

    # Door protocol -----------------------------------------------------------

    def unlock(self) -> None:
        """Release the bolt; raise DoorFault if the (injected) actuator fails."""
        self._log("unlock")
        if self._shut_down:
            raise DoorFault("door is shut down")
        self.clock.sleep(self.actuate_s)
        if self._unlock_failures is None or self._unlock_failures > 0:
            if self._unlock_failures:
                self._unlock_failures -= 1
            self._log("unlock_failed")
            raise DoorFault("door did not unlock (actuator fault)")
        with self._cond:
            self._locked = False
            self.unlock_count += 1
            self._cond.notify_all()

    def lock(self) -> None:
        """Engage the bolt, then wait for the closed sensor; DoorFault on a jam or an open door."""
        self._engage_bolt()
        if not self._wait_for(lambda: self._closed_sensor, self.close_timeout_s):
            self._log("close_timeout")
            # as GpioDoor: the bolt stays out, so the door latches when the resident shuts it
            raise DoorFault(
                f"door still open {self.close_timeout_s:g} s after lock "
                "(the bolt is out; the door is not shut)"
            )

    def _engage_bolt(self) -> None:
        """Throw the bolt, retrying a jam ``lock_retries`` times, then raise DoorFault."""
        for attempt in range(1, self.lock_retries + 1):
            self._log("lock" if attempt == 1 else "lock_retry")
            self.clock.sleep(self.actuate_s)
            if not self._blocked:
                with self._cond:
                    self._locked = True
                    self.lock_count += 1
                    self._cond.notify_all()
                return
        self._log("lock_failed")
        raise DoorFault(f"door did not lock after {self.lock_retries} attempts (jammed)")

    def is_closed(self) -> bool:
        """Return True while the closed sensor reads shut."""
        return self._closed_sensor

    def wait_closed(self, closed: bool, timeout_s: float) -> bool:
        """Wait until the sensor reads ``closed``; return False on timeout."""
        return self._wait_for(lambda: self._closed_sensor == closed, timeout_s)

    def close(self) -> None:
        """Lock (best effort, even when jammed) and shut down."""
        self._log("close")
        try:
            if not self._blocked:
                self._locked = True
        finally:
            self._shut_down = True


# -- indicators ---------------------------------------------------------------

INDICATOR_STATES = ("idle", "busy", "ok", "error", "off")
BEEP_PATTERNS = ("short", "long", "error")


class FakeIndicator:
    """Records every state shown and every beep, for tests to assert on."""

    def __init__(self, *, clock: Clock | None = None):
        self.clock = clock if clock is not None else SYSTEM_CLOCK
        self.state = "off"
        self.states: list[str] = []
        self.beeps: list[str] = []
        self.closed = False

    def show(self, state: str) -> None:
        """Record ``state``; an unknown state is a programming error."""
        if state not in INDICATOR_STATES:
            raise ValueError(f"unknown indicator state {state!r}")
        self.state = state
        self.states.append(state)

    def beep(self, pattern: str = "short") -> None:
        """Record a beep pattern."""
        if pattern not in BEEP_PATTERNS:
            raise ValueError(f"unknown beep pattern {pattern!r}")
        self.beeps.append(pattern)

    def close(self) -> None:
        """Turn off."""
        self.state = "off"
        self.closed = True


class NullIndicator:
    """An indicator for stations without one: does nothing."""

    def __init__(self, *, clock: Clock | None = None):
        self.clock = clock

    def show(self, state: str) -> None:
        """Do nothing."""

    def beep(self, pattern: str = "short") -> None:
        """Do nothing."""

    def close(self) -> None:
        """Do nothing."""
