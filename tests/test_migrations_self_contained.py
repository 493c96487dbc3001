"""Every Alembic revision is self-contained: it imports no module of ours.

A revision is history: it must create what it created on the day it was written.
One that imported a live module (0002 once imported the module that holds the
one-deposit function) would change when that module is edited.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

VERSIONS = Path(__file__).resolve().parents[1] / "backend" / "migrations" / "versions"
OURS = ("backend", "kiosk", "hardware", "protocol")


def imported_modules(source: str) -> set[str]:
    """Return every module a Python source imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.add("." * node.level + (node.module or ""))
    return found


def ours(modules: set[str]) -> set[str]:
    """Return the modules of this project (or relative ones) among ``modules``."""
    return {m for m in modules if m.startswith(".") or m.split(".")[0] in OURS}


REVISIONS = sorted(VERSIONS.glob("*.py"))


def test_there_are_revisions_to_check():
    assert len(REVISIONS) >= 4


@pytest.mark.parametrize("revision", REVISIONS, ids=lambda p: p.name)
def test_a_revision_imports_nothing_of_ours(revision):
    assert ours(imported_modules(revision.read_text())) == set()


@pytest.mark.parametrize(
    "snippet",
    [
        "from backend.deposits import pg_one\n",
        "def upgrade():\n    from backend.ledger.append_only import append_only_ddl\n",
        "import protocol.labels\n",
        "from . import helpers\n",
    ],
)
def test_the_check_finds_a_planted_import(snippet):
    assert ours(imported_modules(snippet))
