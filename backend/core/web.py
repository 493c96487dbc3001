"""Error answers per area of the app: each blueprint decides how its errors look.

A blueprint's own handlers catch what its views raise.  Routing errors (404,
405) happen before any blueprint is chosen, so the app has one handler for them
that asks which area the path belongs to (``claim_path_prefix``) and lets that
area answer; a path no area claims gets Flask's default answer.  The app itself
decides nothing for pages that do not exist yet.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, request
from werkzeug.exceptions import HTTPException

_PREFIXES = "sortpoint.error_prefixes"

HttpErrorHandler = Callable[[HTTPException], object]


def claim_path_prefix(app: Flask, prefix: str, handler: HttpErrorHandler) -> None:
    """Let ``handler`` answer routing errors (404, 405) of paths under ``prefix``."""
    prefixes = app.extensions.get(_PREFIXES)
    if prefixes is None:
        prefixes = app.extensions[_PREFIXES] = []
        app.register_error_handler(HTTPException, _routing_error)
    prefixes.append((prefix.rstrip("/") + "/", handler))
    prefixes.sort(key=lambda entry: len(entry[0]), reverse=True)  # the most specific first


def _routing_error(exc: HTTPException):
    from flask import current_app

    path = request.path
    for prefix, handler in current_app.extensions[_PREFIXES]:
        if path.startswith(prefix) or path == prefix.rstrip("/"):
            return handler(exc)
    return exc  # Flask's own answer
