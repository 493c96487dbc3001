"""The kiosk API's use cases, one function each: they own their transactions, views only call them.

``upload`` (POST /api/v1/deposits), ``kiosk_config`` (GET /api/v1/kiosk/config)
and ``health`` take what the request carried (``SignedRequest``) and the
server's settings (``ApiSettings``), and return what the view encodes.  No
Flask here: the views read the request and the app's config.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import text
from werkzeug.exceptions import HTTPException

from backend.core.db import db
from backend.deposits import ingest
from backend.deposits.context import KioskContext
from backend.kiosk_api import auth, schemas
from backend.kiosk_api.kiosk_cache import KioskCache
from backend.kiosk_api.kiosk_config import build_config


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A kiosk's request as signed: method, target as sent, headers, body."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """The server's settings the kiosk API answers by (the app's config, and its kiosk cache)."""

    max_batch: int
    max_skew_s: int
    limits: ingest.Limits
    cache: KioskCache | None

    @classmethod
    def from_config(cls, config: Mapping, cache: KioskCache | None) -> ApiSettings:
        """Read ``MAX_BATCH``, ``SIGNATURE_MAX_SKEW_S`` and the deposit limits from ``config``."""
        return cls(
            max_batch=config["MAX_BATCH"],
            max_skew_s=config["SIGNATURE_MAX_SKEW_S"],
            limits=ingest.Limits(config["DEPOSIT_MAX_AGE_S"], config["DEPOSIT_MAX_AHEAD_S"]),
            cache=cache,
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def health() -> schemas.Health:
    """Check that the database answers (a read-only transaction of one SELECT)."""
    with db.read() as session:  # never queues behind SQLite's writer
        session.execute(text("SELECT 1"))
    return schemas.Health(status="ok", database=db.dialect, server_time=_now())


def upload(request: SignedRequest, settings: ApiSettings) -> list[ingest.Outcome]:
    """Authenticate a signed batch of deposits and apply it exactly once; one outcome per item.

    On PostgreSQL a one-deposit request from a kept kiosk copy is first tried
    in one round trip (``ingest.apply_one_fn``); anything else, and whatever
    that call leaves, is one transaction: authentication (the nonce) and the
    batch, retried whole after a lost race.
    """
    if db.dialect == "postgresql":
        outcome = _one_round_trip(request, settings)
        if outcome is not None:
            return [outcome]

    def work(session, attempt: int) -> list[ingest.Outcome]:
        now = _now()
        limits = settings.limits
        kiosk = _authenticate(session, request, settings, now, ingest.rules_until(now, limits))
        batch = schemas.decode_batch(request.body, settings.max_batch)
        return ingest.apply_batch(session, kiosk, batch.deposits, limits=limits, now=now)

    return ingest.in_transaction(db, work)


def _one_round_trip(request: SignedRequest, settings: ApiSettings) -> ingest.Outcome | None:
    """PostgreSQL: one deposit from a kept kiosk in one call; None: the general path."""
    now = _now()
    kept = auth.kept_kiosk(
        headers=request.headers,
        method=request.method,
        target=request.target,
        body=request.body,
        now=now,
        max_skew_s=settings.max_skew_s,
        cache=settings.cache,
    )
    if kept is None:
        return None
    try:
        batch = schemas.decode_batch(request.body, settings.max_batch)
    except HTTPException:
        return None  # answered after authentication by the general path
    if len(batch.deposits) != 1:
        return None
    kiosk, nonce = kept
    outcome = ingest.apply_one_fn(
        db.engine, kiosk, nonce, batch.deposits[0], limits=settings.limits, now=now
    )
    if outcome is not None and auth.purge_due():
        with db.begin() as session:
            auth.purge_nonces(session, now, settings.max_skew_s)
    return outcome


def kiosk_config(
    request: SignedRequest, settings: ApiSettings, config: Mapping
) -> schemas.KioskConfig:
    """Authenticate a signed config request (its nonce is the only write), then read the config."""
    now = _now()
    with db.begin() as session:
        kiosk = _authenticate(session, request, settings, now)
    with db.read() as session:
        return build_config(session, kiosk, now, config)


def _authenticate(
    session,
    request: SignedRequest,
    settings: ApiSettings,
    now: dt.datetime,
    until: dt.datetime | None = None,
) -> KioskContext:
    return auth.authenticate(
        session,
        headers=request.headers,
        method=request.method,
        target=request.target,
        body=request.body,
        now=now,
        max_skew_s=settings.max_skew_s,
        rules_until=until,
        cache=settings.cache,
    )
