"""The backend's root exception and the domain errors services raise.

Views and CLI commands map these to HTTP codes / exit codes at the edge; the
services never know about HTTP.
"""


class SortpointError(Exception):
    """Root of every error the backend raises on purpose."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class NotFound(SortpointError):
    """A named object does not exist."""

    code = "not_found"
    http_status = 404


class AlreadyExists(SortpointError):
    """An object with that natural key exists already."""

    code = "already_exists"
    http_status = 409


class InvalidInput(SortpointError):
    """Input that is well-formed but not acceptable."""

    code = "invalid"
    http_status = 400


class InsufficientBalance(SortpointError):
    """A debit would take a balance below zero."""

    code = "insufficient_balance"
    http_status = 409


class Unauthorized(SortpointError):
    """A request whose signature, timestamp, nonce or kiosk is not acceptable."""

    code = "unauthorized"
    http_status = 401


class LedgerMismatch(SortpointError):
    """A stored balance disagrees with the sum of its entries."""

    code = "ledger_mismatch"
    http_status = 500


class Forbidden(SortpointError):
    """The actor may not act on that place (community, building, household); nothing changed."""

    code = "forbidden"
    http_status = 403


class TooManyAttempts(SortpointError):
    """Too many failed logins lately, for the user name or the address; try again later."""

    code = "too_many_attempts"
    http_status = 429
