"""The API endpoints: health, signed deposit ingest, signed kiosk config, OpenAPI."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, Response, current_app, request
from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from backend.core.db import db
from backend.deposits import ingest
from backend.kiosk_api import auth, envelope, errors, kiosk_cache, openapi, schemas
from backend.kiosk_api.kiosk_config import build_config

bp = Blueprint("api", __name__, url_prefix="/api")
errors.install(bp)
bp.before_request(envelope.check_request)  # 415 and 413 before authentication


def _json(payload: bytes, status: int = 200) -> Response:
    return Response(payload, status=status, mimetype="application/json")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _authenticate(session, body: bytes, now: dt.datetime, until: dt.datetime | None = None):
    return auth.authenticate(
        session,
        headers=request.headers,
        method=request.method,
        target=auth.request_target(request.environ, request.path, request.query_string),
        body=body,
        now=now,
        max_skew_s=current_app.config["SIGNATURE_MAX_SKEW_S"],
        rules_until=until,
        cache=kiosk_cache.for_app(current_app),
    )


@bp.get("/v1/health")
def health():
    """Answer 200 when the app can reach its database (unsigned)."""
    with db.read() as session:  # never queues behind SQLite's writer
        session.execute(text("SELECT 1"))
    health = schemas.Health(status="ok", database=db.dialect, server_time=_now())
    return _json(schemas.encode(health))  # the same encoder as every answer: UTC as `Z`


@bp.post("/v1/deposits")
def post_deposits():
    """Apply a signed batch of deposits; 200 with one result per item, in order."""
    body = request.get_data(cache=False)
    config = current_app.config
    limits = ingest.Limits(config["DEPOSIT_MAX_AGE_S"], config["DEPOSIT_MAX_AHEAD_S"])

    if db.dialect == "postgresql":
        outcome = _one_round_trip(body, limits)
        if outcome is not None:
            return _json(schemas.encode({"results": [outcome.to_json()]}))

    def work(session, attempt):
        now = _now()
        kiosk = _authenticate(session, body, now, ingest.rules_until(now, limits))
        batch = schemas.decode_batch(body, config["MAX_BATCH"])
        return ingest.apply_batch(
            session, kiosk, batch.deposits, limits=limits, now=now, recheck=attempt > 1
        )

    outcomes = ingest.in_transaction(db, work)
    return _json(schemas.encode({"results": [o.to_json() for o in outcomes]}))


def _one_round_trip(body: bytes, limits: ingest.Limits) -> ingest.Outcome | None:
    """PostgreSQL: one new deposit from a kept kiosk in one call; None: the general path."""
    config = current_app.config
    now = _now()
    kept = auth.kept_kiosk(
        headers=request.headers,
        method=request.method,
        target=auth.request_target(request.environ, request.path, request.query_string),
        body=body,
        now=now,
        max_skew_s=config["SIGNATURE_MAX_SKEW_S"],
        cache=kiosk_cache.for_app(current_app),
    )
    if kept is None:
        return None
    try:
        batch = schemas.decode_batch(body, config["MAX_BATCH"])
    except HTTPException:
        return None  # answered after authentication by the general path
    if len(batch.deposits) != 1:
        return None
    kiosk, nonce = kept
    outcome = ingest.apply_one_fn(
        db.engine, kiosk, nonce, batch.deposits[0], limits=limits, now=now
    )
    if outcome is not None and auth.purge_due():
        with db.begin() as session:
            auth.purge_nonces(session, now, config["SIGNATURE_MAX_SKEW_S"])
    return outcome


@bp.get("/v1/kiosk/config")
def kiosk_config():
    """Return the signed kiosk's doors, categories, label key, rules and revoked serials."""
    now = _now()
    with db.begin() as session:  # the nonce is the only write
        kiosk = _authenticate(session, request.get_data(cache=False), now)
    with db.read() as session:
        payload = build_config(session, kiosk, now, current_app.config)
    return _json(schemas.encode(payload))


@bp.get("/openapi.json")
def openapi_document():
    """Return the OpenAPI 3.1 document generated from the schemas that validate."""
    return _json(openapi.document_bytes(current_app.config["MAX_BATCH"]))
