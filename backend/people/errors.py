"""Error answers: HTML for the pages (``/account/``), JSON for the token API (``/api/v1/``, ``core.json_errors``)."""

from __future__ import annotations

import logging

from flask import Blueprint, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from backend.core import json_errors
from backend.core.errors import SortpointError

log = logging.getLogger(__name__)


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


def install_api(bp: Blueprint) -> None:
    """Make ``bp`` answer every error of its views as JSON, a 401 with a Bearer challenge."""
    json_errors.install(bp, challenge="Bearer")
