"""The desk's use cases: one function each, and each owns its transaction.

A CLI command or a view calls exactly one of these and shows what it returns;
it never opens, commits or rolls back a transaction itself
(tests/test_transactions_owned.py).  The API's use cases find the actor of the
bearer token inside the same transaction (``people.services.actor_by_token``).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy.exc import IntegrityError

from backend.core.db import db
from backend.desk import services
from backend.people.services import actor_by_token

#: a redemption that collided with a concurrent one under the same key is tried again
REDEEM_ATTEMPTS = 3


# ------------------------------------------------------------- the operator


def add_reward(slug: str, **fields) -> dict:
    """``sortpoint reward add``: add a reward; return its catalog entry."""
    with db.begin() as s:
        return services.reward_info(services.add_reward(s, None, slug, **fields))


def edit_reward(reward_id: int, changes: dict, action: str = "edit") -> dict:
    """``sortpoint reward edit`` / ``set-stock``: change a reward; its entry and ``changed``."""
    with db.begin() as s:
        reward, changed = services.edit_reward(s, None, reward_id, changes, action)
        return services.reward_info(reward) | {"changed": changed}


def list_rewards(slug: str) -> dict:
    """``sortpoint reward list``: the community's catalog."""
    with db.read() as s:
        return services.list_rewards(s, None, slug)


def reward_history(reward_id: int) -> list[dict]:
    """``sortpoint reward history``: every change of a reward, oldest first."""
    with db.read() as s:
        return services.reward_history(s, reward_id)


# ------------------------------------------------------------------ the API


def catalog_by_token(token: str | None, slug: str) -> dict:
    """GET /api/v1/communities/{slug}/rewards."""
    with db.read() as s:
        return services.list_rewards(s, actor_by_token(s, token), slug)


def add_reward_by_token(token: str | None, slug: str, fields: dict) -> dict:
    """POST /api/v1/communities/{slug}/rewards."""
    with db.begin() as s:
        actor = actor_by_token(s, token)
        return services.reward_info(services.add_reward(s, actor, slug, **fields))


def edit_reward_by_token(token: str | None, reward_id: int, changes: dict) -> dict:
    """PATCH /api/v1/rewards/{id}."""
    with db.begin() as s:
        actor = actor_by_token(s, token)
        reward, changed = services.edit_reward(s, actor, reward_id, changes)
        return services.reward_info(reward) | {"changed": changed}


def redeem_by_token(token: str | None, slug: str, key: str | None, body) -> dict:
    """POST /api/v1/communities/{slug}/redemptions, under its idempotency key.

    Two requests with one key for different households lock different accounts
    and race to the unique ``(community, key)``: the loser's transaction is
    rolled back whole and tried again, and then finds the winner's redemption
    (the same answer, or ``idempotency_conflict``).
    """
    for attempt in range(REDEEM_ATTEMPTS):
        try:
            with db.begin() as s:
                return services.redeem(s, actor_by_token(s, token), slug, key, body)
        except IntegrityError:
            if attempt == REDEEM_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def void_by_token(token: str | None, redemption_id: int, reason, window: dt.timedelta) -> dict:
    """POST /api/v1/redemptions/{id}/void."""
    with db.begin() as s:
        return services.void(s, actor_by_token(s, token), redemption_id, reason, window)


def receipt_by_token(token: str | None, redemption_id: int) -> dict:
    """GET /api/v1/redemptions/{id}."""
    with db.read() as s:
        return services.receipt(s, actor_by_token(s, token), redemption_id)
