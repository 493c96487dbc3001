"""The station runtime: config, journal and outbox, sync, the deposit flow.

Modules: ``config`` (the typed TOML config), ``journal`` (the durable SQLite
deposit journal and its bounded outbox), ``sync`` (the signed backend client
and the background uploader), ``labels`` (offline label verification), ``texts``
(what the resident reads), and the flow, station and command line built on them.

Every error the kiosk raises on purpose derives from ``KioskError``; the
subclasses live here so each module and the command line can catch them
without importing each other.
"""


class KioskError(Exception):
    """Root of every error the kiosk package raises on purpose."""


class ConfigError(KioskError):
    """The kiosk config is unreadable, has an unknown key or a bad value."""


class JournalError(KioskError):
    """The deposit journal cannot do what was asked (bad state, newer schema...)."""


class OutboxFull(JournalError):
    """The outbox is at its limit: refuse new deposits (show out of order)."""


class SyncError(KioskError):
    """Root of the errors talking to the backend."""


class BackendUnavailable(SyncError):
    """The backend could not be reached or failed (network error, timeout, 5xx)."""


class BackendRejected(SyncError):
    """The backend refused the request itself (4xx): retrying unchanged will not help."""

    def __init__(self, message: str, *, status: int, code: str | None = None, body=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.body = body


class BackendAuthError(BackendRejected):
    """The backend answered 401: wrong kiosk id or secret, clock skew, disabled kiosk."""
