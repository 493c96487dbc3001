"""sortpoint db upgrade / current / downgrade, and the real console entry points."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

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


# ------------------------------------------- where the database is, and when there is none

REPO = Path(__file__).resolve().parent.parent
SORTPOINT = Path(sys.executable).with_name("sortpoint")  # the console script pip installed


def _console(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run the real ``sortpoint`` console script with none of the user's SORTPOINT_ settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SORTPOINT_")}
    return subprocess.run(
        [str(SORTPOINT), *args],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def test_version_is_sortpoints():
    done = _console(["--version"], REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"sortpoint {version('sortpoint')} (Python ")
    assert "Werkzeug" not in done.stdout and done.stdout.count("\n") == 1


def test_the_cli_finds_the_demos_database_from_any_folder(tmp_path):
    """Without a setting, the CLI uses the checkout's var/, where scripts/demo puts it."""
    demo = (REPO / "scripts" / "demo").read_text()
    assert 'cd "$(dirname "$0")/.."' in demo
    assert 'SORTPOINT_INSTANCE_PATH="${SORTPOINT_INSTANCE_PATH:-$PWD/var}"' in demo
    database = REPO / "var" / "sortpoint.sqlite3"
    existed = database.exists()
    for cwd in (REPO, tmp_path):
        done = _console(["db", "current", "--json"], cwd)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["url"] == f"sqlite:///{database}"
    assert database.exists() == existed  # reading the revision never makes a database
    assert not (tmp_path / "instance").exists() and not (tmp_path / "var").exists()


def test_a_command_without_a_database_says_run_db_upgrade(tmp_path):
    database = tmp_path / "data" / "sortpoint.sqlite3"
    done = _console(["kiosk", "list"], tmp_path, SORTPOINT_INSTANCE_PATH="data")  # relative
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.strip() == (
        f"Error: no database at {database}: run `sortpoint db upgrade` to create it"
        " (or set SORTPOINT_DATABASE_URL to use another)"
    )
    assert not database.exists()  # no empty database left behind
    done = _console(["secrets", "new-key"], tmp_path, SORTPOINT_INSTANCE_PATH="data")
    assert done.returncode == 0 and not database.exists(), done.stderr  # needs no database
    assert _console(["db", "upgrade"], tmp_path, SORTPOINT_INSTANCE_PATH="data").returncode == 0
    done = _console(["kiosk", "list"], tmp_path, SORTPOINT_INSTANCE_PATH="data")
    assert (done.returncode, done.stdout) == (0, "no kiosks\n"), done.stderr


def test_a_database_without_tables_says_run_db_upgrade(tmp_path):
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()  # a file, no tables
    application = create_app({"DATABASE_URL": f"sqlite:///{path}", "TESTING": True})
    try:
        message = fails(application.test_cli_runner(), "ledger", "verify")
    finally:
        db.engine.dispose()
    assert message.startswith(f"Error: the database sqlite:///{path} has no sortpoint tables yet")
    assert message.endswith(": run `sortpoint db upgrade`")


def test_db_current_does_not_create_a_missing_sqlite_file(tmp_path):
    path = tmp_path / "later.sqlite3"
    application = create_app({"DATABASE_URL": f"sqlite:///{path}", "TESTING": True})
    try:
        out = run_json(application.test_cli_runner(), "db", "current")
    finally:
        db.engine.dispose()
    assert out["current"] is None and out["up_to_date"] is False
    assert not path.exists()
