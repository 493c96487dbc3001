"""Secrets at rest: values the database keeps sealed under keys that are not in the database.

Kiosk secrets (HMAC keys) and each community's Ed25519 label-signing key are
stored sealed, so a database dump alone can neither mint labels nor
impersonate a kiosk.  A sealed value is text::

    spenc1:<key id>:<base64url(12-byte nonce | AES-256-GCM ciphertext and tag)>

The associated data is a *context* naming the value's place and owner (e.g.
``kiosks.secret:k_3hx9q2m7c4ab``), so a sealed value copied into another row
does not open.  The key id is derived from the key (``key_id``), never chosen.

The keys come from outside the database, newest first (the newest seals, every
one opens):

* ``SORTPOINT_SECRET_KEYS``: keys separated by commas or white space; or
* ``SORTPOINT_SECRET_KEYS_FILE``: a file of keys, one a line (``#`` comments);
* neither, on SQLite only (the demo, development): ``<instance folder>/secret-keys``,
  made with one fresh key on first use and kept.  On any other database a
  missing setting stops the app at start-up with a message naming it.

A key is 32 random bytes in base64url (``sortpoint secrets new-key`` prints one;
a Fernet key is accepted too).  Rotation: put a new key first, restart, run
``sortpoint secrets rotate`` (re-seals every stored value under the newest key),
then drop the old key (README "Production").
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import click
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "spenc1"
ENV_KEYS = "SORTPOINT_SECRET_KEYS"
ENV_KEYS_FILE = "SORTPOINT_SECRET_KEYS_FILE"
#: the embedded default's file name, in the instance folder (SQLite only)
DEFAULT_KEYS_FILE = "secret-keys"
KEY_BYTES = 32
NONCE_BYTES = 12
_EXTENSION = "sortpoint.secrets"
_SEALED_RE = re.compile(rf"{PREFIX}:([A-Za-z0-9_-]{{8}}):([A-Za-z0-9_-]+)")
_KEY_ID_DOMAIN = b"sortpoint secret key id\x00"
_FILE_HEADER = (
    "# sortpoint secret keys, newest first: the newest seals, every one opens (README 'Production').\n"
    "# Without this file the kiosk secrets and label keys in the database cannot be read: keep it.\n"
)
NEW_KEY_HINT = (
    "make a key with `sortpoint secrets new-key` or "
    "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
)


class SecretsError(click.ClickException):
    """Secret keys missing or unusable, or a stored value that does not open.

    The message names the setting or the stored value's owner, never a key or a
    secret.  Not a domain error (``SortpointError``): a request that meets it
    answers a plain 500 and the log has the message.  A ``ClickException``, so a
    ``sortpoint`` command prints it as one ``Error:`` line (exit 1) wherever it
    is raised, app start-up included, never a traceback.
    """


def new_key() -> str:
    """Return a fresh key: 32 random bytes, base64url without padding (43 characters)."""
    return secrets.token_urlsafe(KEY_BYTES)


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def key_id(key: bytes) -> str:
    """Return the key's id: 8 base64url characters of a SHA-256 of it (reveals nothing of it)."""
    return _b64encode(hashlib.sha256(_KEY_ID_DOMAIN + key).digest())[:8]


def parse_keys(text: str, source: str) -> list[bytes]:
    """Parse keys (newest first) separated by commas, white space or lines; ``#`` starts a comment."""
    keys: list[bytes] = []
    words = [
        word
        for line in text.splitlines()
        for word in re.split(r"[\s,]+", line.split("#", 1)[0])
        if word
    ]
    for number, word in enumerate(words, 1):
        try:
            key = _b64decode(word)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEY_BYTES or not re.fullmatch(r"[A-Za-z0-9_-]+=*", word):
            raise SecretsError(
                f"{source}: key {number} is not a key (32 bytes in base64url); {NEW_KEY_HINT}"
            )
        if key not in keys:
            keys.append(key)
    if not keys:
        raise SecretsError(f"{source} holds no key; {NEW_KEY_HINT}")
    return keys


def is_sealed(stored: str | None) -> bool:
    """True if ``stored`` has the sealed form (``spenc1:...``), False for a value in clear."""
    return stored is not None and _SEALED_RE.fullmatch(stored) is not None


def sealed_key_id(stored: str) -> str | None:
    """Return the id of the key ``stored`` is sealed under, None for a value in clear."""
    match = _SEALED_RE.fullmatch(stored or "")
    return match.group(1) if match else None


