"""Small dialect helpers shared by the ledger and ingest hot paths.

Both run as Core statements (no per-row ORM flushes): multi-row INSERTs,
``INSERT ... ON CONFLICT DO NOTHING`` and one-statement ``CASE`` updates work
the same on SQLite (>= 3.35) and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from sqlalchemy import Table, any_, bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

T = TypeVar("T")

#: most bound values in one IN (...) list; keeps statements well under the
#: SQLite (32766) and PostgreSQL (65535) parameter limits
MAX_IN_PARAMS = 1000


def dialect_name(session: Session) -> str:
    """Return "sqlite" or "postgresql" for the session's connection."""
    return session.get_bind().dialect.name


def insert_ignore(session: Session, table: Table, index_elements: Sequence):
    """Return ``INSERT ... ON CONFLICT (index_elements) DO NOTHING`` for the session's dialect."""
    return insert_ignore_for(dialect_name(session), table, index_elements)


def insert_ignore_for(dialect: str, table: Table, index_elements: Sequence):
    """Return ``INSERT ... ON CONFLICT (index_elements) DO NOTHING`` for ``dialect``."""
    return upsert_for(dialect, table).on_conflict_do_nothing(index_elements=list(index_elements))


def upsert(session: Session, table: Table):
    """Return a dialect ``insert`` that supports ``on_conflict_do_update``."""
    return upsert_for(dialect_name(session), table)


def upsert_for(dialect: str, table: Table):
    """Return the ``insert`` of ``dialect`` (PostgreSQL or SQLite) for ``table``."""
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table)


def chunked(items: Iterable[T], size: int = MAX_IN_PARAMS) -> Iterator[list[T]]:
    """Yield lists of at most ``size`` items."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def params(rows: list[dict]):
    """Return ``rows`` for an executemany, or the only row for a plain execute.

    A one-element list still goes down the executemany path, which costs a
    single-deposit request more than the statement itself.
    """
    return rows[0] if len(rows) == 1 else rows


def in_list(column, name: str, dialect: str):
    """Return ``column IN <the list bound as name>`` in the dialect's cheapest form.

    PostgreSQL gets ``= ANY(:name)`` with one array parameter: the statement
    text stays short and constant, where an expanding IN list of 100 values
    makes psycopg re-parse a long query on every execution (it caches only
    statements under 4 KiB and 50 parameters).  SQLite gets an expanding IN.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=postgresql.ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))
