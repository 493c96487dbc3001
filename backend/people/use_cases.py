"""People's use cases: one function each, and each owns its transaction.

As ``backend.registry.use_cases``: a CLI command or a view calls exactly one of
these and shows what it returns; it never opens, commits or rolls back a
transaction itself (tests/test_transactions_owned.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.core.db import db
from backend.people import services
from backend.people.access import Actor
from backend.people.services import LoginLimits, SessionUser

# ----------------------------------------------------------------- users


def create_user(
    username: str,
    role: str,
    communities: Sequence[str] = (),
    buildings: Sequence[str] = (),
    households: Sequence[str] = (),
) -> dict:
    """Create a user; return their description with the generated password (shown once)."""
    with db.begin() as s:
        user, password = services.create_user(s, username, role, communities, buildings, households)
        scopes = services.scope_names(s, [user.id])[user.id]
        return {"username": user.username, "password": password} | {
            k: v for k, v in services.user_info(user, scopes).items() if k != "username"
        }


def reset_password(username: str) -> dict:
    """Give a user a new generated password; return ``{"username", "password"}``."""
    with db.begin() as s:
        return {"username": username, "password": services.reset_password(s, username)}


def disable_user(username: str) -> dict:
    """Disable a user; return their description and ``changed``."""
    with db.begin() as s:
        user, changed = services.disable_user(s, username)
        scopes = services.scope_names(s, [user.id])[user.id]
        return services.user_info(user, scopes) | {"changed": changed}


def list_users() -> list[dict]:
    """Return every user's description (no password hashes, no tokens)."""
    with db.read() as s:
        users = services.list_users(s)
        scopes = services.scope_names(s, [u.id for u in users])
        return [services.user_info(u, scopes[u.id]) for u in users]


# ------------------------------------------------------------------ tokens


def issue_token(username: str) -> dict:
    """Make an API token for a user; return ``{"token", "prefix", "username"}`` (shown once)."""
    with db.begin() as s:
        token, row = services.issue_token(s, username)
        return {"token": token, "prefix": row.prefix, "username": username}


def revoke_token(prefix: str) -> dict:
    """Revoke the token with that prefix; return ``{"prefix", "changed"}``."""
    with db.begin() as s:
        _, changed = services.revoke_token(s, prefix)
        return {"prefix": prefix, "changed": changed}


# ----------------------------------------------------------- login, pages


def login(username: str, password: str, remote_addr: str, limits: LoginLimits) -> SessionUser:
    """Check a login; a failure is recorded (committed) and then raised."""
    with db.begin() as s:
        outcome = services.attempt_login(s, username, password, remote_addr, limits)
    if isinstance(outcome, SessionUser):
        return outcome
    raise outcome


def session_user(session_id: str) -> SessionUser | None:
    """Return the user of a login session's id, or None if it no longer holds."""
    with db.read() as s:
        return services.session_user(s, session_id)


def whoami(actor: Actor) -> dict:
    """Return who a signed-in user is (the who-am-I page)."""
    with db.read() as s:
        return services.me(s, actor)


# -------------------------------------------------------------- the API


def me_by_token(token: str | None) -> dict:
    """GET /api/v1/me: the token's user, role, scopes and (a resident's) household."""
    with db.read() as s:
        return services.me(s, services.actor_by_token(s, token))


def household_by_token(token: str | None, slug: str, code: str) -> dict:
    """GET /api/v1/communities/{slug}/households/{code}, for a token's user in scope."""
    with db.read() as s:
        return services.household_view(s, services.actor_by_token(s, token), slug, code)
