"""sortpoint ledger verify / show."""

from __future__ import annotations

import json

from sqlalchemy import text

from backend.core.db import db
from backend.ledger import services as ledger
from backend.registry import services as registry
from tests.clitools import fails, run, run_json, setup_community


def _household_id(code: str, community: str = "oak") -> int:
    with db.begin() as s:
        return registry.get_household(s, registry.get_community(s, community), code).id


def _post(code: str, amount: int, kind: str = "adjustment") -> None:
    household_id = _household_id(code)
    with db.begin() as s:
        ledger.post(
            s,
            household_id=household_id,
            kind=kind,
            amount=amount,
            reason=f"test {amount:+d}",
            source_type="cli",
            source_id="test",
        )


def test_verify_ok_on_an_empty_and_a_busy_ledger(runner):
    assert "ledger OK" in run(runner, "ledger", "verify").stdout
    setup_community(runner)
    for amount in (10, 25, -5):
        _post("H1", amount)
    _post("H2", 7)
    assert run_json(runner, "ledger", "verify") == {"ok": True, "mismatches": []}


def test_verify_catches_a_corrupted_balance(runner):
    setup_community(runner)
    _post("H1", 10)
    _post("H2", 3)
    h2 = _household_id("H2")
    with db.engine.begin() as conn:  # what a bad hand-typed fix would do
        conn.execute(
            text("UPDATE accounts SET balance = balance + 500 WHERE household_id = :h"), {"h": h2}
        )
    result = run(runner, "ledger", "verify", exit_code=1)
    assert "MISMATCH" in result.stdout and "mismatch" in result.stderr
    result = run(runner, "ledger", "verify", "--json", exit_code=1)
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert {m["household_id"] for m in report["mismatches"]} == {h2}
    assert any(
        m["problem"] == "balance" and m["actual"] == 503 and m["expected"] == 3
        for m in report["mismatches"]
    )


def test_show_balance_and_entries(runner):
    setup_community(runner)
    for amount in (40, 2, -12):
        _post("H1", amount)
    info = run_json(runner, "ledger", "show", "H1")
    assert (info["community"], info["household"], info["balance"], info["entry_count"]) == (
        "oak",
        "H1",
        30,
        3,
    )
    assert [(e["amount"], e["balance_after"]) for e in info["entries"]] == [
        (40, 40),
        (2, 42),
        (-12, 30),
    ]
    latest = run_json(runner, "ledger", "show", "H1", "--limit", "2")
    assert [e["amount"] for e in latest["entries"]] == [2, -12]
    out = run(runner, "ledger", "show", "H1").stdout
    assert out.startswith("oak/H1: balance 30 points (3 entries)")
    assert "test -12" in out


def test_show_needs_a_community_when_ambiguous(runner):
    setup_community(runner, "oak")
    setup_community(runner, "elm")
    assert "several communities" in fails(runner, "ledger", "show", "H1")
    assert run_json(runner, "ledger", "show", "H1", "--community", "elm")["community"] == "elm"
    assert "no household" in fails(runner, "ledger", "show", "H7")
