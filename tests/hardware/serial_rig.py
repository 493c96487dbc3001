"""Helpers for the serial and camera driver tests (pty simulators, threads)."""

from __future__ import annotations

import time
from collections.abc import Callable

#: generous upper bound for anything a reader thread must do; never a speed claim
WAIT_S = 5.0


def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; return its last value."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(0.005)
    return True
