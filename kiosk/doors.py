"""Fail-secure locking of every door, without letting an open door stall the station loop.

A real door's ``lock()`` (``hardware.door_gpio.GpioDoor``) secures its output at once, then waits
up to ``close_timeout_s`` for the closed sensor, raising ``DoorFault`` if the door stays open —
for a motorised door it drives it shut, with retries.  When the kiosk locks everything (a fault,
a restart, shutdown) a door may well stand open: a resident left it open, the power went mid
deposit.  Waiting for it in the loop would freeze the kiosk (and trip the systemd watchdog), and
an open door is not a jam.  So ``DoorLocker.lock_all``:

* locks each **closed** door in place and reports one that fails (a jam: a real problem);
* hands each **open** door's ``lock()`` to a background thread (on a Pi), which secures the
  output at once and confirms when the door is shut; the station watches the sensor and acts
  when the door closes.  In inline mode (virtual time, tests) it is called in place: a fake
  door waits as a real one does, but on the virtual clock, so the wait costs no real time and
  a resident scheduled to shut the door meanwhile ends it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

log = logging.getLogger(__name__)


class DoorLocker:
    """Lock doors fail-secure: closed ones now, open ones without blocking the caller."""

    def __init__(self, *, background: bool):
        self.background = background
        self._pending: set[int] = set()
        self._lock = threading.Lock()

    def lock_all(self, slots: Iterable) -> list[str]:
        """Lock every door; return the problems with closed doors (never raise)."""
        problems = []
        for slot in slots:
            try:
                closed = slot.door.is_closed()
            except Exception as exc:  # noqa: BLE001 - fail-secure: a bad sensor must not stop the rest
                problems.append(f"door {slot.number} sensor unreadable ({exc})")
                closed = False
            if closed:
                problem = self._lock_now(slot)
                if problem:
                    problems.append(problem)
            else:
                self._lock_open(slot)
        return problems

    def _lock_now(self, slot) -> str | None:
        try:
            slot.door.lock()
        except Exception as exc:  # noqa: BLE001 - fail-secure: report and go on to the next door
            return f"door {slot.number} could not be locked ({exc})"
        return None

    def _lock_open(self, slot) -> None:
        if not self.background:
            problem = self._lock_now(slot)
            if problem:
                log.warning("%s: it stands open", problem)
            return
        with self._lock:
            if slot.number in self._pending:
                return  # already being secured
            self._pending.add(slot.number)
        threading.Thread(
            target=self._lock_in_background,
            args=(slot,),
            name=f"lock-door-{slot.number}",
            daemon=True,
        ).start()

    def _lock_in_background(self, slot) -> None:
        try:
            problem = self._lock_now(slot)
            if problem:
                log.warning("%s: it stands open", problem)
        finally:
            with self._lock:
                self._pending.discard(slot.number)
