"""``sortpoint rules``: set and list versioned points rules."""

from __future__ import annotations

import click

from backend.cli.common import SortpointGroup, aware_datetime, emit, json_option
from backend.db import db

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
    from backend.services import rules

    with db.begin() as s:
        rule = rules.set_rule(s, community, category, points_per_kg, min_g, daily_cap, effective_at)
        info = rules.rule_info(rule, category)
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
    from backend.services import rules

    with db.read() as s:
        table = rules.rules_table(s, community, category)
    lines = [
        f"{'*' if r['current'] else ' '} {r['category']:<10} v{r['version']:<3} "
        f"{r['points_per_kg']:>6} pts/kg  min {r['min_net_g']:>5} g  "
        f"cap {r['daily_cap'] if r['daily_cap'] is not None else '-':>6}  from {r['effective_at']}"
        for r in table
    ]
    emit(table, as_json, lines or [f"no rules in {community}"])
