"""Shared pieces of the ``sortpoint`` commands: the error-mapping group, ``--json`` and output.

A domain error becomes one line on stderr and exit code 1, never a traceback;
``--json`` prints JSON on stdout and nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import click
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError

from backend.core.errors import SortpointError
from protocol import ProtocolError


class SortpointGroup(AppGroup):
    """A command group that turns domain and database errors into one-line messages."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (SortpointError, ProtocolError) as exc:
            raise click.ClickException(getattr(exc, "message", None) or str(exc)) from None
        except DBAPIError as exc:
            first_line = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
            missing_table = "no such table" in first_line or "does not exist" in first_line
            hint = " (has `sortpoint db upgrade` been run?)" if missing_table else ""
            raise click.ClickException(f"database error: {first_line}{hint}") from None


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
