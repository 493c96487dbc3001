"""``sortpoint ledger`` and ``sortpoint rules``: verify and show the points ledger; version the points rules."""

from __future__ import annotations

import dataclasses
import sys

import click

from backend.core.cli import SortpointGroup, aware_datetime, emit, json_option
from backend.ledger import use_cases

ledger_cli = SortpointGroup("ledger", help="Check and show the points ledger.")


@ledger_cli.command("verify")
@json_option
def ledger_verify(as_json: bool) -> None:
    """Recompute every balance from the entries; exit 1 on any mismatch."""
    found = use_cases.verify_ledger()
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
    info = use_cases.household_statement(household, community, limit)
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


# ------------------------------------------------------------ rules

rules_cli = SortpointGroup("rules", help="Set and list versioned points rules.")


@rules_cli.command("set")
@click.argument("community")
@click.option("--category", required=True, help="Category code, e.g. plastic.")
@click.option(
    "--points-per-kg",
    type=click.IntRange(min=0),
    required=True,
    help="Points per kilogram; points = net_g * points_per_kg // 1000.",
)
@click.option(
    "--min-g",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Lighter deposits are recorded but earn 0 points.",
)
@click.option(
    "--daily-cap",
    type=click.IntRange(min=0),
    default=None,
    help="Most points per household, category and local day (default: no cap).",
)
@click.option(
    "--effective-at",
    callback=aware_datetime,
    metavar="ISO",
    help="When this version takes effect (with offset; default now).",
)
@json_option
def rules_set(community, category, points_per_kg, min_g, daily_cap, effective_at, as_json) -> None:
    """Append a new version of COMMUNITY's points rule for a category."""
    info = use_cases.set_rule(community, category, points_per_kg, min_g, daily_cap, effective_at)
    cap = info["daily_cap"] if info["daily_cap"] is not None else "none"
    emit(
        info,
        as_json,
        f"{community}/{category} rule v{info['version']}: {points_per_kg} points/kg, "
        f"min {min_g} g, daily cap {cap}, from {info['effective_at']}",
    )


@rules_cli.command("list")
@click.argument("community")
@click.option("--category", default=None, help="Only this category.")
@json_option
def rules_list(community: str, category: str | None, as_json: bool) -> None:
    """List every version of COMMUNITY's points rules (* = in force now)."""
    table = use_cases.rules_table(community, category)
    lines = [
        f"{'*' if r['current'] else ' '} {r['category']:<10} v{r['version']:<3} "
        f"{r['points_per_kg']:>6} pts/kg  min {r['min_net_g']:>5} g  "
        f"cap {r['daily_cap'] if r['daily_cap'] is not None else '-':>6}  from {r['effective_at']}"
        for r in table
    ]
    emit(table, as_json, lines or [f"no rules in {community}"])
