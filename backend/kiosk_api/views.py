"""The API endpoints: health, signed deposit ingest, signed kiosk config, OpenAPI.

Each view reads the request, calls one use case (``use_cases``, which owns
its transaction) and encodes the answer.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from backend.core import json_errors
from backend.kiosk_api import auth, envelope, kiosk_cache, openapi, schemas, use_cases

bp = Blueprint("api", __name__, url_prefix="/api")
json_errors.install(bp)
bp.before_request(envelope.check_request)  # 415 and 413 before authentication


def _json(payload: bytes, status: int = 200) -> Response:
    return Response(payload, status=status, mimetype="application/json")


def _signed_request() -> use_cases.SignedRequest:
    return use_cases.SignedRequest(
        method=request.method,
        target=auth.request_target(request.environ, request.path, request.query_string),
        headers=request.headers,
        body=request.get_data(cache=False),
    )


def _settings() -> use_cases.ApiSettings:
    return use_cases.ApiSettings.from_config(current_app.config, kiosk_cache.for_app(current_app))


@bp.get("/v1/health")
def health():
    """Answer 200 when the app can reach its database (unsigned)."""
    return _json(schemas.encode(use_cases.health()))  # the same encoder as every answer


@bp.post("/v1/deposits")
def post_deposits():
    """Apply a signed batch of deposits; 200 with one result per item, in order."""
    outcomes = use_cases.upload(_signed_request(), _settings())
    return _json(schemas.encode({"results": [o.to_json() for o in outcomes]}))


@bp.get("/v1/kiosk/config")
def kiosk_config():
    """Return the signed kiosk's doors, categories, label key, rules and revoked serials."""
    config = use_cases.kiosk_config(_signed_request(), _settings(), current_app.config)
    return _json(schemas.encode(config))


@bp.get("/openapi.json")
def openapi_document():
    """Return the OpenAPI 3.1 document generated from the schemas that validate."""
    return _json(openapi.document_bytes(current_app.config["MAX_BATCH"]))
