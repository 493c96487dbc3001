"""The whole schema: every capability's tables in one ``MetaData``, and a direct way to create it.

Each capability package keeps its own ``models`` module; nothing below this
module (the composition root, beside ``create_app`` and the migrations) knows
them all.  ``metadata()`` imports them so Alembic's autogenerate, the
migration test and ``create_schema`` see every table.
"""

from __future__ import annotations

import importlib

from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

#: every module that declares tables, in dependency order
MODEL_MODULES = (
    "backend.registry.models",
    "backend.ledger.models",
    "backend.deposits.models",
    "backend.kiosk_api.models",
    "backend.people.models",
    "backend.desk.models",
)


def metadata() -> MetaData:
    """Import every capability's models and return the ``MetaData`` they share."""
    for name in MODEL_MODULES:
        importlib.import_module(name)
    from backend.core.models import Base

    return Base.metadata


def create_schema(engine: Engine) -> None:
    """Create every table, trigger and function directly (fast path for tests).

    Production databases are made with ``sortpoint db upgrade`` (Alembic);
    tests/test_migrations.py proves both paths give the same schema.  The
    database is stamped with the head revision, so a later ``db upgrade``
    applies only newer revisions.
    """
    from backend.deposits import pg_one
    from backend.desk.models import APPEND_ONLY_TABLES as DESK_APPEND_ONLY
    from backend.ledger.append_only import install_append_only
    from backend.migrations import stamp

    with engine.begin() as conn:
        metadata().create_all(conn)
        install_append_only(conn)
        install_append_only(conn, DESK_APPEND_ONLY)
        pg_one.install(conn)
        stamp(conn, "head")
