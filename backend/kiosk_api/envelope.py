"""The envelope of a kiosk API request, checked before authentication (docs/protocol.md).

Only what the request says about its body, never what the body means (that
comes after the signature):

* a request with a body (POST) declares ``Content-Type: application/json``,
  optionally with ``charset=utf-8`` and no other parameter: 415 otherwise;
* its body is at most ``MAX_CONTENT_LENGTH`` (4 MiB): 413 otherwise, with a
  Content-Length (werkzeug refuses a larger one before reading) or chunked.
  werkzeug reads a chunked body up to the limit and returns what it read, so
  an oversized one would reach the signature check cut short (401); here one
  byte past the limit is looked for, and answered 413.

The body read here is kept on the request (``get_data``), so the view reads
the same bytes without reading the stream again.
"""

from __future__ import annotations

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

JSON = "application/json"


def check_request() -> None:
    """Refuse a POST whose Content-Type is not JSON (415) or whose body is too large (413)."""
    if request.method != "POST":
        return
    _check_content_type()
    _read_body()


def _check_content_type() -> None:
    params = request.mimetype_params
    charset = params.get("charset", "utf-8").lower()
    if request.mimetype != JSON or charset != "utf-8" or params.keys() - {"charset"}:
        raise UnsupportedMediaType(
            f"Content-Type must be {JSON} (charset utf-8 if given), not "
            f"{request.content_type or 'missing'!r}"
        )


def _read_body() -> None:
    body = request.get_data()  # kept for the view; 413 here if Content-Length is over the limit
    limit = request.max_content_length
    if (
        request.content_length is None
        and limit is not None
        and len(body) >= limit
        and request.environ["wsgi.input"].read(1)
    ):
        raise RequestEntityTooLarge(f"the body is over {limit} bytes")
