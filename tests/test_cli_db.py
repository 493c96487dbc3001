"""sortpoint db upgrade / current / downgrade, and the real console entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import inspect

from backend import create_app, migrations
from backend.core.db import db
from backend.core.models import Base
from tests.clitools import fails, run, run_json


@pytest.fixture
def empty_app(database_url):
    """An app on an empty database: no tables until `db upgrade`."""
    application = create_app({"DATABASE_URL": database_url, "TESTING": True})
    yield application
    db.engine.dispose()


def test_upgrade_an_empty_database_to_head(empty_app):
    runner = empty_app.test_cli_runner()
    before = run_json(runner, "db", "current")
    assert before["current"] is None and before["up_to_date"] is False
    out = run_json(runner, "db", "upgrade")
    assert out["from"] is None and out["to"] == out["head"] == migrations.head_revision()
    assert set(inspect(db.engine).get_table_names()) >= set(Base.metadata.tables)
    assert run_json(runner, "db", "current")["up_to_date"] is True
    again = run(runner, "db", "upgrade").stdout  # idempotent
    assert f"at revision {out['head']}" in again


def test_commands_before_upgrade_say_what_to_do(empty_app):
    message = fails(empty_app.test_cli_runner(), "community", "list")
    assert "sortpoint db upgrade" in message


def test_downgrade_needs_yes(empty_app):
    runner = empty_app.test_cli_runner()
    run(runner, "db", "upgrade")
    assert "--yes" in fails(runner, "db", "downgrade", "base")
    assert run_json(runner, "db", "current")["up_to_date"] is True
    run(runner, "db", "downgrade", "base", "--yes")
    assert run_json(runner, "db", "current")["current"] is None


def _cli(args: list[str], database_url: str, tmp_path) -> subprocess.CompletedProcess:
    env = os.environ | {
        "SORTPOINT_DATABASE_URL": database_url,
        "SORTPOINT_INSTANCE_PATH": str(tmp_path),
    }
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_sortpoint_console_script_and_flask_app(database_url, tmp_path):
    sortpoint = [sys.executable, "-c", "from backend.cli import main; main()"]
    done = _cli(sortpoint + ["db", "upgrade", "--json"], database_url, tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["to"] == migrations.head_revision()
    done = _cli(
        sortpoint + ["community", "create", "oak", "--name", "Oak", "--json"],
        database_url,
        tmp_path,
    )
    assert done.returncode == 0 and json.loads(done.stdout)["slug"] == "oak"
    done = _cli(sortpoint + ["community", "create", "oak", "--name", "Oak"], database_url, tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip() == "Error: community 'oak' exists already"
    flask = [sys.executable, "-m", "flask", "--app", "backend", "community", "list", "--json"]
    done = _cli(flask, database_url, tmp_path)
    assert done.returncode == 0, done.stderr
    assert [c["slug"] for c in json.loads(done.stdout)] == ["oak"]
    done = _cli(sortpoint + ["--help"], database_url, tmp_path)
    assert done.returncode == 0 and "run" in done.stdout and "ledger" in done.stdout
