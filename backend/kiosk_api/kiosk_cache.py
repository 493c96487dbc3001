"""Per-worker copies of kiosk set-ups, so a signed request needs no set-up query.

A request needs its kiosk's secret, doors, community (time zone, label key),
categories and every points-rule version: one joined SELECT (``deposits.store.
kiosk_context``).  These change rarely, so each worker process keeps them for
``KIOSK_CACHE_TTL_S`` seconds (default 60, ``0`` turns the cache off), at most
``MAX_KIOSKS`` of them, least recently used dropped first.

A copy is never trusted blindly.  The statement that records the request's
nonce (``auth``) only inserts when, in the same snapshot, the kiosk is still
enabled with the same secret, its community still has the same time zone and
label key, and no points-rule version was added anywhere since the copy was
loaded (``max(points_rules.id)``, the ``rules_mark``).  If any of that changed
the nonce is not recorded, the copy is dropped and the request is checked
against a fresh load, exactly as without a cache: a disabled kiosk gets its
401 on the very next request, and a new rule version scores the next deposit.

What the check does not cover: doors and categories.  No command changes them
after ``kiosk register`` / ``community create``; if they are edited in the
database by hand, workers pick the change up within the TTL.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from backend.deposits.store import KioskContext

#: kiosks one worker keeps at most (a community has tens, a city hundreds)
MAX_KIOSKS = 1024


class KioskCache:
    """A bounded, short-lived, thread-safe map of kiosk id -> ``KioskContext``."""

    def __init__(
        self,
        ttl_s: float,
        max_kiosks: int = MAX_KIOSKS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_kiosks = max_kiosks
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, KioskContext]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """False when the TTL is 0: every request loads its kiosk afresh."""
        return self.ttl_s > 0

    def get(self, kiosk_id: str) -> KioskContext | None:
        """Return the kiosk's copy if it is younger than the TTL."""
        with self._lock:
            entry = self._entries.get(kiosk_id)
            if entry is None:
                return None
            if self._clock() - entry[0] >= self.ttl_s:
                del self._entries[kiosk_id]
                return None
            self._entries.move_to_end(kiosk_id)
            return entry[1]

    def put(self, kiosk: KioskContext) -> None:
        """Keep a freshly loaded copy (all rule versions, see ``kiosk_context``)."""
        if not self.enabled:
            return
        with self._lock:
            self._entries[kiosk.ref.kiosk_id] = (self._clock(), kiosk)
            self._entries.move_to_end(kiosk.ref.kiosk_id)
            while len(self._entries) > self.max_kiosks:
                self._entries.popitem(last=False)

    def seen(self, kiosk_id: str, last_seen_at) -> None:
        """Record a new last_seen_at on the copy, keeping its age."""
        with self._lock:
            entry = self._entries.get(kiosk_id)
            if entry is not None:
                self._entries[kiosk_id] = (
                    entry[0],
                    dataclasses.replace(entry[1], last_seen_at=last_seen_at),
                )

    def forget(self, kiosk_id: str) -> None:
        """Drop the kiosk's copy."""
        with self._lock:
            self._entries.pop(kiosk_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def for_app(app) -> KioskCache:
    """Return the app's cache, creating it from ``KIOSK_CACHE_TTL_S`` on first use."""
    cache = app.extensions.get("sortpoint.kiosk_cache")
    if cache is None:
        cache = app.extensions.setdefault(
            "sortpoint.kiosk_cache", KioskCache(app.config["KIOSK_CACHE_TTL_S"])
        )
    return cache
