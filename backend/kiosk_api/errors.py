"""The kiosk API's JSON errors: ``{"error": {"code": ..., "message": ...}}`` for every 4xx and 5xx."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from werkzeug.exceptions import HTTPException

from backend.core.errors import SortpointError

log = logging.getLogger(__name__)

#: HTTP status -> error code for errors raised by Flask/werkzeug itself
_HTTP_CODES = {
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


def error_response(status: int, code: str, message: str):
    """Return the JSON error body every failing request gets."""
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


def http_error(exc: HTTPException):
    status = exc.code or 500
    response = error_response(
        status, _HTTP_CODES.get(status, f"http_{status}"), exc.description or exc.name
    )
    # werkzeug's own headers but its HTML content type: a 405 keeps its Allow
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _domain_error(exc: SortpointError):
    return error_response(exc.http_status, exc.code, exc.message)


def _unexpected(exc: Exception):
    log.exception("unhandled error")
    return error_response(500, "internal_error", "internal error; the request was not applied")


def install(bp: Blueprint) -> None:
    """Make ``bp`` answer every error its views raise as JSON."""
    bp.register_error_handler(HTTPException, http_error)
    bp.register_error_handler(SortpointError, _domain_error)
    bp.register_error_handler(Exception, _unexpected)
