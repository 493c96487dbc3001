"""The token API's part of the OpenAPI document (``/api/openapi.json`` gathers it).

Plain JSON Schema: the answers are built as dicts by ``services`` (docs/api.md).
"""

from __future__ import annotations

_REF = "#/components/schemas/{name}"
BEARER = [{"BearerToken": []}]


def _ref(name: str) -> dict:
    return {"$ref": _REF.format(name=name)}


def _json(name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


_STRINGS = {"type": "array", "items": {"type": "string"}}

SCHEMAS = {
    "Scopes": {
        "type": "object",
        "properties": {"communities": _STRINGS, "buildings": _STRINGS, "households": _STRINGS},
        "required": ["communities", "buildings", "households"],
        "description": "Community slugs; SLUG/CODE of buildings and households.",
    },
    "OwnHousehold": {
        "type": "object",
        "properties": {
            "community": {"type": "string"},
            "code": {"type": "string"},
            "building": {"type": "string"},
            "unit": {"type": "string"},
            "balance": {"type": "integer", "minimum": 0},
        },
        "required": ["community", "code", "building", "unit", "balance"],
    },
    "Me": {
        "type": "object",
        "properties": {
            "username": {"type": "string"},
            "role": {"enum": ["admin", "manager", "staff", "resident"]},
            "scopes": _ref("Scopes"),
            "household": {"anyOf": [_ref("OwnHousehold"), {"type": "null"}]},
        },
        "required": ["username", "role", "scopes", "household"],
    },
    "LedgerEntry": {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "kind": {"type": "string"},
            "amount": {"type": "integer"},
            "balance_after": {"type": "integer", "minimum": 0},
            "reason": {"type": "string"},
            "source_type": {"type": "string"},
            "source_id": {"type": "string"},
            "reverses_entry_id": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
        "required": ["id", "created_at", "kind", "amount", "balance_after", "reason"],
    },
    "HouseholdView": {
        "type": "object",
        "properties": {
            "community": {"type": "string"},
            "code": {"type": "string"},
            "building": {"type": "string"},
            "unit": {"type": "string"},
            "balance": {"type": "integer", "minimum": 0},
            "entries": {"type": "array", "items": _ref("LedgerEntry"), "maxItems": 50},
        },
        "required": ["community", "code", "building", "unit", "balance", "entries"],
    },
}

SECURITY_SCHEMES = {
    "BearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token from `sortpoint user token USERNAME` (docs/api.md).",
    }
}


def paths(errors) -> dict:
    """The token API's paths; ``errors(*statuses)`` gives the shared error answers."""
    return {
        "/api/v1/me": {
            "get": {
                "summary": "The token's user: role, scopes and, for a resident, their household.",
                "operationId": "getMe",
                "security": BEARER,
                "responses": {
                    "200": _json("Me", "Who the token's user is."),
                    **errors(401, 405, 500),
                },
            }
        },
        "/api/v1/communities/{slug}/households/{code}": {
            "get": {
                "summary": "A household's balance and latest entries, for a user in scope.",
                "operationId": "getHousehold",
                "security": BEARER,
                "parameters": [
                    {"name": "slug", "in": "path", "required": True, "schema": {"type": "string"}},
                    {"name": "code", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {
                    "200": _json("HouseholdView", "The household."),
                    **errors(401, 403, 404, 405, 500),
                },
            }
        },
    }
