"""The ``sortpoint`` command line: every capability's command groups in one Flask CLI group.

Each capability keeps its commands beside its services (``backend.registry.cli``,
``backend.ledger.cli``); this package only gathers them, with the two groups that
belong to the whole app: ``db`` (migrations) and ``demo``.  Commands parse
arguments, call one service function per use case (the service owns the
transaction) and print the result: text for people, or JSON on stdout and nothing
else with ``--json``.  A domain error becomes one line on stderr and exit code 1,
never a traceback (``backend.core.cli``).  docs/cli.md documents each command.
"""

from __future__ import annotations

import platform

import click
from flask.cli import FlaskGroup

from backend.cli.db import db_cli
from backend.cli.demo import demo_cli
from backend.cli.secrets import secrets_cli
from backend.core.cli import SortpointGroup, aware_datetime, emit, json_option
from backend.desk.cli import reward_cli
from backend.ledger.cli import ledger_cli, rules_cli
from backend.people.cli import user_cli
from backend.registry.cli import building_cli, community_cli, household_cli, kiosk_cli, labels_cli

__all__ = [
    "COMMAND_GROUPS",
    "SortpointGroup",
    "aware_datetime",
    "emit",
    "init_app",
    "json_option",
    "main",
]

COMMAND_GROUPS = (
    db_cli,
    community_cli,
    building_cli,
    household_cli,
    rules_cli,
    kiosk_cli,
    labels_cli,
    ledger_cli,
    user_cli,
    reward_cli,
    demo_cli,
    secrets_cli,
)


def init_app(app) -> None:
    """Register the sortpoint commands on ``app.cli``."""
    for group in COMMAND_GROUPS:
        app.cli.add_command(group)


def main() -> None:
    """Entry point of the ``sortpoint`` console script."""
    from backend import create_app

    cli = FlaskGroup(
        add_version_option=False,  # Flask's prints Flask's and Werkzeug's versions
        # a command that touches no kiosk secret or label key runs without the secret keys
        create_app=lambda: create_app({"SECRET_KEYS_REQUIRED": False}),
        help="sortpoint backend: database, registry, rules, kiosks, labels, ledger, and `run`.",
    )
    click.version_option(
        version_text(), "--version", message="%(version)s", help="Show sortpoint's version."
    )(cli)
    cli.main(prog_name="sortpoint")


def version_text() -> str:
    """Return ``sortpoint X.Y.Z (Python ..., Flask ..., SQLAlchemy ...)`` for ``--version``."""
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "unknown"

    python = platform.python_version()
    return (
        f"sortpoint {of('sortpoint')} "
        f"(Python {python}, Flask {of('flask')}, SQLAlchemy {of('sqlalchemy')})"
    )
