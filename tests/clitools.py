"""Helpers for tests of the ``sortpoint`` commands (through Flask's CLI runner)."""

from __future__ import annotations

import json


def run(runner, *args: str, exit_code: int = 0):
    """Invoke ``sortpoint ARGS``; assert its exit code and return the click Result."""
    result = runner.invoke(args=list(args))
    assert result.exit_code == exit_code, (
        f"sortpoint {' '.join(args)} exited {result.exit_code}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
    )
    return result


def run_json(runner, *args: str):
    """Invoke ``sortpoint ARGS --json``; stdout must be JSON and nothing else."""
    return json.loads(run(runner, *args, "--json").stdout)


def fails(runner, *args: str) -> str:
    """Invoke a command that must fail like a user error: exit 1, one line on stderr."""
    result = run(runner, *args, exit_code=1)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def setup_community(runner, slug: str = "oak") -> None:
    """Create community ``slug`` with building B1 and households H1, H2 through the CLI."""
    run(runner, "community", "create", slug, "--name", slug.title())
    run(runner, "building", "add", slug, "B1", "--name", "Building 1")
    for code in ("H1", "H2"):
        run(runner, "household", "add", slug, code, "--building", "B1")
