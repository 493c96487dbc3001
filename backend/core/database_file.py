"""Where a SQLite database lives, and whether it is there yet.

Connecting to a SQLite file that does not exist creates an empty one.  The
commands ask here first, so a mistyped or unset location is reported
("run `sortpoint db upgrade`") instead of leaving an empty database behind.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine


def sqlite_file(engine: Engine) -> Path | None:
    """Return the file of a file-backed SQLite engine, else None (PostgreSQL, in-memory)."""
    if engine.dialect.name != "sqlite":
        return None
    name = engine.url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def missing_sqlite_file(engine: Engine) -> Path | None:
    """Return the SQLite file of ``engine`` if it does not exist yet, else None."""
    path = sqlite_file(engine)
    return path if path is not None and not path.exists() else None
