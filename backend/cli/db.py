"""``sortpoint db``: create and migrate the database (Alembic)."""

from __future__ import annotations

import click

from backend.core.cli import SortpointGroup, emit, json_option

# the only group whose commands run on a database without sortpoint's tables: they make them
db_cli = SortpointGroup(
    "db", help="Create and migrate the database (Alembic).", needs_database=False
)


@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Revision to reach.")
@json_option
def db_upgrade(revision: str, as_json: bool) -> None:
    """Create or migrate the database to the newest schema."""
    from backend import migrations

    out = migrations.upgrade_database(revision)
    emit(
        out,
        as_json,
        f"database {out['url']} at revision {out['to']} (was {out['from'] or 'empty'})",
    )


@db_cli.command("current")
@json_option
def db_current(as_json: bool) -> None:
    """Show the database's schema revision and the newest one."""
    from backend import migrations

    out = migrations.database_revision()
    emit(out, as_json, f"{out['url']}: revision {out['current'] or 'none'} (head {out['head']})")


@db_cli.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Confirm: a downgrade drops tables and their data.")
def db_downgrade(revision: str, yes: bool) -> None:
    """Migrate the database down to REVISION ("base" drops everything)."""
    from backend import migrations

    if not yes:
        raise click.ClickException("a downgrade drops data; add --yes if you mean it")
    click.echo(f"database at revision {migrations.downgrade_database(revision) or 'base'}")
