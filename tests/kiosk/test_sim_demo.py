"""As a new user would: the demo backend, then `kiosk run --sim` from docs/simulator.md.

The backend is seeded with `sortpoint demo seed` (what scripts/demo runs) and served in a thread;
the kiosk runs as a child process with no config, finding the demo kiosk and labels through
SORTPOINT_INSTANCE_PATH, exactly as the README and docs/simulator.md tell a new user.  The
script is the example printed in docs/simulator.md, so the documentation cannot drift from what
the simulator does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from backend.db import db
from backend.models import Account, Household
from tests.kiosk.stations import ServedBackend

ROOT = Path(__file__).resolve().parents[2]


def documented_script() -> str:
    """Return the example script from docs/simulator.md."""
    text = (ROOT / "docs" / "simulator.md").read_text()
    section = text.split("Example, against the demo backend", 1)[1]
    return re.search(r"```\n(.*?)```", section, re.DOTALL).group(1)


def run_sim(instance: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    kiosk = Path(sys.executable).with_name("kiosk")
    return subprocess.run(
        [str(kiosk), "run", "--sim", *args],
        cwd=instance.parent,
        env={**os.environ, "SORTPOINT_INSTANCE_PATH": str(instance)},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def demo_backend(app, runner, tmp_path: Path) -> tuple[ServedBackend, Path]:
    served = ServedBackend(app)
    instance = tmp_path / "var"
    result = runner.invoke(
        args=["demo", "seed", "--backend-url", served.url, "--out-dir", str(instance)]
    )
    assert result.exit_code == 0, result.output
    served.start()
    return served, instance


def balance(household: str) -> int:
    with db.session() as s:
        return s.scalar(
            select(Account.balance)
            .join(Household, Household.id == Account.household_id)
            .where(Household.code == household)
        )


def test_documented_script_runs_against_the_demo_backend(app, runner, tmp_path):
    served, instance = demo_backend(app, runner, tmp_path)
    try:
        script = tmp_path / "deposit.txt"
        script.write_text(documented_script())
        result = run_sim(instance, "--script", str(script))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Thank you: 600 g of paper. +12 points - balance 12" in result.stdout
        first_household = (instance / "demo-labels.txt").read_text().split("\t", 1)[0]
        assert balance(first_household) == 12
    finally:
        served.stop()


def test_interactive_sim_takes_a_bag_to_credited_points(app, runner, tmp_path):
    served, instance = demo_backend(app, runner, tmp_path)
    try:
        result = run_sim(instance, stdin="label 2\nmetal\n400\nclose\nwait 2\nquit\n")
        assert result.returncode == 0, result.stdout + result.stderr
        household = (instance / "demo-labels.txt").read_text().splitlines()[1].split("\t")[0]
        assert "Door 3 (metal) is open" in result.stdout
        assert "+16 points - balance 16" in result.stdout  # demo metal: 40 points a kg
        assert balance(household) == 16
    finally:
        served.stop()
