"""``sortpoint reward``: a community's reward catalog (the operator's side of the desk)."""

from __future__ import annotations

import json

import click

from backend.core.cli import SortpointGroup, aware_datetime, emit, json_option
from backend.desk import use_cases
from backend.desk.models import REWARD_KINDS

reward_cli = SortpointGroup("reward", help="A community's reward catalog and its history.")


def _line(info: dict) -> str:
    stock = "unlimited" if info["stock"] is None else str(info["stock"])
    cash = f"\t{info['cash_fen']} fen" if info["cash_fen"] is not None else ""
    state = "available" if info["available"] else "unavailable"
    return (
        f"{info['id']}\t{info['name']}\t{info['kind']}\t{info['points']} points\t"
        f"stock {stock}\t{state}{cash}"
    )


def _window_options(func):
    func = click.option(
        "--ends-at", callback=aware_datetime, help="Offered until (ISO 8601 with offset)."
    )(func)
    return click.option(
        "--starts-at", callback=aware_datetime, help="Offered from (ISO 8601 with offset)."
    )(func)


@reward_cli.command("add")
@click.argument("community")
@click.option("--name", required=True, help="What the desk calls it (1..100 characters).")
@click.option("--kind", required=True, type=click.Choice(REWARD_KINDS), help="The kind.")
@click.option("--points", required=True, type=int, help="The price of one, in points.")
@click.option("--stock", type=int, help="How many there are (omit: unlimited).")
@click.option(
    "--fen-per-point",
    type=int,
    help="cash only: fen one point pays (default 1: a point is 0.01 CNY).",
)
@_window_options
@json_option
def reward_add(
    community, name, kind, points, stock, fen_per_point, starts_at, ends_at, as_json
) -> None:
    """Add a reward to COMMUNITY's catalog; prints its id."""
    info = use_cases.add_reward(
        community,
        name=name,
        kind=kind,
        points=points,
        stock=stock,
        fen_per_point=fen_per_point,
        starts_at=starts_at,
        ends_at=ends_at,
    )
    emit({"id": info["id"]}, as_json, [f"reward {info['id']} added", _line(info)])


@reward_cli.command("list")
@click.argument("community")
@json_option
def reward_list(community: str, as_json: bool) -> None:
    """COMMUNITY's rewards: ID, NAME, KIND, POINTS, STOCK, AVAILABLE (tab-separated)."""
    catalog = use_cases.list_rewards(community)
    emit(catalog, as_json, [_line(i) for i in catalog["rewards"]])


@reward_cli.command("edit")
@click.argument("reward_id", type=int)
@click.option("--name", help="A new name.")
@click.option("--points", type=int, help="A new price in points.")
@click.option("--fen-per-point", type=int, help="cash only: a new rate.")
@click.option("--unlimited", is_flag=True, help="No stock count any more.")
@_window_options
@json_option
def reward_edit(
    reward_id, name, points, fen_per_point, unlimited, starts_at, ends_at, as_json
) -> None:
    """Change REWARD_ID's name, price, rate or window (only the options given)."""
    given = {
        "name": name,
        "points": points,
        "fen_per_point": fen_per_point,
        "starts_at": starts_at,
        "ends_at": ends_at,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    if unlimited:
        changes["stock"] = None
    if not changes:
        raise click.UsageError("give at least one change")
    info = use_cases.edit_reward(reward_id, changes)
    emit(info, as_json, [_line(info) + ("" if info["changed"] else "\t(unchanged)")])


@reward_cli.command("set-stock")
@click.argument("reward_id", type=int)
@click.argument("stock", type=int)
@json_option
def reward_set_stock(reward_id: int, stock: int, as_json: bool) -> None:
    """Set how many of REWARD_ID are left (a count, e.g. after a delivery)."""
    info = use_cases.edit_reward(reward_id, {"stock": stock}, action="set_stock")
    emit(info, as_json, [_line(info) + ("" if info["changed"] else "\t(unchanged)")])


@reward_cli.command("history")
@click.argument("reward_id", type=int)
@json_option
def reward_history(reward_id: int, as_json: bool) -> None:
    """Every change of REWARD_ID: WHEN, WHO, ACTION, BEFORE -> AFTER."""
    changes = use_cases.reward_history(reward_id)
    emit(
        changes,
        as_json,
        [
            f"{c['created_at']}\t{c['changed_by']}\t{c['action']}\t"
            f"{json.dumps(c['before'], sort_keys=True)} -> {json.dumps(c['after'], sort_keys=True)}"
            for c in changes
        ],
    )
