"""Error answers: HTML for the pages (``/account/``), JSON for the token API (``/api/v1/``)."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from backend.core.errors import SortpointError

log = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    429: "too_many_requests",
    500: "internal_error",
}


def _page(status: int, message: str):
    return render_template("people/error.html", status=status, message=message), status


def page_http_error(exc: HTTPException):
    response = _page(exc.code or 500, exc.description or exc.name)
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    return response[0], response[1], headers


def _page_csrf(exc: CSRFError):
    from flask_babel import gettext

    return _page(400, gettext("The form expired or was not sent from this site; try again."))


def _page_domain(exc: SortpointError):
    return _page(exc.http_status, exc.message)


def _page_unexpected(exc: Exception):
    log.exception("unhandled error")
    return _page(500, "internal error")


def install_pages(bp: Blueprint) -> None:
    """Make ``bp`` answer every error of its views as an HTML page."""
    bp.register_error_handler(CSRFError, _page_csrf)
    bp.register_error_handler(HTTPException, page_http_error)
    bp.register_error_handler(SortpointError, _page_domain)
    bp.register_error_handler(Exception, _page_unexpected)


def json_error(status: int, code: str, message: str, headers: dict | None = None):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def _api_http(exc: HTTPException):
    status = exc.code or 500
    response = json_error(status, _HTTP_CODES.get(status, f"http_{status}"), exc.description)
    for name, value in exc.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _api_domain(exc: SortpointError):
    headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
    return json_error(exc.http_status, exc.code, exc.message, headers)


def _api_unexpected(exc: Exception):
    log.exception("unhandled error")
    return json_error(500, "internal_error", "internal error; the request was not applied")


def install_api(bp: Blueprint) -> None:
    """Make ``bp`` answer every error of its views as ``{"error": {"code", "message"}}``."""
    bp.register_error_handler(HTTPException, _api_http)
    bp.register_error_handler(SortpointError, _api_domain)
    bp.register_error_handler(Exception, _api_unexpected)
