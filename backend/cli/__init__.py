"""The ``sortpoint`` command line: a Flask CLI group (also ``flask --app backend``).

Commands parse arguments, call one service inside one transaction
(``with db.begin() as s:``; ``db.read()`` for commands that only read) and print the result: text for people, or JSON on
stdout and nothing else with ``--json``.  A domain error becomes one line on
stderr and exit code 1, never a traceback.  docs/cli.md documents each command.

One module per area: ``common`` (error-mapping group, ``--json``, output), ``db``,
``registry`` (community, building, household, kiosk), ``rules``, ``labels``, ``ledger``, ``demo``.
"""

from __future__ import annotations

from flask.cli import FlaskGroup

from backend.cli.common import SortpointGroup, aware_datetime, emit, json_option
from backend.cli.db import db_cli
from backend.cli.demo import demo_cli
from backend.cli.labels import labels_cli
from backend.cli.ledger import ledger_cli
from backend.cli.registry import building_cli, community_cli, household_cli, kiosk_cli
from backend.cli.rules import rules_cli

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
