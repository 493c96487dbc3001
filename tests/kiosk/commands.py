"""The kiosk's commands run as child processes: ``kiosk`` itself and install-pi.sh's dry run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_kiosk(
    *args, cwd: Path, env: dict | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run the `kiosk` console script as a child process."""
    kiosk = Path(sys.executable).with_name("kiosk")
    return subprocess.run(
        [str(kiosk), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def install_dry_run(tmp_path: Path, model: str, *args: str, **env: str) -> str:
    """Return what ``install-pi.sh --dry-run ARGS`` would do on a Pi ``model``, under tmp_path."""
    model_file = tmp_path / "model"
    model_file.write_bytes(model.encode() + b"\0")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-pi.sh"), "--dry-run", *args],
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "MODEL_FILE": str(model_file),
            "PREFIX": str(tmp_path / "opt"),
            "ETC_DIR": str(tmp_path / "etc"),
            "UNIT_DIR": str(tmp_path / "units"),
            "UDEV_DIR": str(tmp_path / "udev"),
            **env,
        },
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