@dataclass(frozen=True)
class Keyring:
    """The secret keys, newest first, and where they came from (for messages)."""

    keys: tuple[bytes, ...]
    source: str

    def __post_init__(self) -> None:
        if not self.keys:
            raise SecretsError(f"{self.source} holds no key; {NEW_KEY_HINT}")

    @functools.cached_property
    def _by_id(self) -> dict[str, AESGCM]:
        return {key_id(k): AESGCM(k) for k in reversed(self.keys)}

    @property
    def primary_id(self) -> str:
        """The id of the newest key: the one that seals."""
        return key_id(self.keys[0])

    @property
    def ids(self) -> list[str]:
        """Every key's id, newest first."""
        return [key_id(k) for k in self.keys]

    def seal(self, plaintext: str, context: str) -> str:
        """Return ``plaintext`` sealed under the newest key, bound to ``context``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._by_id[self.primary_id].encrypt(
            nonce, plaintext.encode("utf-8"), context.encode("utf-8")
        )
        return f"{PREFIX}:{self.primary_id}:{_b64encode(nonce + sealed)}"

    def open(self, stored: str, context: str) -> str:
        """Return the plaintext of a sealed value; SecretsError if it does not open."""
        match = _SEALED_RE.fullmatch(stored or "")
        if match is None:
            raise SecretsError(
                f"{context} is stored in clear, not sealed: run `sortpoint secrets rotate`"
            )
        kid, data = match.groups()
        aead = self._by_id.get(kid)
        if aead is None:
            raise SecretsError(
                f"{context} is sealed under key {kid}, which is not among the secret keys of "
                f"{self.source} ({', '.join(self.ids)}): add that key back, after the newest"
            )
        try:
            raw = _b64decode(data)
            plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode("utf-8"))
        except (InvalidTag, ValueError, binascii.Error):
            raise SecretsError(
                f"{context} does not open with key {kid}: the stored value was altered "
                "or belongs to another row"
            ) from None
        return plain.decode("utf-8")

    def derived_keys(self, purpose: str) -> list[bytes]:
        """Return a key for ``purpose`` derived from each secret key, newest first.

        HMAC-SHA256(key, "sortpoint derived key\\0" + purpose): e.g. the Flask session's
        signing key, so every app server given the same keys signs the same way, and a
        rotated-out key still verifies (a fallback) until it is removed.
        """
        label = b"sortpoint derived key\x00" + purpose.encode("utf-8")
        return [hmac.new(k, label, hashlib.sha256).digest() for k in self.keys]

    def is_current(self, stored: str) -> bool:
        """True if ``stored`` is sealed under the newest key (nothing for a rotation to do)."""
        return sealed_key_id(stored) == self.primary_id


# ----------------------------------------------------------------- settings


def _from_file(path: Path, setting: str) -> Keyring:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretsError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    return Keyring(tuple(parse_keys(text, f"{setting} ({path})")), f"{setting} ({path})")


def _make_default_file(path: Path) -> None:
    """Write a key file with one fresh key, unless one exists (two processes may race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_FILE_HEADER + new_key() + "\n")
        try:
            os.link(tmp, path)  # atomic, and never replaces a file made meanwhile
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def resolve(
    config: Mapping, instance_path: str, database_url: str, environ: Mapping = os.environ
) -> Keyring:
    """Return the keyring the settings name (see the module's docstring).

    ``config`` may hold ``SECRET_KEYS`` (text, or a list of keys) and
    ``SECRET_KEYS_FILE``; else the environment's ``SORTPOINT_SECRET_KEYS`` and
    ``SORTPOINT_SECRET_KEYS_FILE`` apply.
    """
    keys = config.get("SECRET_KEYS") or environ.get(ENV_KEYS) or ""
    if not isinstance(keys, str):
        keys = "\n".join(k.decode() if isinstance(k, bytes) else k for k in keys)
    path = config.get("SECRET_KEYS_FILE") or environ.get(ENV_KEYS_FILE) or ""
    if keys.strip() and str(path).strip():
        raise SecretsError(f"set {ENV_KEYS} or {ENV_KEYS_FILE}, not both")
    if keys.strip():
        return Keyring(tuple(parse_keys(keys, ENV_KEYS)), ENV_KEYS)
    if str(path).strip():
        return _from_file(Path(path).expanduser(), ENV_KEYS_FILE)
    default = Path(instance_path) / DEFAULT_KEYS_FILE
    if database_url.startswith("sqlite"):
        if not default.exists():
            _make_default_file(default)
        return _from_file(default, f"the instance folder's {DEFAULT_KEYS_FILE}")
    raise SecretsError(
        f"{ENV_KEYS} (or {ENV_KEYS_FILE}, a file of keys) is not set: sortpoint seals kiosk "
        "secrets and label keys with a key kept outside the database (README 'Production'); "
        + NEW_KEY_HINT
    )


def init_app(app, *, required: bool = True) -> None:
    """Load the app's keyring from its settings; without ``required``, defer an error to first use.

    The server needs the keys (``required``: a missing or bad setting stops it at
    start-up); a CLI command that touches no secret works without them and one
    that does fails with the same message.
    """
    try:
        keyring: Keyring | SecretsError = resolve(
            app.config, app.instance_path, app.config["DATABASE_URL"]
        )
    except SecretsError as exc:
        if required:
            raise
        keyring = exc
    app.extensions[_EXTENSION] = keyring


def current() -> Keyring:
    """Return the keyring of the current app; outside an app, the environment's settings."""
    from flask import current_app, has_app_context

    if has_app_context():
        found = current_app.extensions.get(_EXTENSION)
        if found is None:  # an app made without ``init_app``: resolve its settings now
            init_app(current_app, required=False)
            found = current_app.extensions[_EXTENSION]
        if isinstance(found, SecretsError):
            raise SecretsError(found.message)
        return found
    return _from_environment(os.environ.get(ENV_KEYS, ""), os.environ.get(ENV_KEYS_FILE, ""))


@functools.lru_cache(maxsize=4)
def _from_environment(keys: str, path: str) -> Keyring:
    if not keys.strip() and not path.strip():
        raise SecretsError(
            f"no secret keys outside an app: set {ENV_KEYS} or {ENV_KEYS_FILE}; " + NEW_KEY_HINT
        )
    return resolve({}, "", "", {ENV_KEYS: keys, ENV_KEYS_FILE: path})


def seal(plaintext: str, context: str) -> str:
    """Seal ``plaintext`` for ``context`` under the current keyring's newest key."""
    return current().seal(plaintext, context)


def open_sealed(stored: str, context: str) -> str:
    """Open a value sealed for ``context`` with the current keyring."""
    return current().open(stored, context)


__all__: Sequence[str] = (
    "DEFAULT_KEYS_FILE",
    "ENV_KEYS",
    "ENV_KEYS_FILE",
    "Keyring",
    "SecretsError",
    "current",
    "init_app",
    "is_sealed",
    "key_id",
    "new_key",
    "open_sealed",
    "parse_keys",
    "resolve",
    "seal",
    "sealed_key_id",
)
