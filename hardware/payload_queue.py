"""The queue between a scanner's worker thread and ``QrReader.read()``.

Serial and camera scanners both decode on a thread of their own and hand payloads to the
kiosk's loop through this queue.  It is bounded (a full queue drops the oldest scan: a
resident re-scans, and a stale scan must not act later), carries the scanner's current
fault, and wakes a waiting ``read()`` at once on a payload, a fault or ``close()``.

Its condition is its own and nothing is called while it is held, so a driver may call it
while holding its own lock (never the other way round).
"""

from __future__ import annotations

import collections
import threading
import time

from hardware import ScannerFault


class PayloadQueue:
    """Bounded payloads (oldest dropped), the scanner's fault, and a blocking ``read()``."""

    def __init__(self, size: int, *, closed_message: str = "scanner is closed") -> None:
        if size < 1:
            raise ValueError(f"size: {size!r} must be at least 1")
        self._items: collections.deque[str] = collections.deque()
        self._size = size
        self._closed_message = closed_message
        self._cond = threading.Condition()
        self._fault: ScannerFault | None = None
        self._closed = False

    def put(self, payload: str) -> bool:
        """Queue ``payload`` and wake a reader; return False if the oldest was dropped for it."""
        with self._cond:
            kept_all = len(self._items) < self._size
            if not kept_all:
                self._items.popleft()
            self._items.append(payload)
            self._cond.notify()
            return kept_all

    def read(self, timeout_s: float) -> str | None:
        """Return the next payload, or None after ``timeout_s``.

        Payloads queued before a fault are still returned; with none queued, raise the
        ScannerFault while there is one, and a ScannerFault once closed.
        """
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while True:
                if self._closed:
                    raise ScannerFault(self._closed_message)
                if self._items:
                    return self._items.popleft()
                if self._fault is not None:
                    raise self._fault
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def clear(self) -> int:
        """Discard the queued payloads; return how many."""
        with self._cond:
            count = len(self._items)
            self._items.clear()
            return count

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def fault(self) -> ScannerFault | None:
        """Return the scanner's current fault, or None."""
        with self._cond:
            return self._fault

    def set_fault(self, message: str) -> bool:
        """Record a fault (a waiting read raises now); return True if it is a new one."""
        with self._cond:
            first = self._fault is None
            self._fault = ScannerFault(message)
            self._cond.notify_all()
            return first

    def clear_fault(self) -> bool:
        """Forget the fault; return True if there was one."""
        with self._cond:
            had_fault, self._fault = self._fault is not None, None
            return had_fault

    def close(self) -> None:
        """Make every read raise from now on and wake the waiting ones."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class QueuedScanner:
    """The health half of a scanner that hands payloads over through ``self._payloads``.

    Serial and camera scanners report their fault the same way: whatever their worker
    thread last put on the queue (``PayloadQueue.set_fault``), None while they can read.
    """

    _payloads: PayloadQueue

    @property
    def fault(self) -> ScannerFault | None:
        """Return why the scanner cannot be read right now, or None when it can."""
        return self._payloads.fault

    def health(self) -> ScannerFault | None:
        """Return the current fault (None when the scanner can read), for selftest and status."""
        return self.fault
