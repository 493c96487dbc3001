"""backend.db: read-only snapshot sessions, write sessions, pool settings (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import DBAPIError

from backend.core.db import db, make_engine
from backend.core.models import utcnow
from backend.registry.models import Community


def _add_community(slug: str) -> None:
    with db.begin() as s:
        s.execute(
            insert(Community).values(
                slug=slug,
                name=slug,
                timezone="UTC",
                label_private_key="x",
                label_public_key="y",
                created_at=utcnow(),
            )
        )


def _count(session) -> int:
    return session.scalar(select(func.count()).select_from(Community))


def _sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


def test_read_sees_one_snapshot_while_a_writer_commits(app):
    _add_community("one")
    with db.read() as s:
        assert _count(s) == 1
        _add_community("two")  # another connection, committed
        assert _count(s) == 1  # the read keeps its snapshot
    with db.read() as s:
        assert _count(s) == 2


def test_read_does_not_hold_the_write_lock(app, database_url, on_postgres):
    if on_postgres:
        pytest.skip("SQLite's database lock; PostgreSQL readers never lock (test above)")
    _add_community("one")
    with db.read() as s:
        assert _count(s) == 1
        # timeout=0: a writer that would have to wait fails at once instead
        other = sqlite3.connect(_sqlite_path(database_url), timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute(
                "INSERT INTO communities (slug, name, timezone, label_private_key, "
                "label_public_key, created_at) VALUES ('two', 'two', 'UTC', 'x', 'y', "
                "'2025-01-01 00:00:00')"
            )
            other.execute("COMMIT")
        finally:
            other.close()
    with db.read() as s:
        assert _count(s) == 2


def test_write_session_does_hold_the_write_lock(app, database_url, on_postgres):
    """The control for the test above: the same probe does see a writer's lock."""
    if on_postgres:
        pytest.skip("SQLite's database lock")
    with db.begin() as s:
        assert _count(s) == 0
        other = sqlite3.connect(_sqlite_path(database_url), timeout=0, isolation_level=None)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()


def test_read_session_refuses_writes_on_postgres(app, on_postgres):
    if not on_postgres:
        pytest.skip("PostgreSQL's READ ONLY transaction; SQLite has no such mode")
    with pytest.raises(DBAPIError, match="read-only transaction"), db.read() as s:
        s.execute(
            insert(Community).values(
                slug="x",
                name="x",
                timezone="UTC",
                label_private_key="x",
                label_public_key="y",
                created_at=utcnow(),
            )
        )


def test_read_options_do_not_leak_into_the_next_write(app):
    """A pooled connection used for a read is a normal read-write one afterwards."""
    with db.read() as s:
        _count(s)
    _add_community("after-read")
    with db.read() as s:
        assert _count(s) == 1


def test_reads_run_while_another_thread_writes(app):
    """Readers on other threads finish while a write transaction stays open."""
    _add_community("one")
    results: list[int] = []
    with db.begin() as s:
        s.execute(select(Community.id).limit(1)).all()  # the write transaction is open

        def reader():
            with db.read() as r:
                results.append(_count(r))

        thread = threading.Thread(target=reader)
        thread.start()
        thread.join(timeout=20)
        assert not thread.is_alive(), "the read waited for the writer"
    assert results == [1]


def test_pre_ping_is_off_by_default_and_configurable(database_url, on_postgres):
    if not on_postgres:
        pytest.skip("pre-ping is a PostgreSQL pool setting")
    engine = make_engine(database_url)
    pinged = make_engine(database_url, pre_ping=True)
    try:
        assert engine.pool._pre_ping is False
        assert pinged.pool._pre_ping is True
    finally:
        engine.dispose()
        pinged.dispose()
