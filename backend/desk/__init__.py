"""The redemption desk: a community's reward catalog, redemptions, receipts and voids.

Above ``people`` (whose ``Actor`` scopes every service here) and ``ledger``
(whose ``post_many`` and ``reverse`` move the points): a redemption's debit,
its stock decrements and its record are one transaction under an idempotency
key; a void is a reversing entry and the stock back, within
``SORTPOINT_VOID_WINDOW_S`` (default 24 h).  docs/api.md describes the API,
docs/cli.md ``sortpoint reward``.

``init_app`` registers the token API's desk endpoints under ``/api/v1/``.
"""

from __future__ import annotations

import os

from flask import Flask

#: a redemption may be voided for this long (seconds) after it was made
DEFAULT_VOID_WINDOW_S = 24 * 3600


def init_app(app: Flask) -> None:
    """Register the desk's API (bearer tokens: no CSRF) and its configuration on ``app``."""
    from backend.desk import views
    from backend.people import csrf

    app.config.setdefault(
        "VOID_WINDOW_S", int(os.environ.get("SORTPOINT_VOID_WINDOW_S", DEFAULT_VOID_WINDOW_S))
    )
    csrf.exempt(views.api)  # bearer tokens, never cookies
    app.register_blueprint(views.api)
