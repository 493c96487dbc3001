"""Injectable time for the GPIO drivers and their simulators.

A driver never calls ``time`` directly: it takes a clock object, so a test can
run a 400 ms HX711 settling wait or a 5 s solenoid limit in no real time and
identically on every run.

A clock needs ``monotonic()`` and ``sleep(s)``.  ``perf_counter_ns(clock)`` and
``call_later(clock, delay_s, fn)`` below use the clock's own
``perf_counter_ns``/``schedule`` when it has them, so the drivers also accept
``hardware.fakes.FakeClock``/``RealClock`` (same duck type): one clock can drive
a whole simulated kiosk.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


class Clock(Protocol):
    """What a driver needs from time."""

    def monotonic(self) -> float:
        """Return monotonic seconds."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (or advance virtual time by it)."""
        ...


class SystemClock:
    """Real time: ``time.monotonic``, ``time.perf_counter_ns``, real sleeps and timer threads."""

    def monotonic(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    def perf_counter_ns(self) -> int:
        """Return ``time.perf_counter_ns()`` (the finest clock, for the HX711 60 us limit)."""
        return time.perf_counter_ns()

    def sleep(self, seconds: float) -> None:
        """Sleep for real (no-op for zero or negative)."""
        if seconds > 0:
            time.sleep(seconds)

    def schedule(self, delay_s: float, callback: Callable[[], object]) -> None:
        """Run ``callback`` once, ``delay_s`` from now, on a daemon timer thread."""
        timer = threading.Timer(max(0.0, delay_s), callback)
        timer.daemon = True  # a pending auto-release must not keep the process alive
        timer.start()


class VirtualClock:
    """Virtual time in integer nanoseconds; moves only through ``sleep``/``advance``.

    Callbacks from ``schedule``/``call_at`` run in time order, in the thread that
    advances the clock, when virtual time passes their due time.  Its interface
    matches ``hardware.fakes.FakeClock`` for what the drivers use.
    """

    def __init__(self, start_s: float = 1_000.0):
        self._ns = round(start_s * 1e9)
        self._lock = threading.RLock()
        self._events: list[tuple[int, int, Callable[[], object]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        """Return virtual seconds."""
        return self._ns / 1e9

    def perf_counter_ns(self) -> int:
        """Return virtual nanoseconds."""
        return self._ns

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

    def pending(self) -> int:
        """Return how many scheduled callbacks have not run yet."""
        with self._lock:
            return len(self._events)


SYSTEM_CLOCK = SystemClock()


def perf_counter_ns(clock: Any) -> int:
    """Return the clock's nanosecond counter (derived from ``monotonic()`` if it has none)."""
    fine = getattr(clock, "perf_counter_ns", None)
    if fine is not None:
        return fine()
    return round(clock.monotonic() * 1e9)


def call_later(clock: Any, delay_s: float, callback: Callable[[], object]) -> None:
    """Run ``callback`` after ``delay_s`` on ``clock`` (its ``schedule``, else a timer thread)."""
    schedule = getattr(clock, "schedule", None)
    if schedule is not None:
        schedule(delay_s, callback)
    else:
        SYSTEM_CLOCK.schedule(delay_s, callback)
