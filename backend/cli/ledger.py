"""``sortpoint ledger``: verify every balance and show a household's entries."""

from __future__ import annotations

import dataclasses
import sys

import click

from backend.cli.common import SortpointGroup, emit, json_option
from backend.db import db

ledger_cli = SortpointGroup("ledger", help="Check and show the points ledger.")


@ledger_cli.command("verify")
@json_option
def ledger_verify(as_json: bool) -> None:
    """Recompute every balance from the entries; exit 1 on any mismatch."""
    from backend.services import ledger

    with db.read() as s:  # one snapshot; deposits keep flowing meanwhile
        found = ledger.verify(s)
    mismatches = [_plain(m) for m in found]
    lines = [f"MISMATCH {m.describe() if hasattr(m, 'describe') else m}" for m in found]
    emit(
        {"ok": not mismatches, "mismatches": mismatches},
        as_json,
        lines or "ledger OK: every balance matches its entries",
    )
    if mismatches:
        if not as_json:
            click.echo(f"{len(mismatches)} mismatch(es) found", err=True)
        sys.exit(1)


def _plain(value) -> dict:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "_asdict"):
        return value._asdict()
    return {"detail": str(value)}


@ledger_cli.command("show")
@click.argument("household")
@click.option(
    "--community", default=None, help="The household's community (needed if the code is ambiguous)."
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="How many of the latest entries.",
)
@json_option
def ledger_show(household: str, community: str | None, limit: int, as_json: bool) -> None:
    """Show HOUSEHOLD's balance and latest ledger entries."""
    from backend.services import statements

    with db.read() as s:
        info = statements.household_statement(s, household, community, limit)
    lines = [
        f"{info['community']}/{info['household']}: balance {info['balance']} points "
        f"({info['entry_count']} entries)"
    ]
    lines += [
        f"{e['id']:>8}  {e['created_at']}  {e['kind']:<10} {e['amount']:>+8} -> {e['balance_after']:>8}"
        f"  {e['reason']} [{e['source_type']}:{e['source_id']}]"
        for e in info["entries"]
    ]
    emit(info, as_json, lines)
