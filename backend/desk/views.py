"""The desk's token API (``/api/v1/``): the catalog, redemptions, voids and receipts.

Each view reads the request, calls one use case (``use_cases``, which owns its
transaction and checks the token's actor) and encodes the answer.  Errors are
JSON, as in the rest of the token API (``backend.people.errors``).
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, current_app, jsonify, request

from backend.desk import services, use_cases
from backend.people import errors

api = Blueprint("desk_api", __name__, url_prefix="/api/v1")
errors.install_api(api)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _body():
    return request.get_json(silent=True)


@api.get("/communities/<slug>/rewards")
def catalog(slug: str):
    """The community's rewards with stock left."""
    return jsonify(use_cases.catalog_by_token(_bearer(), slug))


@api.post("/communities/<slug>/rewards")
def add_reward(slug: str):
    """Add a reward (a manager of the community or an admin); 201 with its entry."""
    fields = services.fields_from_json(_body(), ("kind", *services.EDITABLE))
    return jsonify(use_cases.add_reward_by_token(_bearer(), slug, fields)), 201


@api.patch("/rewards/<int:reward_id>")
def edit_reward(reward_id: int):
    """Change a reward's fields; every change is kept."""
    fields = services.fields_from_json(_body(), services.EDITABLE)
    return jsonify(use_cases.edit_reward_by_token(_bearer(), reward_id, fields))


@api.post("/communities/<slug>/redemptions")
def redeem(slug: str):
    """Redeem rewards for a household, once per Idempotency-Key; 201."""
    answer = use_cases.redeem_by_token(
        _bearer(), slug, request.headers.get("Idempotency-Key"), _body()
    )
    return jsonify(answer), 201


@api.post("/redemptions/<int:redemption_id>/void")
def void(redemption_id: int):
    """Void a redemption within the window, with a reason."""
    body = _body()
    reason = body.get("reason") if isinstance(body, dict) else None
    window = dt.timedelta(seconds=current_app.config["VOID_WINDOW_S"])
    return jsonify(use_cases.void_by_token(_bearer(), redemption_id, reason, window))


@api.get("/redemptions/<int:redemption_id>")
def receipt(redemption_id: int):
    """A redemption's receipt."""
    return jsonify(use_cases.receipt_by_token(_bearer(), redemption_id))
