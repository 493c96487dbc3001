"""Shared pieces of the ``sortpoint`` commands: the error-mapping group, ``--json`` and output.

A domain error becomes one line on stderr and exit code 1, never a traceback;
``--json`` prints JSON on stdout and nothing else.  A command that needs the
database and finds none (a SQLite file that does not exist, a database without
sortpoint's tables) says so and names ``sortpoint db upgrade``; it never leaves
an empty SQLite file behind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json

import click
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError

from backend.core.errors import SortpointError
from protocol import ProtocolError


class SortpointGroup(AppGroup):
    """A command group that turns domain and database errors into one-line messages.

    ``needs_database`` (default True): each command first checks that a SQLite
    database file exists (connecting would create an empty one); ``db``, which
    creates it, says False, and so does a command that reads no database
    (``command(..., needs_database=False)``).
    """

    def __init__(self, *args, needs_database: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.needs_database = needs_database

    def command(self, *args, needs_database: bool | None = None, **kwargs):
        """Register a command; ``needs_database`` overrides the group's for this one."""
        register = super().command(*args, **kwargs)
        if not (self.needs_database if needs_database is None else needs_database):
            return register

        def decorator(func):
            @functools.wraps(func)
            def checked(*a, **kw):
                require_database()
                return func(*a, **kw)

            return register(checked)

        return decorator

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (SortpointError, ProtocolError) as exc:
            raise click.ClickException(getattr(exc, "message", None) or str(exc)) from None
        except DBAPIError as exc:
            first_line = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
            if "no such table" in first_line or "does not exist" in first_line:
                raise click.ClickException(
                    f"the database {_database_url()} has no sortpoint tables yet ({first_line}):"
                    " run `sortpoint db upgrade`"
                ) from None
            raise click.ClickException(f"database error: {first_line}") from None


def require_database() -> None:
    """Refuse, naming ``sortpoint db upgrade``, when the app's SQLite file does not exist."""
    from backend.core.database_file import missing_sqlite_file
    from backend.core.db import db

    if db.engine is not None and (path := missing_sqlite_file(db.engine)) is not None:
        raise click.ClickException(
            f"no database at {path}: run `sortpoint db upgrade` to create it"
            " (or set SORTPOINT_DATABASE_URL to use another)"
        )


def _database_url() -> str:
    from backend.core.db import db

    return db.engine.url.render_as_string(hide_password=True) if db.engine else "(unbound)"


def json_option(func):
    """Add ``--json``: print JSON on stdout and nothing else."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON on stdout (and nothing else)."
    )(func)


def emit(data, as_json: bool, text: str | list[str] | None = None) -> None:
    """Print ``data`` as JSON, or ``text`` (lines) for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=_json_default))
    elif isinstance(text, list):
        for line in text:
            click.echo(line)
    elif text is not None:
        click.echo(text)


def _json_default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


def aware_datetime(_ctx, _param, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. 2025-01-01T00:00:00+08:00")
    return parsed
