"""Kiosk request authentication: HMAC-SHA256 signatures (docs/protocol.md, "Signing").

A request is accepted when all four ``X-`` headers are present, the timestamp
is within ``SIGNATURE_MAX_SKEW_S`` of the server clock, the kiosk exists and
its signature over ``METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nSHA256(BODY)`` matches
(constant-time compare), the kiosk is enabled, and the nonce was not seen
before.  Nonces are stored in ``request_nonces`` (unique per kiosk) inside the
request's own transaction, so two copies of one request racing each other
cannot both pass; nonces older than any still-valid timestamp are purged.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re

from sqlalchemy import bindparam, delete, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from backend.errors import Unauthorized
from backend.models import Kiosk, RequestNonce
from backend.services._sql import insert_ignore_for
from backend.services.ingest_store import KioskContext, kiosk_context
from protocol import signing

NONCES = RequestNonce.__table__
KIOSKS = Kiosk.__table__
_TIMESTAMP_RE = re.compile(r"\d{1,12}")
_NONCE_RE = re.compile(
    rf"[\x21-\x7e]{{{signing.MIN_NONCE_LEN},{signing.MAX_NONCE_LEN}}}"
)
#: last_seen_at is refreshed at most this often, so most requests write nothing for it
LAST_SEEN_RESOLUTION_S = 60
#: purge expired nonces on every Nth authenticated request of this process
PURGE_EVERY = 200
_requests = itertools.count(1)


_TOUCH = (
    update(KIOSKS)
    .where(KIOSKS.c.id == bindparam("kiosk_id"))
    .values(last_seen_at=bindparam("seen_at"))
)


def _fail(code: str, message: str) -> Unauthorized:
    return Unauthorized(message, code=code)


def request_target(environ: dict, path: str, query: bytes) -> str:
    """Return the path with its query string exactly as the client sent it."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return raw
    return path + ("?" + query.decode("latin-1") if query else "")


def authenticate(
    session: Session,
    *,
    headers,
    method: str,
    target: str,
    body: bytes,
    now: dt.datetime,
    max_skew_s: int,
    rules_until: dt.datetime | None = None,
) -> KioskContext:
    """Check a request's signature and record its nonce; raise Unauthorized (401) if not acceptable.

    Returns the kiosk with its setup (rule versions up to ``rules_until``,
    default ``now``), loaded in the same query as its secret.
    """
    kiosk_id = headers.get(signing.HEADER_KIOSK)
    timestamp = headers.get(signing.HEADER_TIMESTAMP)
    nonce = headers.get(signing.HEADER_NONCE)
    signature = headers.get(signing.HEADER_SIGNATURE)
    if not (kiosk_id and timestamp and nonce and signature):
        raise _fail(
            "signature_missing",
            "X-Kiosk-Id, X-Timestamp, X-Nonce and X-Signature are required",
        )
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise _fail("signature_invalid", "X-Timestamp must be Unix seconds")
    if abs(now.timestamp() - int(timestamp)) > max_skew_s:
        raise _fail(
            "signature_stale",
            f"X-Timestamp is more than {max_skew_s} s from the server clock",
        )
    if not _NONCE_RE.fullmatch(nonce):
        raise _fail(
            "signature_invalid", "X-Nonce must be 16 to 128 printable ASCII characters"
        )
    conn = session.connection()
    kiosk = kiosk_context(conn, kiosk_id, rules_until or now)
    # an unknown kiosk costs the same HMAC as a known one and gets the same answer
    secret = kiosk.secret if kiosk is not None else "unknown-kiosk"
    expected = signing.sign(secret, method, target, timestamp, nonce, body)
    if kiosk is None or not signing.signatures_match(expected, signature):
        raise _fail("signature_invalid", "unknown kiosk or wrong signature")
    if not kiosk.enabled:
        raise _fail("kiosk_disabled", f"kiosk {kiosk_id} is disabled")
    _record_nonce(conn, kiosk_id, nonce, now)
    _touch(conn, kiosk_id, kiosk.last_seen_at, now)
    if next(_requests) % PURGE_EVERY == 0:
        purge_nonces(session, now, max_skew_s)
    return kiosk


@functools.lru_cache(maxsize=4)
def _insert_nonce(dialect: str):
    # RETURNING rather than rowcount: SQLAlchemy does not report a rowcount for INSERTs
    return insert_ignore_for(dialect, NONCES, ["kiosk_id", "nonce"]).returning(
        NONCES.c.nonce
    )


def _record_nonce(
    conn: Connection, kiosk_id: str, nonce: str, now: dt.datetime
) -> None:
    """Store the nonce; a second use inside the window is a replay."""
    params = {"kiosk_id": kiosk_id, "nonce": nonce, "seen_at": now}
    if conn.execute(_insert_nonce(conn.dialect.name), params).first() is None:
        raise _fail(
            "nonce_reused", "this nonce was used before; sign every request afresh"
        )


def _touch(
    conn: Connection, kiosk_id: str, last_seen: dt.datetime | None, now: dt.datetime
) -> None:
    if last_seen is None or (now - last_seen).total_seconds() >= LAST_SEEN_RESOLUTION_S:
        conn.execute(_TOUCH, {"kiosk_id": kiosk_id, "seen_at": now})


def purge_nonces(session: Session, now: dt.datetime, max_skew_s: int) -> int:
    """Delete nonces no valid timestamp can reuse any more; return how many."""
    # a timestamp may be max_skew_s ahead when first used and is valid until
    # max_skew_s behind, so a nonce can come back for up to 2 * max_skew_s
    cutoff = now - dt.timedelta(seconds=2 * max_skew_s + 60)
    return session.execute(delete(NONCES).where(NONCES.c.seen_at < cutoff)).rowcount
