"""The database extension: one engine and session factory per app.

Created at module level (``db = Database()``) and bound in ``create_app``.
Services own transactions (``with db.begin() as s:``); views and CLI commands
never commit.  Nothing connects at import time.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine with sortpoint's settings for SQLite or PostgreSQL."""
    if _is_sqlite(url):
        # isolation_level=None hands transaction control to us so that every
        # transaction starts with BEGIN IMMEDIATE: writers queue on the lock up
        # front instead of failing with SQLITE_BUSY when upgrading a read lock.
        engine = create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False, "isolation_level": None},
            **kwargs,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


class Database:
    """Holds the engine and session factory of the current app."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._factory: sessionmaker[Session] | None = None

    def init_app(self, app) -> None:
        """Bind to ``app.config['DATABASE_URL']`` and register on the app."""
        self.bind(app.config["DATABASE_URL"])
        app.extensions["sortpoint.db"] = self

    def bind(self, url: str) -> None:
        """Create the engine for ``url`` (disposing of any previous one)."""
        if self.engine is not None:
            self.engine.dispose()
        self.engine = make_engine(url)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """Return "sqlite" or "postgresql"."""
        assert self.engine is not None, "database not bound"
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """Open a session in a transaction; commit on success, roll back on error."""
        assert self._factory is not None, "database not bound; call create_app()"
        with self._factory() as session, session.begin():
            yield session

    def session(self) -> Session:
        """Return a new session (caller closes it); for read-only use."""
        assert self._factory is not None, "database not bound; call create_app()"
        return self._factory()


db = Database()
