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

from flask.cli import FlaskGroup

from backend.cli.db import db_cli
from backend.cli.demo import demo_cli
from backend.core.cli import SortpointGroup, aware_datetime, emit, json_option
from backend.ledger.cli import ledger_cli, rules_cli
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
    demo_cli,
)


def init_app(app) -> None:
    """Register the sortpoint commands on ``app.cli``."""
    for group in COMMAND_GROUPS:
        app.cli.add_command(group)


def main() -> None:
    """Entry point of the ``sortpoint`` console script."""
    from backend import create_app

    cli = FlaskGroup(
        create_app=lambda: create_app(),
        help="sortpoint backend: database, registry, rules, kiosks, labels, ledger, and `run`.",
    )
    cli.main(prog_name="sortpoint")
