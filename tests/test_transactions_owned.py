"""Services own the transaction: no CLI command and no view opens, commits or rolls one back.

A command or a view calls one service function per use case (``backend/*/use_cases.py``,
``backend.migrations``' ``db`` use cases, ``backend.demo.seed``); that function opens the
transaction with ``db.begin()`` or ``db.read()`` and returns plain data.  This test reads
every CLI module (``backend/cli/*.py``, ``backend/*/cli.py``) and every view module
(``backend/**/views.py``) and fails on any of:

* ``db.begin()``, ``db.read()``, ``db.session()`` (``db`` however it was imported or named);
* ``.begin()``, ``.begin_nested()``, ``.commit()``, ``.rollback()`` on anything, and a bare
  ``begin()``;
* ``.connect()`` on anything (an engine's connection is a transaction of its own);
* ``db`` handed to a call (``in_transaction(db, work)``): the callee would open it for the view.
"""

from __future__ import annotations

import ast
import sys
import warnings
from pathlib import Path

import pytest

BACKEND = Path(__file__).resolve().parent.parent / "backend"

#: modules that still open transactions themselves, each with the issue that removes it.
#: An entry is temporary: delete it when its module is fixed (the scan then holds it).
ALLOWED: set[str] = set()

#: method names that open, end or nest a transaction, on any receiver
TRANSACTION_METHODS = {"begin", "begin_nested", "commit", "rollback", "connect"}
#: methods of the database extension (``backend.core.db.db``) that open a session
DB_METHODS = {"begin", "read", "session"}


def scanned_modules() -> list[Path]:
    """Return the CLI and view modules of the backend, sorted."""
    found = set(BACKEND.glob("cli/*.py")) | set(BACKEND.glob("*/cli.py"))
    found |= set(BACKEND.rglob("views.py"))
    return sorted(found)


def _db_names(tree: ast.Module) -> set[str]:
    """Names the database extension is bound to in a module (``db`` by default)."""
    names = {"db"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "backend.core.db":
            names |= {a.asname or a.name for a in node.names if a.name == "db"}
    return names


def _receiver_name(node: ast.expr) -> str | None:
    """The last name of a call's receiver: ``db`` for ``db.x()`` and ``mod.db.x()``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def violations(source: str, filename: str = "<snippet>") -> list[str]:
    """Return ``file:line: call`` for each transaction call in ``source``."""
    tree = ast.parse(source, filename)
    db_names = _db_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "begin":
            found.append(f"{filename}:{node.lineno}: begin()")
        elif isinstance(func, ast.Attribute):
            receiver = _receiver_name(func.value)
            on_db = receiver in db_names and func.attr in DB_METHODS
            if on_db or func.attr in TRANSACTION_METHODS:
                found.append(f"{filename}:{node.lineno}: {ast.unparse(func)}()")
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(arg, ast.Name) and arg.id in db_names:
                found.append(f"{filename}:{node.lineno}: {ast.unparse(func)}({arg.id}, ...)")
    return found


def test_the_scan_finds_the_cli_and_view_modules():
    relative = {p.relative_to(BACKEND).as_posix() for p in scanned_modules()}
    assert {
        "cli/__init__.py",
        "cli/db.py",
        "cli/demo.py",
        "core/cli.py",
        "registry/cli.py",
        "ledger/cli.py",
        "kiosk_api/views.py",
    } <= relative


def test_no_cli_command_or_view_opens_a_transaction():
    problems = []
    for path in scanned_modules():
        relative = path.relative_to(BACKEND).as_posix()
        found = violations(path.read_text(encoding="utf-8"), f"backend/{relative}")
        if relative in ALLOWED:
            if not found:
                warnings.warn(
                    f"backend/{relative} opens no transaction any more: remove it from ALLOWED "
                    "in tests/test_transactions_owned.py",
                    stacklevel=1,
                )
            continue
        problems += found
    assert not problems, (
        "a CLI command or view opens, commits or rolls back a transaction; call one service "
        "function that owns it instead:\n" + "\n".join(problems)
    )


def test_every_allowed_module_exists():
    for relative in ALLOWED:
        assert (BACKEND / relative).is_file(), f"ALLOWED names a missing module: {relative}"


@pytest.mark.parametrize(
    "snippet",
    [
        "with db.begin() as s:\n    pass",
        "with db.read() as s:\n    pass",
        "s = db.session()",
        "from backend.core.db import db as database\nwith database.read() as s:\n    pass",
        "import backend.core.db\nbackend.core.db.db.begin()",
        "session.commit()",
        "s.rollback()",
        "session.begin_nested()",
        "engine.begin()",
        "with db.engine.connect() as conn:\n    pass",
        "begin()",
        "outcomes = ingest.in_transaction(db, work)",
        "run(work, database=db)",
        "def command():\n    def inner():\n        current.session.commit()\n    return inner",
    ],
)
def test_a_planted_violation_is_found(snippet):
    assert violations(snippet), snippet


def test_service_calls_and_reads_pass():
    clean = (
        "from backend.registry import use_cases\n"
        "from backend.core.db import db\n"
        "info = use_cases.list_kiosks(None)\n"
        "text = path.read_text()\n"
        "data = stream.read()\n"
        "url = db.engine.url\n"
    )
    assert violations(clean) == []


def test_a_planted_violation_fails_the_scan(tmp_path, monkeypatch):
    """The whole test, not only ``violations``, fails on a CLI module that commits."""
    planted = tmp_path / "backend"
    (planted / "registry").mkdir(parents=True)
    (planted / "registry" / "cli.py").write_text(
        "from backend.core.db import db\n\ndef cmd():\n    with db.begin() as s:\n        pass\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "BACKEND", planted)
    with pytest.raises(AssertionError, match=r"backend/registry/cli.py:4: db.begin\(\)"):
        test_no_cli_command_or_view_opens_a_transaction()
