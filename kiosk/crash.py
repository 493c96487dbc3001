"""Fault injection for the crash tests: SIGKILL the kiosk at a chosen point of the flow.

``SORTPOINT_KIOSK_CRASH_AT=<state>[:<n>]`` kills the process on the n-th entry (default the
first) into ``<state>`` (the initial ``idle`` is the first entry into ``idle``), and
``upload[:<n>]`` right after the n-th upload was answered but before the journal stored the
answer.  Unset, nothing happens.  SIGKILL, not an exception: nothing gets to clean up, exactly
as when the power goes.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

CRASH_ENV = "SORTPOINT_KIOSK_CRASH_AT"


class CrashHook:
    """Fault injection for the crash tests: SIGKILL this process at a chosen point."""

    def __init__(self, spec: str | None):
        self.point, self.nth = None, 1
        if spec:
            point, _, nth = spec.partition(":")
            self.point, self.nth = point.strip(), int(nth or 1)
        self.seen = 0

    def hit(self, point: str) -> None:
        """Count an arrival at ``point``; die on the chosen one."""
        if point != self.point:
            return
        self.seen += 1
        if self.seen == self.nth:
            log.warning("crash hook: SIGKILL at %s (#%d)", point, self.seen)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def on_enter_state(self, state) -> None:
        """Listener callback of the flow."""
        self.hit(state.id)


class CrashingClient:
    """Wraps the backend client so the crash hook can fire between answer and journal."""

    def __init__(self, client, hook: CrashHook):
        self._client, self._hook = client, hook

    def post_deposits(self, items, *args, **kwargs):
        """Upload as the wrapped client does, then let the hook fire."""
        results = self._client.post_deposits(items, *args, **kwargs)
        self._hook.hit("upload")
        return results

    def __getattr__(self, name):
        return getattr(self._client, name)
