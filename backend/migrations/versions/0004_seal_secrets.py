"""Kiosk secrets and label-signing keys sealed at rest, under keys kept outside the database.

Seals every kiosk secret and community label key still stored in clear (and,
on PostgreSQL, widens both columns to 255 characters first); the downgrade opens
them back into clear.  Either way in one transaction: the database is at 0003
with every value in clear, or at 0004 with every value sealed, never between.  A refusal (no keys, a value that does not open) is a
``click.ClickException``: ``sortpoint db`` prints it as one line.

The keys come from the caller (``config.attributes["secret_keys"]``, a function
returning them newest first; ``backend/migrations/env.py`` gives the app's keys,
``backend.core.secrets``); they are asked for only when there is something to
seal or open, so an empty database needs none.  The sealed form, spelled out
here because a migration imports no live module (``backend/core/secrets.py``
reads the same; tests/test_secrets.py holds the two to each other)::

    spenc1:<key id>:<base64url(12-byte nonce | AES-256-GCM(value, aad=context))>
    key id = base64url(SHA-256("sortpoint secret key id\\0" | key))[:8]
    context = "kiosks.secret:<kiosk id>" or "communities.label_private_key:<slug>"

SQLite ignores VARCHAR lengths, so its columns keep their declared ones (a
rebuilt ``communities`` could not be dropped while every table's foreign keys
point at it); the models say the same with a SQLite variant.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

"""

import base64
import hashlib
import os
import re
from collections.abc import Sequence

import click
import sqlalchemy as sa
from alembic import op
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SEALED = re.compile(r"spenc1:([A-Za-z0-9_-]{8}):([A-Za-z0-9_-]+)")

KIOSKS = sa.table("kiosks", sa.column("id", sa.String), sa.column("secret", sa.String))
COMMUNITIES = sa.table(
    "communities",
    sa.column("id", sa.Integer),
    sa.column("slug", sa.String),
    sa.column("label_private_key", sa.String),
)
#: (table, key column, value column, context prefix)
_PLACES = (
    (KIOSKS, KIOSKS.c.id, KIOSKS.c.secret, "kiosks.secret:"),
    (
        COMMUNITIES,
        COMMUNITIES.c.slug,
        COMMUNITIES.c.label_private_key,
        "communities.label_private_key:",
    ),
)
_WIDTHS = (("kiosks", "secret", 128), ("communities", "label_private_key", 64))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key_id(key: bytes) -> str:
    return _b64(hashlib.sha256(b"sortpoint secret key id\x00" + key).digest())[:8]


def _keys(what: str) -> list[bytes]:
    provider = op.get_context().config.attributes.get("secret_keys")
    if provider is None:
        raise click.ClickException(
            f"revision 0004 {what} and needs the secret keys: run `sortpoint db upgrade`"
            " (or `sortpoint db downgrade`), which passes them"
        )
    return list(provider())


def _rows(bind, key_col, value_col) -> list[tuple[str, str]]:
    return [tuple(row) for row in bind.execute(sa.select(key_col, value_col).order_by(key_col))]


def _write(bind, table, key_col, value_col, values: dict[str, str]) -> None:
    if values:
        bind.execute(
            table.update()
            .where(key_col == sa.bindparam("b_key"))
            .values({value_col.name: sa.bindparam("b_value")}),
            [{"b_key": k, "b_value": v} for k, v in values.items()],
        )


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table, column, width in _WIDTHS:
            op.alter_column(
                table,
                column,
                type_=sa.String(255),
                existing_type=sa.String(width),
                existing_nullable=False,
            )
    found = [(place, _rows(bind, place[1], place[2])) for place in _PLACES]
    clear = sum(1 for _, rows in found for _, value in rows if not _SEALED.fullmatch(value))
    if not clear:
        return
    key = _keys(f"seals {clear} kiosk secret(s) and label key(s) stored in clear")[0]
    aead, kid = AESGCM(key), _key_id(key)
    for (table, key_col, value_col, prefix), rows in found:
        sealed = {}
        for owner, value in rows:
            if _SEALED.fullmatch(value):
                continue
            nonce = os.urandom(12)
            data = aead.encrypt(nonce, value.encode("utf-8"), (prefix + owner).encode("utf-8"))
            sealed[owner] = f"spenc1:{kid}:{_b64(nonce + data)}"
        _write(bind, table, key_col, value_col, sealed)


def downgrade() -> None:
    bind = op.get_bind()
    found = [(place, _rows(bind, place[1], place[2])) for place in _PLACES]
    sealed = sum(1 for _, rows in found for _, value in rows if _SEALED.fullmatch(value))
    if sealed:
        keys = {_key_id(k): AESGCM(k) for k in _keys(f"opens {sealed} sealed value(s)")}
        for (table, key_col, value_col, prefix), rows in found:
            opened = {}
            for owner, value in rows:
                match = _SEALED.fullmatch(value)
                if match is None:
                    continue
                aead = keys.get(match.group(1))
                try:
                    raw = _unb64(match.group(2))
                    if aead is None:
                        raise InvalidTag
                    plain = aead.decrypt(raw[:12], raw[12:], (prefix + owner).encode("utf-8"))
                except (InvalidTag, ValueError):
                    raise click.ClickException(
                        f"revision 0004: {prefix}{owner} does not open with the secret keys"
                        f" (sealed under key {match.group(1)})"
                    ) from None
                opened[owner] = plain.decode("utf-8")
            _write(bind, table, key_col, value_col, opened)
    if bind.dialect.name == "postgresql":
        for table, column, width in _WIDTHS:
            op.alter_column(
                table,
                column,
                type_=sa.String(width),
                existing_type=sa.String(255),
                existing_nullable=False,
            )
