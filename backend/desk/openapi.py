"""The desk's part of the OpenAPI document (``/api/openapi.json`` gathers it).

Plain JSON Schema, as ``backend.people.openapi``: the answers are dicts built by
``services`` (docs/api.md, "The desk").
"""

from __future__ import annotations

from backend.people.openapi import BEARER

_REF = "#/components/schemas/{name}"
_TIME = {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}
_INT_OR_NULL = {"anyOf": [{"type": "integer"}, {"type": "null"}]}


def _ref(name: str) -> dict:
    return {"$ref": _REF.format(name=name)}


def _json(name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _body(name: str) -> dict:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def _path_param(name: str, schema: dict) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_SLUG = _path_param("slug", {"type": "string"})
_ID = _path_param("id", {"type": "integer", "minimum": 1})
_REWARD_FIELDS = {
    "name": {"type": "string", "minLength": 1, "maxLength": 100},
    "points": {"type": "integer", "minimum": 1},
    "stock": _INT_OR_NULL | {"description": "How many are left; null is unlimited."},
    "fen_per_point": _INT_OR_NULL
    | {"description": "cash only: fen one point pays (1: a point is 0.01 CNY)."},
    "starts_at": _TIME,
    "ends_at": _TIME,
}
_KIND = {"enum": ["goods", "card", "topup", "cash"]}

SCHEMAS = {
    "Reward": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "kind": _KIND,
            **_REWARD_FIELDS,
            "cash_fen": _INT_OR_NULL | {"description": "cash only: points * fen_per_point."},
            "available": {"type": "boolean"},
            "changed": {"type": "boolean", "description": "Only in the answer of an edit."},
        },
        "required": ["id", "name", "kind", "points", "stock", "available"],
    },
    "Catalog": {
        "type": "object",
        "properties": {
            "community": {"type": "string"},
            "rewards": {"type": "array", "items": _ref("Reward")},
        },
        "required": ["community", "rewards"],
    },
    "NewReward": {
        "type": "object",
        "properties": {"kind": _KIND, **_REWARD_FIELDS},
        "required": ["name", "kind", "points"],
        "additionalProperties": False,
    },
    "RewardChanges": {
        "type": "object",
        "properties": _REWARD_FIELDS,
        "additionalProperties": False,
    },
    "RedemptionRequest": {
        "type": "object",
        "properties": {
            "household": {"type": "string"},
            "items": {
                "type": "array",
                "minItems": 1,
                "maxItems": 50,
                "items": {
                    "type": "object",
                    "properties": {
                        "reward": {"type": "integer", "minimum": 1},
                        "quantity": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    "required": ["reward", "quantity"],
                    "additionalProperties": False,
                },
            },
        },
        "required": ["household", "items"],
    },
    "RedemptionDone": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "receipt": {"type": "integer", "description": "Per community, from 1, no gaps."},
            "points": {"type": "integer", "minimum": 1},
            "balance": {"type": "integer", "minimum": 0},
        },
        "required": ["id", "receipt", "points", "balance"],
    },
    "VoidRequest": {
        "type": "object",
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 160}},
        "required": ["reason"],
    },
    "VoidDone": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "balance": {"type": "integer", "minimum": 0}},
        "required": ["id", "balance"],
    },
    "Receipt": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "community": {"type": "string"},
            "receipt": {"type": "integer"},
            "household": {"type": "string"},
            "building": {"type": "string"},
            "unit": {"type": "string"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "reward": {"type": "integer"},
                        "name": {"type": "string"},
                        "kind": _KIND,
                        "quantity": {"type": "integer"},
                        "points_each": {"type": "integer"},
                        "points": {"type": "integer"},
                    },
                },
            },
            "points": {"type": "integer"},
            "balance_after": {"type": "integer", "minimum": 0},
            "entry_id": {"type": "integer"},
            "manager": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "voided": {
                "anyOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "properties": {
                            "at": {"type": "string", "format": "date-time"},
                            "by": {"type": "string"},
                            "reason": {"type": "string"},
                            "balance_after": {"type": "integer", "minimum": 0},
                            "entry_id": {"type": "integer"},
                        },
                    },
                ]
            },
        },
        "required": [
            "id",
            "receipt",
            "household",
            "items",
            "points",
            "balance_after",
            "manager",
            "created_at",
            "voided",
        ],
    },
}

_CONFLICT = {
    "description": "Nothing changed: `insufficient_points`, `out_of_stock`, `reward_unavailable`, "
    "`idempotency_conflict` (redemptions); `already_voided`, `void_window_passed` (voids).",
    "content": {"application/json": {"schema": _ref("ErrorResponse")}},
}


def paths(errors) -> dict:
    """The desk's paths; ``errors(*statuses)`` gives the shared error answers."""
    return {
        "/api/v1/communities/{slug}/rewards": {
            "get": {
                "summary": "The community's catalog with stock left (its managers, staff and "
                "residents, admins).",
                "operationId": "getRewards",
                "security": BEARER,
                "parameters": [_SLUG],
                "responses": {
                    "200": _json("Catalog", "The rewards, by id."),
                    **errors(401, 403, 404, 405, 500),
                },
            },
            "post": {
                "summary": "Add a reward (a manager of the community, or an admin).",
                "operationId": "addReward",
                "security": BEARER,
                "parameters": [_SLUG],
                "requestBody": _body("NewReward"),
                "responses": {
                    "201": _json("Reward", "The reward added."),
                    **errors(400, 401, 403, 404, 405, 500),
                },
            },
        },
        "/api/v1/rewards/{id}": {
            "patch": {
                "summary": "Change a reward's fields; every change is kept (who, when, before, "
                "after).",
                "operationId": "editReward",
                "security": BEARER,
                "parameters": [_ID],
                "requestBody": _body("RewardChanges"),
                "responses": {
                    "200": _json("Reward", "The reward now, with `changed`."),
                    **errors(400, 401, 403, 404, 405, 500),
                },
            }
        },
        "/api/v1/communities/{slug}/redemptions": {
            "post": {
                "summary": "Redeem rewards for a household, once per Idempotency-Key.",
                "operationId": "redeem",
                "security": BEARER,
                "parameters": [
                    _SLUG,
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 100},
                    },
                ],
                "requestBody": _body("RedemptionRequest"),
                "responses": {
                    "201": _json(
                        "RedemptionDone", "Redeemed (or the same answer again, for the same key)."
                    ),
                    **errors(400, 401, 403, 404, 405, 500),
                    "409": _CONFLICT,
                },
            }
        },
        "/api/v1/redemptions/{id}": {
            "get": {
                "summary": "A redemption's receipt (for those who may see its household).",
                "operationId": "getRedemption",
                "security": BEARER,
                "parameters": [_ID],
                "responses": {
                    "200": _json("Receipt", "The receipt."),
                    **errors(401, 403, 404, 405, 500),
                },
            }
        },
        "/api/v1/redemptions/{id}/void": {
            "post": {
                "summary": "Void a redemption within the void window: points and stock back.",
                "operationId": "voidRedemption",
                "security": BEARER,
                "parameters": [_ID],
                "requestBody": _body("VoidRequest"),
                "responses": {
                    "200": _json("VoidDone", "Voided; the household's balance now."),
                    **errors(400, 401, 403, 404, 405, 500),
                    "409": _CONFLICT,
                },
            }
        },
    }
