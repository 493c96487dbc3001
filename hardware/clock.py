"""Time, injected: one clock family for every driver, fake and the kiosk.

A driver never calls ``time`` directly: it takes a ``Clock``, so a test can run a 400 ms
HX711 settling wait or a 5 s solenoid limit in no real time and identically on every run.

* ``Clock`` (a Protocol): ``monotonic()`` and ``sleep(s)``, what every driver needs.
* ``WallClock`` (a Protocol): ``now()`` and ``utcnow()``, for times people read (a deposit's
  ``occurred_at``, the journal's sync stamps).
* ``SystemClock`` (``SYSTEM_CLOCK``): real time, both of the above, and ``perf_counter_ns``,
  ``schedule`` and ``wait_for``.  What production runs on.
* ``VirtualClock``: the same interface in virtual time, integer nanoseconds, that moves only
  through ``sleep``/``advance``; callbacks given to ``schedule``/``call_at`` run in time order as
  it passes them.  One can drive a whole simulated kiosk (``hardware.fakes.FakeClock`` is this
  clock started at a given wall time).

``perf_counter_ns(clock)``, ``call_later(clock, delay_s, fn)`` and ``wait_for(clock, ...)`` use
the clock's own method when it has one, so a driver may be given any ``Clock``.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

#: the virtual clock's default wall time at its start (2025-06-15, any fixed instant would do)
DEFAULT_WALL_START_S = 1_750_000_000.0


@runtime_checkable
class Clock(Protocol):
    """What a driver needs from time."""

    def monotonic(self) -> float:
        """Return monotonic seconds."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (or advance virtual time by it)."""
        ...


@runtime_checkable
class WallClock(Protocol):
    """Calendar time, for what people and other processes read."""

    def now(self) -> float:
        """Return Unix time in seconds."""
        ...

    def utcnow(self) -> dt.datetime:
        """Return the time as an aware UTC datetime."""
        ...


class SystemClock:
    """Real time: ``time.monotonic``, ``time.time``, real sleeps, waits and timer threads."""

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def perf_counter_ns(self) -> int:
        """Return ``time.perf_counter_ns()`` (the finest clock, for the HX711 60 us limit)."""
        return time.perf_counter_ns()

    def now(self) -> float:
        """Return ``time.time()``."""
        return time.time()

    def utcnow(self) -> dt.datetime:
        """Return the current time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.now(), dt.UTC)

    def sleep(self, seconds: float) -> None:
        """Sleep for real (no-op for zero or negative)."""
        if seconds > 0:
            time.sleep(seconds)

    def schedule(self, delay_s: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` once, ``delay_s`` from now, on a daemon timer thread."""
        timer = threading.Timer(max(0.0, delay_s), callback)
        timer.daemon = True  # a pending auto-release must not keep the process alive
        timer.start()

    def wait_for(
        self, predicate: Callable[[], bool], timeout_s: float, cond: threading.Condition
    ) -> bool:
        """Block until ``predicate()`` holds (checked under ``cond``) or timeout; return it."""
        with cond:
            return bool(cond.wait_for(predicate, timeout=max(0.0, timeout_s)))


class VirtualClock:
    """Virtual time in integer nanoseconds; moves only through ``sleep``/``advance``.

    ``start_s`` is its monotonic start, ``wall_start_s`` the Unix time it reads then.
    Thread-safe, but meant to be driven from one thread: callbacks run in the thread
    that advances it.
    """

    def __init__(self, start_s: float = 1_000.0, *, wall_start_s: float = DEFAULT_WALL_START_S):
        self._ns = round(start_s * 1e9)
        self._wall_offset_s = wall_start_s - self._ns / 1e9
        self._lock = threading.RLock()
        self._events: list[tuple[int, int, Callable[[], object]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        """Return virtual seconds."""
        return self._ns / 1e9

    def perf_counter_ns(self) -> int:
        """Return virtual nanoseconds."""
        return self._ns

    def now(self) -> float:
        """Return virtual Unix time in seconds."""
        return self._ns / 1e9 + self._wall_offset_s

    def utcnow(self) -> dt.datetime:
        """Return virtual time as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.now(), dt.UTC)

    def sleep(self, seconds: float) -> None:
        """Advance virtual time instead of sleeping."""
        self.advance(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, running every callback that falls due."""
        if seconds < 0:
            raise ValueError("virtual time cannot go backwards")
        self._advance_to_ns(self._ns + round(seconds * 1e9))

    def advance_ns(self, nanoseconds: int) -> None:
        """Move time forward by ``nanoseconds`` (for sub-microsecond steps)."""
        if nanoseconds < 0:
            raise ValueError("virtual time cannot go backwards")
        self._advance_to_ns(self._ns + int(nanoseconds))

    def advance_to(self, target_s: float) -> None:
        """Move time to ``target_s`` (never backwards), running due callbacks in order."""
        self._advance_to_ns(round(target_s * 1e9))

    def _advance_to_ns(self, target_ns: int) -> None:
        while True:
            with self._lock:
                if not self._events or self._events[0][0] > target_ns:
                    self._ns = max(self._ns, target_ns)
                    return
                due_ns, _, callback = heapq.heappop(self._events)
                self._ns = max(self._ns, due_ns)
            callback()  # outside the lock: a callback may schedule more

    def schedule(self, delay_s: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` once virtual time has advanced ``delay_s``."""
        self.call_at(self.monotonic() + max(0.0, delay_s), callback)

    def call_at(self, at_s: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` when virtual time reaches ``at_s``."""
        with self._lock:
            heapq.heappush(self._events, (round(at_s * 1e9), next(self._seq), callback))

    def next_event_s(self) -> float | None:
        """Return the time of the next scheduled callback, if any."""
        with self._lock:
            return self._events[0][0] / 1e9 if self._events else None

    def pending(self) -> int:
        """Return how many scheduled callbacks have not run yet."""
        with self._lock:
            return len(self._events)

    def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout_s: float,
        cond: threading.Condition | None = None,
    ) -> bool:
        """Step virtual time through scheduled callbacks until ``predicate()`` or timeout."""
        deadline_s = self.monotonic() + max(0.0, timeout_s)
        while not predicate():
            due_s = self.next_event_s()
            if due_s is None or due_s > deadline_s:
                self.advance_to(deadline_s)
                return bool(predicate())
            self.advance_to(due_s)
        return True


SYSTEM_CLOCK = SystemClock()


def perf_counter_ns(clock: Clock) -> int:
    """Return the clock's nanosecond counter (derived from ``monotonic()`` if it has none)."""
    fine = getattr(clock, "perf_counter_ns", None)
    if fine is not None:
        return fine()
    return round(clock.monotonic() * 1e9)


def call_later(clock: Clock, delay_s: float, callback: Callable[[], object]) -> None:
    """Run ``callback`` after ``delay_s`` on ``clock`` (its ``schedule``, else a timer thread)."""
    schedule = getattr(clock, "schedule", None)
    if schedule is not None:
        schedule(delay_s, callback)
    else:
        SYSTEM_CLOCK.schedule(delay_s, callback)


def wait_for(
    clock: Clock, predicate: Callable[[], bool], timeout_s: float, cond: threading.Condition
) -> bool:
    """Wait until ``predicate()`` holds or ``timeout_s`` passes on ``clock``; return it.

    A clock with its own ``wait_for`` decides how (a virtual one steps through its
    callbacks); any other waits on ``cond`` in real time.
    """
    own = getattr(clock, "wait_for", None)
    if own is not None:
        return bool(own(predicate, timeout_s, cond))
    return SYSTEM_CLOCK.wait_for(predicate, timeout_s, cond)
