"""Kiosk request authentication: HMAC-SHA256 signatures (docs/protocol.md, "Signing").

A request is accepted when all four ``X-`` headers are present, the timestamp
is within ``SIGNATURE_MAX_SKEW_S`` of the server clock, the kiosk exists and
its signature over ``METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nSHA256(BODY)`` matches
(constant-time compare), the kiosk is enabled, and the nonce was not seen
before.  Nonces are stored in ``request_nonces`` (unique per kiosk) inside the
request's own transaction, so two copies of one request racing each other
cannot both pass; nonces older than any still-valid timestamp are purged.

With a ``KioskCache`` a request usually costs one statement here: the nonce
INSERT, which also checks that the kept kiosk copy is still current
(``kiosk_cache``); a stale copy falls back to a fresh load and the same checks.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import re

from sqlalchemy import Integer, bindparam, delete, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from backend.core.errors import Unauthorized
from backend.core.sql import insert_ignore_for
from backend.deposits.context import KioskContext, kiosk_context, nonce_if_current_sql
from backend.kiosk_api.kiosk_cache import KioskCache
from backend.kiosk_api.models import RequestNonce
from backend.registry.models import Community, Kiosk
from protocol import signing

NONCES = RequestNonce.__table__
KIOSKS = Kiosk.__table__
COMMUNITIES = Community.__table__
_TIMESTAMP_RE = re.compile(r"\d{1,12}")
_NONCE_RE = re.compile(rf"[\x21-\x7e]{{{signing.MIN_NONCE_LEN},{signing.MAX_NONCE_LEN}}}")
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
    """Return the PATH line the signature covers (docs/protocol.md, "The string to sign").

    The path as the app routes it: ``path`` (werkzeug's ``request.path``,
    percent-escapes decoded) behind the app's mount point (``SCRIPT_NAME``),
    then ``?`` and the query string as sent, if there is one.  Not the raw
    request target: granian, the production server, hands the app none (its
    WSGI environ has PATH_INFO decoded and no RAW_URI or REQUEST_URI; it even
    starts from the process's own environment, where such a name would be the
    same for every request), so no server's raw target is read.
    """
    root = environ.get("SCRIPT_NAME", "")
    if root:  # WSGI strings are latin-1 spellings of the bytes, as werkzeug decodes them
        root = root.encode("latin-1").decode("utf-8", "replace")
    return root + path + ("?" + query.decode("latin-1") if query else "")


def _check_headers(headers, now: dt.datetime, max_skew_s: int) -> tuple[str, ...]:
    """Return (kiosk id, timestamp, nonce, signature) if well-formed and fresh."""
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
        raise _fail("signature_invalid", "X-Nonce must be 16 to 128 printable ASCII characters")
    return kiosk_id, timestamp, nonce, signature


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
    cache: KioskCache | None = None,
) -> KioskContext:
    """Check a request's signature and record its nonce; raise Unauthorized (401) if not acceptable.

    Returns the kiosk with its setup, loaded in the same query as its secret:
    rule versions up to ``rules_until`` (default ``now``), or every version
    when a ``cache`` is given.  With a cache, a kept copy of the kiosk saves
    that query; the nonce INSERT then also checks that the copy is still
    current (``kiosk_cache``) and a stale copy is replaced by a fresh load.
    """
    kiosk_id, timestamp, nonce, signature = _check_headers(headers, now, max_skew_s)
    conn = session.connection()
    signed = (method, target, timestamp, nonce, body)
    use_cache = cache is not None and cache.enabled
    kept = cache.get(kiosk_id) if use_cache else None
    if (
        kept is not None
        and _signed_by(kept.hmac_key, signed, signature)
        and _record_nonce_if_current(conn, kept, nonce, now)
    ):
        _after_nonce(session, kept, now, max_skew_s, cache)
        return kept
    if use_cache:
        cache.forget(kiosk_id)
    kiosk = kiosk_context(conn, kiosk_id, None if use_cache else (rules_until or now))
    # an unknown kiosk costs the same HMAC as a known one and gets the same answer
    secret = kiosk.hmac_key if kiosk is not None else "unknown-kiosk"
    if kiosk is None or not _signed_by(secret, signed, signature):
        raise _fail("signature_invalid", "unknown kiosk or wrong signature")
    if not kiosk.enabled:
        raise _fail("kiosk_disabled", f"kiosk {kiosk_id} is disabled")
    _record_nonce(conn, kiosk_id, nonce, now)
    if use_cache:
        cache.put(kiosk)
    _after_nonce(session, kiosk, now, max_skew_s, cache)
    return kiosk


def kept_kiosk(
    *,
    headers,
    method: str,
    target: str,
    body: bytes,
    now: dt.datetime,
    max_skew_s: int,
    cache: KioskCache | None,
) -> tuple[KioskContext, str] | None:
    """Return (kept kiosk copy, nonce) when the request is signed by a kept copy with no upkeep due.

    For the one-round-trip deposit (``ingest.apply_one_fn``), which records the
    nonce itself while the copy is current.  None: authenticate as usual.
    Malformed or stale headers raise Unauthorized, as ``authenticate`` would.
    """
    kiosk_id, timestamp, nonce, signature = _check_headers(headers, now, max_skew_s)
    kept = cache.get(kiosk_id) if cache is not None and cache.enabled else None
    if kept is None or _touch_due(kept.last_seen_at, now):
        return None
    if not _signed_by(kept.hmac_key, (method, target, timestamp, nonce, body), signature):
        return None
    return kept, nonce


def purge_due() -> bool:
    """Count one authenticated request; True on every ``PURGE_EVERY``-th (``purge_nonces``)."""
    return next(_requests) % PURGE_EVERY == 0


def _signed_by(secret: str, signed: tuple, signature: str) -> bool:
    return signing.signatures_match(signing.sign(secret, *signed), signature)


def _after_nonce(
    session: Session,
    kiosk: KioskContext,
    now: dt.datetime,
    max_skew_s: int,
    cache: KioskCache | None,
) -> None:
    """Refresh last_seen_at now and then; purge expired nonces now and then."""
    touched = _touch(session.connection(), kiosk.ref.kiosk_id, kiosk.last_seen_at, now)
    if touched and cache is not None:
        cache.seen(kiosk.ref.kiosk_id, now)
    if purge_due():
        purge_nonces(session, now, max_skew_s)


@functools.lru_cache(maxsize=4)
def _insert_nonce(dialect: str):
    # RETURNING rather than rowcount: SQLAlchemy does not report a rowcount for INSERTs
    return insert_ignore_for(dialect, NONCES, ["kiosk_id", "nonce"]).returning(NONCES.c.nonce)


@functools.lru_cache(maxsize=1)
def _insert_nonce_if_current():
    """INSERT the nonce only if a kept kiosk copy still matches the database.

    The statement is ``context.nonce_if_current_sql``, the same text the
    PostgreSQL one-deposit function runs; typed parameters, so SQLite gets its
    UTC timestamps as the column stores them.
    """
    sql = nonce_if_current_sql(
        kiosk_id=":kiosk_id",
        nonce=":nonce",
        seen_at=":seen_at",
        secret_as_stored=":secret_as_stored",
        timezone=":timezone",
        label_key=":label_key",
        rules_mark=":rules_mark",
    )
    # SQLite reads "ON CONFLICT" after INSERT ... SELECT as an upsert because
    # the SELECT has a WHERE clause
    return text(sql + " RETURNING nonce").bindparams(
        bindparam("kiosk_id", type_=NONCES.c.kiosk_id.type),
        bindparam("nonce", type_=NONCES.c.nonce.type),
        bindparam("seen_at", type_=NONCES.c.seen_at.type),
        bindparam("secret_as_stored", type_=KIOSKS.c.secret.type),
        bindparam("timezone", type_=COMMUNITIES.c.timezone.type),
        bindparam("label_key", type_=COMMUNITIES.c.label_public_key.type),
        bindparam("rules_mark", type_=Integer()),
    )


def _record_nonce(conn: Connection, kiosk_id: str, nonce: str, now: dt.datetime) -> None:
    """Store the nonce; a second use inside the window is a replay."""
    params = {"kiosk_id": kiosk_id, "nonce": nonce, "seen_at": now}
    if conn.execute(_insert_nonce(conn.dialect.name), params).first() is None:
        raise _fail("nonce_reused", "this nonce was used before; sign every request afresh")


def _record_nonce_if_current(
    conn: Connection, kiosk: KioskContext, nonce: str, now: dt.datetime
) -> bool:
    """Store the nonce if ``kiosk`` is still current; False if not stored (stale or replay)."""
    ref = kiosk.ref
    params = {
        "kiosk_id": ref.kiosk_id,
        "nonce": nonce,
        "seen_at": now,
        "secret_as_stored": kiosk.secret_as_stored,
        "timezone": ref.timezone,
        "label_key": ref.label_public_key,
        "rules_mark": kiosk.rules_mark,
    }
    return conn.execute(_insert_nonce_if_current(), params).first() is not None


def _touch_due(last_seen: dt.datetime | None, now: dt.datetime) -> bool:
    return last_seen is None or (now - last_seen).total_seconds() >= LAST_SEEN_RESOLUTION_S


def _touch(
    conn: Connection, kiosk_id: str, last_seen: dt.datetime | None, now: dt.datetime
) -> bool:
    if _touch_due(last_seen, now):
        conn.execute(_TOUCH, {"kiosk_id": kiosk_id, "seen_at": now})
        return True
    return False


def purge_nonces(session: Session, now: dt.datetime, max_skew_s: int) -> int:
    """Delete nonces no valid timestamp can reuse any more; return how many."""
    # a timestamp may be max_skew_s ahead when first used and is valid until
    # max_skew_s behind, so a nonce can come back for up to 2 * max_skew_s
    cutoff = now - dt.timedelta(seconds=2 * max_skew_s + 60)
    return session.execute(delete(NONCES).where(NONCES.c.seen_at < cutoff)).rowcount
