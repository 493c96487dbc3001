"""The kiosk API (docs/protocol.md): signed deposit ingest, kiosk config, OpenAPI.

``init_app`` registers the blueprint and its JSON errors: every 4xx and 5xx
answer under ``/api/`` is ``{"error": {"code": ..., "message": ...}}``, from the
blueprint's own handlers (what its views raise) and, for routing errors (404,
405) under its prefix, through ``core.web.claim_path_prefix``.  Other areas of
the app answer their errors their own way.
"""

from __future__ import annotations

from flask import Flask

from backend.core.web import claim_path_prefix


def init_app(app: Flask) -> None:
    """Register the API blueprint on ``app``; routing errors under its prefix answer JSON too."""
    from backend.core.json_errors import http_error
    from backend.kiosk_api.views import bp

    app.register_blueprint(bp)
    claim_path_prefix(app, bp.url_prefix, http_error)
