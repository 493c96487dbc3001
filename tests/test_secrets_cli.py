"""Secret keys at start-up and in the console: the setting named when missing, the demo's key file, `secrets`.

Needs the app factory's ``secrets.init_app`` and the ``secrets`` command group (backend/__init__.py,
backend/cli/__init__.py).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from backend import create_app
from backend.core import secrets
from backend.core.secrets import SecretsError
from tests.clitools import run


def test_postgres_without_keys_stops_at_start_naming_the_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("SORTPOINT_SECRET_KEYS", raising=False)
    monkeypatch.delenv("SORTPOINT_SECRET_KEYS_FILE", raising=False)
    monkeypatch.setenv("SORTPOINT_INSTANCE_PATH", str(tmp_path))
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none"  # never connected to
    with pytest.raises(SecretsError, match="SORTPOINT_SECRET_KEYS .*is not set"):
        create_app({"DATABASE_URL": url})
    assert not (tmp_path / secrets.DEFAULT_KEYS_FILE).exists()
    monkeypatch.setenv("SORTPOINT_SECRET_KEYS_FILE", str(tmp_path / "missing"))
    with pytest.raises(SecretsError, match="SORTPOINT_SECRET_KEYS_FILE: cannot read .*missing"):
        create_app({"DATABASE_URL": url})
    monkeypatch.setenv("SORTPOINT_SECRET_KEYS", secrets.new_key())
    with pytest.raises(SecretsError, match="not both"):
        create_app({"DATABASE_URL": url})


def test_sqlite_without_keys_makes_one_key_file_and_keeps_it(monkeypatch, tmp_path):
    monkeypatch.delenv("SORTPOINT_SECRET_KEYS", raising=False)
    monkeypatch.setenv("SORTPOINT_INSTANCE_PATH", str(tmp_path))
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    first = create_app({"DATABASE_URL": url})
    path = tmp_path / secrets.DEFAULT_KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_text()
    second = create_app({"DATABASE_URL": url})
    assert path.read_text() == written
    with first.app_context():
        one = secrets.current()
    with second.app_context():
        assert secrets.current().keys == one.keys


def test_new_key_prints_a_usable_key(runner):
    key = run(runner, "secrets", "new-key").stdout.strip()
    assert len(secrets.parse_keys(key, "printed")) == 1


def test_console_demo_default_key_file_and_missing_keys(tmp_path, database_url, on_postgres):
    # SQLite with no setting: the instance folder's key file, made once and then used
    for args in (["db", "upgrade"], ["community", "create", "oak", "--name", "Oak"]):
        done = _sortpoint(args, tmp_path)
        assert done.returncode == 0, done.stderr
    key_file = (tmp_path / secrets.DEFAULT_KEYS_FILE).read_text()
    done = _sortpoint(["kiosk", "register", "oak", "Gate", "--door", "1=paper"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / secrets.DEFAULT_KEYS_FILE).read_text() == key_file
    if not on_postgres:
        return
    # PostgreSQL with no setting: what needs no key works, what does says which setting is missing
    pg = {"SORTPOINT_DATABASE_URL": database_url}
    (tmp_path / "pg").mkdir()
    assert _sortpoint(["db", "upgrade"], tmp_path / "pg", **pg).returncode == 0
    done = _sortpoint(["community", "create", "elm", "--name", "Elm"], tmp_path / "pg", **pg)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "SORTPOINT_SECRET_KEYS" in done.stderr
    assert _sortpoint(["community", "list"], tmp_path / "pg", **pg).returncode == 0


def _sortpoint(args, tmp_path, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("SORTPOINT_")}
    return subprocess.run(
        [sys.executable, "-c", "from backend.cli import main; main()", *args],
        env=base | {"SORTPOINT_INSTANCE_PATH": str(tmp_path)} | env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
