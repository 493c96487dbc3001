"""Alembic migrations, configured in code (no alembic.ini needed).

``sortpoint db upgrade`` calls :func:`upgrade`; tests call the same helpers.
Every schema change is a revision in ``versions/``; ``tests/test_migrations.py``
proves the revisions and the models (``backend.schema.metadata()``) agree on SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic Config for this package, bound to ``connection``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # env.py runs on this connection, so the engine's settings (SQLite WAL,
    # BEGIN IMMEDIATE, PostgreSQL search_path) apply to migrations too.
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """Return the newest revision id in ``versions/``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migration revisions found"
    return head


def current_revision(engine: Engine) -> str | None:
    """Return the revision the database is at (None when unversioned)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database up to ``revision``."""
    with engine.connect() as conn:
        command.upgrade(alembic_config(conn), revision)
        conn.commit()


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database down to ``revision`` ("base" empties it)."""
    with engine.connect() as conn:
        command.downgrade(alembic_config(conn), revision)
        conn.commit()


def stamp(connection: Connection, revision: str = "head") -> None:
    """Record ``revision`` as current without running migrations."""
    command.stamp(alembic_config(connection), revision)


# --------------------------------------------------- the `sortpoint db` use cases
# Each reads or migrates the app's database (backend.core.db.db) and returns
# what the command prints; Alembic runs each migration in its own transaction.


def _app_engine() -> Engine:
    from backend.core.db import db

    assert db.engine is not None, "database not bound; call create_app()"
    return db.engine


def database_url(engine: Engine | None = None) -> str:
    """Return the app database's URL, password hidden."""
    return (engine or _app_engine()).url.render_as_string(hide_password=True)


def upgrade_database(revision: str = "head") -> dict:
    """Create or migrate the app's database to ``revision``: ``{"from", "to", "head", "url"}``."""
    engine = _app_engine()
    before = _revision_or_none(engine)
    upgrade(engine, revision)
    return {
        "from": before,
        "to": current_revision(engine),
        "head": head_revision(),
        "url": database_url(engine),
    }


def database_revision() -> dict:
    """Return the app database's revision: ``{"current", "head", "up_to_date", "url"}``.

    A SQLite file that does not exist reads as no revision and is not created.
    """
    engine = _app_engine()
    current, head = _revision_or_none(engine), head_revision()
    return {"current": current, "head": head, "up_to_date": current == head, "url": database_url()}


def downgrade_database(revision: str) -> str | None:
    """Migrate the app's database down to ``revision``; return the revision it is at."""
    engine = _app_engine()
    downgrade(engine, revision)
    return current_revision(engine)


def _revision_or_none(engine: Engine) -> str | None:
    from backend.core.database_file import missing_sqlite_file

    return None if missing_sqlite_file(engine) is not None else current_revision(engine)
