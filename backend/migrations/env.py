"""Alembic environment: runs migrations on the connection the caller passes.

Configured from ``backend.migrations.alembic_config``; there is no
alembic.ini.  Offline (``--sql``) mode is not supported: sortpoint always
migrates a live database.
"""

from __future__ import annotations

from alembic import context

from backend.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("run migrations through backend.migrations.upgrade(engine)")


def _secret_keys() -> tuple[bytes, ...]:
    """The app's secret keys, newest first: for a revision that seals or opens stored secrets (0004)."""
    from backend.core import secrets

    return secrets.current().keys


config.attributes.setdefault("secret_keys", _secret_keys)

context.configure(
    connection=connection,
    target_metadata=metadata(),
    # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
