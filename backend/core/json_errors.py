"""JSON error answers, one shape for every API: ``{"error": {"code": ..., "message": ...}}``.

The signed kiosk API, the token API and the desk's API all answer their
errors through ``install``; the HTTP status-to-code table and the envelope are
written once here (docs/protocol.md and docs/api.md document them).
"""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from werkzeug.exceptions import HTTPException

from backend.core.errors import SortpointError

log = logging.getLogger(__name__)

#: HTTP status -> error code for errors raised by Flask/werkzeug itself
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


def error_response(status: int, code: str, message: str, headers: dict | None = None):
    """Return the JSON error body every failing API request gets."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def http_error(exc: HTTPException):
    """Answer an error werkzeug raised (a routing 404/405, a 413...) as JSON."""
    status = exc.code or 500
    response = error_response(
        status, HTTP_CODES.get(status, f"http_{status}"), exc.description or exc.name
    )
    # werkzeug's own headers but its HTML content type: a 405 keeps its Allow
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _unexpected(exc: Exception):
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal error; the request was not applied")


def install(bp: Blueprint, *, challenge: str | None = None) -> None:
    """Make ``bp`` answer every error its views raise as JSON.

    ``challenge`` (e.g. ``"Bearer"``) goes into ``WWW-Authenticate`` on a 401,
    for APIs whose clients authenticate with a scheme HTTP names.
    """
    headers_401 = {"WWW-Authenticate": challenge} if challenge else None

    def domain_error(exc: SortpointError):
        headers = headers_401 if exc.http_status == 401 else None
        return error_response(exc.http_status, exc.code, exc.message, headers)

    bp.register_error_handler(HTTPException, http_error)
    bp.register_error_handler(SortpointError, domain_error)
    bp.register_error_handler(Exception, _unexpected)
