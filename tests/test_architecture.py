"""The import contracts in .importlinter hold, and they fail on a wrong-way import.

CI runs ``lint-imports`` through scripts/test (``SORTPOINT_LINT=1``); these tests run the
same command on the real tree and on a copy with one import planted the wrong way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("backend", "kiosk", "hardware", "protocol")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is in the dev extra (scripts/test installs it)"
)


def _lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / ".importlinter"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    tree.mkdir()
    shutil.copy(ROOT / ".importlinter", tree / ".importlinter")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tree


def test_the_tree_keeps_every_contract():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, planted, contract",
    [
        # a lower layer reaching up: the registry must not know the ledger
        ("backend/registry/services.py", "import backend.ledger.services", "depend downwards"),
        # core must not know the kiosk API
        ("backend/core/sql.py", "import backend.kiosk_api.auth", "depend downwards"),
        # the backend must not import the station
        ("backend/deposits/ingest.py", "import kiosk.journal", "neither the kiosk nor"),
        # hardware adapters import nothing of ours
        ("hardware/loadcell.py", "import protocol.labels", "import nothing of ours"),
    ],
)
def test_a_wrong_way_import_breaks_its_contract(tmp_path, module, planted, contract):
    tree = _copy_tree(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and contract in result.stdout.replace("\n", " ")
