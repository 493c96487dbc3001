"""systemd readiness and watchdog notifications (``Type=notify``, ``WatchdogSec=``).

Uses the ``sdnotify`` package when it is installed (the ``pi`` extra), else writes
the datagram to ``$NOTIFY_SOCKET`` directly; outside systemd (no socket) every call
does nothing.  ``watchdog_interval_s()`` is half of ``$WATCHDOG_USEC``, as
sd_watchdog_enabled(3) recommends.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    """Send ``READY=1``, ``WATCHDOG=1``, ``STATUS=...`` and ``STOPPING=1`` to systemd."""

    def __init__(self, environ: dict | None = None, *, monotonic=time.monotonic):
        env = os.environ if environ is None else environ
        self.socket_path = env.get("NOTIFY_SOCKET") or None
        self.watchdog_usec = _int(env.get("WATCHDOG_USEC"))
        watchdog_pid = _int(env.get("WATCHDOG_PID"))
        if watchdog_pid and watchdog_pid != os.getpid():
            self.watchdog_usec = None  # the watchdog is meant for another process
        self._monotonic = monotonic
        self._last_ping_s: float | None = None
        self._sd = None
        # sdnotify reads $NOTIFY_SOCKET itself: use it only for the real environment
        if self.socket_path and environ is None:
            try:
                import sdnotify

                self._sd = sdnotify.SystemdNotifier()
            except ImportError:
                self._sd = None

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self.socket_path is not None

    def watchdog_interval_s(self) -> float | None:
        """Return how often to ping the watchdog (half its timeout), or None if off."""
        return None if not self.watchdog_usec else self.watchdog_usec / 2_000_000

    def notify(self, message: str) -> None:
        """Send one notification; failures are logged, never raised."""
        if not self.socket_path:
            return
        try:
            if self._sd is not None:
                self._sd.notify(message)
            else:
                self._send(message)
        except OSError as exc:
            log.warning("systemd notify failed: %s", exc)

    def _send(self, message: str) -> None:
        address = self.socket_path
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))

    def ready(self, status: str = "ready") -> None:
        """Tell systemd start-up is complete."""
        self.notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        """Update the one-line status ``systemctl status`` shows."""
        self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        """Tell systemd the service is shutting down."""
        self.notify("STOPPING=1")

    def ping_if_due(self) -> bool:
        """Send ``WATCHDOG=1`` if half the watchdog interval has passed; return True if sent."""
        interval_s = self.watchdog_interval_s()
        if interval_s is None:
            return False
        now_s = self._monotonic()
        if self._last_ping_s is not None and now_s - self._last_ping_s < interval_s:
            return False
        self._last_ping_s = now_s
        self.notify("WATCHDOG=1")
        return True


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None
