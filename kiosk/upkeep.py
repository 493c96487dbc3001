"""Journal upkeep on the station's clock: answered rows do not pile up on the Pi's SD card.

``JournalPruner`` runs ``Journal.prune`` at start and then once a day, keeping
``[journal] keep_synced_days`` days of synced (and empty) deposits for ``kiosk status`` and
staff questions.  It never touches what still matters: deposits awaiting upload or held back,
open, interrupted, rejected or conflicting ones (see ``Journal.prune``).  The station calls
``run_if_due()`` from its loop while idle, so pruning never delays a resident's scan.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

DAY_S = 86_400.0
#: a prune that failed (a busy or broken journal) is tried again this much later
RETRY_S = 3_600.0


class JournalPruner:
    """Prune the journal's answered rows at start, then every ``every_s`` of the clock."""

    def __init__(self, journal, *, keep_synced_days: int, clock, every_s: float = DAY_S):
        if keep_synced_days < 1:
            raise ValueError("keep_synced_days must be at least 1")
        self.journal = journal
        self.keep_s = keep_synced_days * DAY_S
        self.clock = clock
        self.every_s = every_s
        self.next_at_s = clock.monotonic()
        self.runs = 0
        self.removed = 0

    def run_if_due(self) -> int | None:
        """Prune if it is time; return how many deposits went (None when not due or failed)."""
        now_s = self.clock.monotonic()
        if now_s < self.next_at_s:
            return None
        try:
            removed = self.journal.prune(older_than_s=self.keep_s)
        except Exception as exc:  # noqa: BLE001 - costs disk space, never a deposit: retry later
            log.warning("journal prune failed (retrying in %g s): %s", RETRY_S, exc)
            self.next_at_s = now_s + RETRY_S
            return None
        self.next_at_s = now_s + self.every_s
        self.runs += 1
        self.removed += removed
        if removed:
            log.info(
                "journal: pruned %d answered deposits older than %g days",
                removed,
                self.keep_s / DAY_S,
            )
        return removed
