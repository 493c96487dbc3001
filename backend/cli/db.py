"""``sortpoint db``: create and migrate the database (Alembic)."""

from __future__ import annotations

import click

from backend.core.cli import SortpointGroup, emit, json_option
from backend.core.db import db

db_cli = SortpointGroup("db", help="Create and migrate the database (Alembic).")


@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Revision to reach.")
@json_option
def db_upgrade(revision: str, as_json: bool) -> None:
    """Create or migrate the database to the newest schema."""
    from backend import migrations

    before = migrations.current_revision(db.engine)
    migrations.upgrade(db.engine, revision)
    after = migrations.current_revision(db.engine)
    emit(
        {"from": before, "to": after, "head": migrations.head_revision(), "url": _safe_url()},
        as_json,
        f"database {_safe_url()} at revision {after} (was {before or 'empty'})",
    )


@db_cli.command("current")
@json_option
def db_current(as_json: bool) -> None:
    """Show the database's schema revision and the newest one."""
    from backend import migrations

    current, head = migrations.current_revision(db.engine), migrations.head_revision()
    emit(
        {"current": current, "head": head, "up_to_date": current == head, "url": _safe_url()},
        as_json,
        f"{_safe_url()}: revision {current or 'none'} (head {head})",
    )


@db_cli.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Confirm: a downgrade drops tables and their data.")
def db_downgrade(revision: str, yes: bool) -> None:
    """Migrate the database down to REVISION ("base" drops everything)."""
    from backend import migrations

    if not yes:
        raise click.ClickException("a downgrade drops data; add --yes if you mean it")
    migrations.downgrade(db.engine, revision)
    click.echo(f"database at revision {migrations.current_revision(db.engine) or 'base'}")


def _safe_url() -> str:
    assert db.engine is not None
    return db.engine.url.render_as_string(hide_password=True)
