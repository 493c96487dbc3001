"""Passwords (argon2id) and API tokens (random, stored as SHA-256 with a public prefix).

A password is slow to check on purpose: people choose guessable ones.  A token
is 32 random bytes: nobody can guess it, so a fast SHA-256 of it stored in the
database is enough (a dump reveals no usable token), and its public prefix
finds its row without scanning.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

#: argon2-cffi's defaults (RFC 9106's low-memory profile: argon2id, 64 MiB, t=3, p=4);
#: when they change, the next login rehashes the password (``check_password``)
HASHER = PasswordHasher()
TOKEN_MARK = "spt"
PREFIX_CHARS = string.ascii_lowercase + string.digits
PREFIX_LENGTH = 10
PASSWORD_CHARS = string.ascii_letters + string.digits
PASSWORD_LENGTH = 16

#: checked against for an unknown user name, so its answer takes as long as a wrong password
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))


def new_password() -> str:
    """Return a generated password: 16 letters and digits (about 95 bits)."""
    return "".join(secrets.choice(PASSWORD_CHARS) for _ in range(PASSWORD_LENGTH))


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def check_password(stored: str | None, password: str) -> tuple[bool, str | None]:
    """Return (matches, a new hash to store when the parameters changed, else None)."""
    try:
        HASHER.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False, None
    if stored is None:
        return False, None
    return True, (HASHER.hash(password) if HASHER.check_needs_rehash(stored) else None)


def new_token() -> tuple[str, str, str]:
    """Return (token, prefix, SHA-256 hex): ``spt_<prefix>_<43 characters>``."""
    prefix = "".join(secrets.choice(PREFIX_CHARS) for _ in range(PREFIX_LENGTH))
    token = f"{TOKEN_MARK}_{prefix}_{secrets.token_urlsafe(32)}"
    return token, prefix, token_sha256(token)


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_prefix(token: str) -> str | None:
    """Return the prefix of a well-formed token, else None."""
    mark, _, rest = token.partition("_")
    prefix, _, secret = rest.partition("_")
    if mark != TOKEN_MARK or len(prefix) != PREFIX_LENGTH or not secret:
        return None
    if any(c not in PREFIX_CHARS for c in prefix):
        return None
    return prefix


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
