"""``sortpoint user``: users, their roles and scopes, passwords and API tokens."""

from __future__ import annotations

import click

from backend.core.cli import SortpointGroup, emit, json_option
from backend.people import use_cases
from backend.people.models import ROLES

user_cli = SortpointGroup("user", help="Users, roles, passwords and API tokens.")


def _scopes(info: dict) -> str:
    scopes = info["scopes"]
    parts = scopes["communities"] + scopes["buildings"] + scopes["households"]
    return ",".join(parts) or "-"


@user_cli.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(ROLES), help="The user's role.")
@click.option(
    "--community",
    "communities",
    multiple=True,
    metavar="SLUG",
    help="A community a manager or staff member acts on (repeat).",
)
@click.option(
    "--building",
    "buildings",
    multiple=True,
    metavar="SLUG/CODE",
    help="A building a staff member audits (repeat).",
)
@click.option(
    "--household",
    "households",
    multiple=True,
    metavar="SLUG/CODE",
    help="A resident's household (exactly one).",
)
@json_option
def user_create(username, role, communities, buildings, households, as_json) -> None:
    """Create USERNAME with ROLE and scopes; prints a generated password once."""
    info = use_cases.create_user(username, role, communities, buildings, households)
    emit(
        {"username": info["username"], "password": info["password"]},
        as_json,
        [
            f"user {info['username']} ({info['role']}; scope {_scopes(info)})",
            f"password: {info['password']}",
            "(shown once: give it to the user; `sortpoint user reset-password` makes a new one)",
        ],
    )


@user_cli.command("reset-password")
@click.argument("username")
@json_option
def user_reset_password(username: str, as_json: bool) -> None:
    """Give USERNAME a new generated password, printed once (their sessions end)."""
    info = use_cases.reset_password(username)
    emit(info, as_json, [f"user {username}", f"password: {info['password']}"])


@user_cli.command("list")
@json_option
def user_list(as_json: bool) -> None:
    """List users: USERNAME<TAB>ROLE<TAB>SCOPES<TAB>active|disabled."""
    infos = use_cases.list_users()
    emit(
        infos,
        as_json,
        [
            f"{i['username']}\t{i['role']}\t{_scopes(i)}\t"
            + ("disabled" if i["disabled"] else "active")
            for i in infos
        ]
        or ["no users"],
    )


@user_cli.command("disable")
@click.argument("username")
@json_option
def user_disable(username: str, as_json: bool) -> None:
    """Disable USERNAME: no login, and their sessions and tokens stop working."""
    info = use_cases.disable_user(username)
    emit(info, as_json, f"user {username} disabled" + ("" if info["changed"] else " already"))


@user_cli.command("token")
@click.argument("username")
@json_option
def user_token(username: str, as_json: bool) -> None:
    """Make an API token for USERNAME, printed once (stored hashed)."""
    info = use_cases.issue_token(username)
    emit(
        {"token": info["token"]},
        as_json,
        [
            info["token"],
            f"(shown once; its prefix {info['prefix']} revokes it: "
            f"sortpoint user revoke-token {info['prefix']})",
        ],
    )


@user_cli.command("revoke-token")
@click.argument("prefix")
@json_option
def user_revoke_token(prefix: str, as_json: bool) -> None:
    """Revoke the API token whose prefix is PREFIX."""
    info = use_cases.revoke_token(prefix)
    emit(info, as_json, f"token {prefix} revoked" + ("" if info["changed"] else " already"))
