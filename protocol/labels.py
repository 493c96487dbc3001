"""Signed bag labels: the ASCII payload printed in a household's QR codes.

Format (see docs/protocol.md)::

    SP1.<community>.<household>.<serial>.<signature>

* ``community``: the community slug, ``[a-z0-9][a-z0-9-]{0,39}``
* ``household``: the household code, ``[A-Za-z0-9][A-Za-z0-9-]{0,31}``
* ``serial``: the label serial, Crockford base32 upper case, 6..20 chars
* ``signature``: unpadded base64url of the Ed25519 signature over the UTF-8
  (ASCII) bytes of everything before the last dot, ``SP1.c.h.s``.

Ed25519 is asymmetric, so a kiosk holding only the community's public key
verifies labels offline and a stolen kiosk cannot mint new ones.  The payload
is pure ASCII because pyzbar mis-decodes non-ASCII QR payloads as Shift-JIS.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from protocol import ProtocolError

VERSION = "SP1"
MAX_PAYLOAD_LEN = 200
COMMUNITY_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
HOUSEHOLD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
SERIAL_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{6,20}")
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{86}")
#: a whole well-formed label in one match (``parse_label``'s common case): the
#: parts above, and a canonical signature, whose last character's 4 spare bits
#: are zero (A, Q, g or w)
_LABEL_RE = re.compile(
    rf"{VERSION}\.({COMMUNITY_RE.pattern})\.({HOUSEHOLD_RE.pattern})"
    rf"\.({SERIAL_RE.pattern})\.([A-Za-z0-9_-]{{85}}[AQgw])"
)
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


class LabelError(ProtocolError):
    """A label payload that cannot be trusted."""

    code = "label_invalid"


class LabelFormatError(LabelError):
    """The payload is not a well-formed sortpoint label."""

    code = "label_malformed"


class LabelSignatureError(LabelError):
    """The payload is well formed but its signature does not verify."""

    code = "label_bad_signature"


@dataclass(frozen=True, slots=True)
class LabelClaims:
    """What a label says: which community, household and serial."""

    community: str
    household: str
    serial: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_serial(length: int = 10) -> str:
    """Return a random label serial (Crockford base32, 5 bits a character)."""
    return "".join(secrets.choice(_CROCKFORD) for _ in range(length))


def check_claims(community: str, household: str, serial: str) -> None:
    """Raise LabelFormatError unless each field matches its charset."""
    for name, value, pattern in (
        ("community", community, COMMUNITY_RE),
        ("household", household, HOUSEHOLD_RE),
        ("serial", serial, SERIAL_RE),
    ):
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise LabelFormatError(f"invalid {name} {value!r} for a label")


def _signed_part(claims: LabelClaims) -> str:
    return f"{VERSION}.{claims.community}.{claims.household}.{claims.serial}"


def encode_label(private_key: Ed25519PrivateKey, claims: LabelClaims) -> str:
    """Return the signed ASCII payload for ``claims``."""
    check_claims(claims.community, claims.household, claims.serial)
    body = _signed_part(claims)
    return f"{body}.{_b64url(private_key.sign(body.encode('ascii')))}"


def parse_label(payload: str) -> tuple[LabelClaims, bytes]:
    """Split a payload into its claims and raw signature, without verifying.

    The payload is taken exactly: whitespace around it (a scanner's line end)
    is the reader's to remove (``kiosk.labels``), never part of a label.
    """
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_LEN or not payload.isascii():
        raise LabelFormatError("label payload is not a short ASCII string")
    whole = _LABEL_RE.fullmatch(payload)
    if whole is not None:  # every check of _parse_parts, in one match
        community, household, serial, sig = whole.groups()
        return LabelClaims(community, household, serial), _unb64url(sig)
    return _parse_parts(payload)


def _parse_parts(payload: str) -> tuple[LabelClaims, bytes]:
    """Check an ASCII payload part by part; raise with the first failing check."""
    if payload != payload.strip():
        raise LabelFormatError("label payload has whitespace around it")
    parts = payload.split(".")
    if len(parts) != 5 or parts[0] != VERSION:
        raise LabelFormatError("label payload is not in the SP1 format")
    _, community, household, serial, sig = parts
    check_claims(community, household, serial)
    if not _SIG_RE.fullmatch(sig):
        raise LabelFormatError("label signature is not 64 bytes of base64url")
    raw = _unb64url(sig)
    # 86 characters carry 516 bits for 512: the last one's 4 spare bits must be
    # zero, or one signature would have 16 spellings that all verify.
    if _b64url(raw) != sig:
        raise LabelFormatError("label signature is not canonical base64url")
    return LabelClaims(community, household, serial), raw


def verify_label(payload: str, public_key: Ed25519PublicKey) -> LabelClaims:
    """Return the claims of ``payload`` if its signature verifies, else raise."""
    claims, signature = parse_label(payload)
    try:
        public_key.verify(signature, _signed_part(claims).encode("ascii"))
    except InvalidSignature:
        raise LabelSignatureError("label signature does not verify") from None
    return claims


def generate_private_key() -> Ed25519PrivateKey:
    """Return a new Ed25519 signing key for a community."""
    return Ed25519PrivateKey.generate()


def private_key_to_text(key: Ed25519PrivateKey) -> str:
    """Serialise a private key as unpadded base64url of its 32 raw bytes."""
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return _b64url(raw)


def private_key_from_text(text: str) -> Ed25519PrivateKey:
    """Load a private key written by ``private_key_to_text``."""
    try:
        return Ed25519PrivateKey.from_private_bytes(_unb64url(text))
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"not an Ed25519 private key: {exc}") from None


def public_key_to_text(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """Serialise a public key as unpadded base64url of its 32 raw bytes."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _b64url(raw)


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """Load a public key written by ``public_key_to_text``."""
    try:
        return Ed25519PublicKey.from_public_bytes(_unb64url(text))
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"not an Ed25519 public key: {exc}") from None
