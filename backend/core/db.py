"""The database extension: one engine and session factory per app.

Created at module level (``db = Database()``) and bound in ``create_app``.
Services own transactions (``with db.begin() as s:``); views and CLI commands
never commit.  Nothing connects at import time.

Two kinds of transaction:

* ``db.begin()`` - read-write.  On SQLite it starts with ``BEGIN IMMEDIATE``:
  writers queue on the lock up front instead of failing with SQLITE_BUSY when
  a read lock cannot be upgraded.
* ``db.read()`` - a read-only snapshot.  On SQLite a deferred ``BEGIN``, so a
  read (``ledger verify``, the health check, the kiosk config) never waits for
  or blocks the writer (WAL readers see the last commit); on PostgreSQL
  ``BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY``, so every statement of
  the read sees the same snapshot and a stray write is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

#: the execution option the SQLite ``begin`` listener reads
READ_ONLY_OPTION = "sortpoint_read_only"


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


class _NoRows(logging.Filter):
    """Drop SQLAlchemy's result-row log lines: rows carry kiosk secrets and label keys."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "Row %r"


def _keep_secrets_out_of_logs() -> None:
    """No statement parameter (``hide_parameters``) or result row is ever logged.

    A failing statement's error, logged with its traceback, and the echo of
    ``sqlalchemy.engine`` at INFO would otherwise print a kiosk's secret and
    its community's label key (the nonce statement compares both); at DEBUG
    the rows read back would print them too, so those lines are dropped
    whatever the logging configuration.
    """
    engine_log = logging.getLogger("sqlalchemy.engine.Engine")
    if not any(isinstance(f, _NoRows) for f in engine_log.filters):
        engine_log.addFilter(_NoRows())


def make_engine(url: str, *, pre_ping: bool = False, **kwargs) -> Engine:
    """Create an engine with sortpoint's settings for SQLite or PostgreSQL.

    ``pre_ping`` (PostgreSQL) tests every pooled connection with a round trip
    before use.  Off by default: a connection the server dropped fails its
    statement, SQLAlchemy then invalidates it (and the rest of the pool when
    the server restarted), the request answers 500/503 and the kiosk retries
    the same signed-afresh batch, which its ids make idempotent.  Turn it on
    (``SORTPOINT_DB_PRE_PING=1``) behind proxies or firewalls that silently
    drop idle connections.

    Statement parameters never appear in errors or log lines
    (``hide_parameters``), nor result rows in log lines (``_keep_secrets_out_of_logs``).
    """
    _keep_secrets_out_of_logs()
    kwargs.setdefault("hide_parameters", True)
    if _is_sqlite(url):
        return _sqlite_engine(url, **kwargs)
    kwargs.setdefault("pool_pre_ping", pre_ping)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # the most recently used connection first: its server process and its
    # prepared statements (psycopg prepares after 5 uses) are warm
    kwargs.setdefault("pool_use_lifo", True)
    return create_engine(url, **kwargs)


def _sqlite_engine(url: str, **kwargs) -> Engine:
    # isolation_level=None hands transaction control to us: the begin
    # listener below decides between BEGIN IMMEDIATE and a deferred BEGIN
    engine = create_engine(
        url,
        connect_args={
            "timeout": 30,
            "check_same_thread": False,
            "isolation_level": None,
        },
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
        if conn.get_execution_options().get(READ_ONLY_OPTION):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _read_options(dialect: str) -> dict:
    if dialect == "sqlite":
        return {READ_ONLY_OPTION: True}
    # attributes of the psycopg connection: they ride on its BEGIN, no round trip
    return {
        READ_ONLY_OPTION: True,
        "isolation_level": "REPEATABLE READ",
        "postgresql_readonly": True,
    }


class Database:
    """Holds the engine and session factory of the current app."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._factory: sessionmaker[Session] | None = None
        self._read_options: dict = {}

    def init_app(self, app) -> None:
        """Bind to ``app.config['DATABASE_URL']`` and register on the app."""
        self.bind(app.config["DATABASE_URL"], pre_ping=app.config.get("DB_PRE_PING", False))
        app.extensions["sortpoint.db"] = self

    def bind(self, url: str, *, pre_ping: bool = False) -> None:
        """Create the engine for ``url`` (disposing of any previous one)."""
        if self.engine is not None:
            self.engine.dispose()
        self.engine = make_engine(url, pre_ping=pre_ping)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        self._read_options = _read_options(self.engine.dialect.name)

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

    @contextmanager
    def read(self) -> Iterator[Session]:
        """Open a session in a read-only snapshot transaction (see the module docstring)."""
        assert self._factory is not None, "database not bound; call create_app()"
        with self._factory() as session, session.begin():
            # procure the connection now, with the options the begin must see
            session.connection(execution_options=self._read_options)
            yield session

    def session(self) -> Session:
        """Return a new session (caller closes it); for read-only use."""
        assert self._factory is not None, "database not bound; call create_app()"
        return self._factory()


db = Database()
