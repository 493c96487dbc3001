"""HMAC-SHA256 request signatures between a kiosk and the backend.

The string to sign is five lines joined by ``\\n`` (no trailing newline)::

    METHOD
    PATH                 (with its query string, as sent)
    TIMESTAMP            (Unix seconds, decimal)
    NONCE                (>= 16 characters, unique per request)
    SHA256_HEX_OF_BODY   (lowercase hex; of b"" for an empty body)

keyed with the kiosk secret's UTF-8 bytes, exactly as ``sortpoint kiosk
register`` printed it.  The signature is lowercase hex.  See docs/protocol.md.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

HEADER_KIOSK = "X-Kiosk-Id"
HEADER_TIMESTAMP = "X-Timestamp"
HEADER_NONCE = "X-Nonce"
HEADER_SIGNATURE = "X-Signature"
MAX_SKEW_S = 300
MIN_NONCE_LEN = 16
MAX_NONCE_LEN = 128


def string_to_sign(method: str, path: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """Return the canonical bytes a request signature covers."""
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join((method.upper(), path, timestamp, nonce, digest)).encode("utf-8")


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Return the lowercase hex HMAC-SHA256 of a request."""
    message = string_to_sign(method, path, timestamp, nonce, body)
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signatures_match(expected: str, given: str) -> bool:
    """Compare two hex signatures in constant time."""
    return hmac.compare_digest(
        expected.encode("ascii", "replace"), given.encode("ascii", "replace")
    )


def signed_headers(
    kiosk_id: str,
    secret: str,
    method: str,
    path: str,
    body: bytes,
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Return the four X- headers that authenticate one request."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or secrets.token_hex(16)
    return {
        HEADER_KIOSK: kiosk_id,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: sign(secret, method, path, timestamp, nonce, body),
    }
