"""The OpenAPI 3.1 document, generated from the msgspec Structs that validate."""

from __future__ import annotations

import functools

import msgspec

from backend.desk import openapi as desk_api
from backend.kiosk_api import schemas
from backend.people import openapi as people_api
from protocol import signing

_REF = "#/components/schemas/{name}"
_SIGNED = [{"KioskId": [], "Timestamp": [], "Nonce": [], "Signature": []}]


def _ref(name: str) -> dict:
    return {"$ref": _REF.format(name=name)}


def _json_body(name: str, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(name)}},
    }


def _errors(*statuses: int) -> dict:
    text = {
        400: "Malformed body (not JSON, or not matching the schema); nothing applied.",
        401: "Missing, wrong or stale signature, reused nonce, or disabled kiosk; "
        "for a bearer token: missing, unknown or revoked, or its user disabled.",
        403: "The token's user may not see that place; nothing was read or changed.",
        404: "No such community or household (told only to users who may see the community).",
        405: "Another method than this path serves; the Allow header lists the ones it does.",
        413: "More deposits than limits.max_batch, or a body over 4 MiB (chunked too).",
        415: "The body is not declared Content-Type: application/json (charset utf-8 if any).",
        500: "A server fault; nothing was applied. Retry later.",
        503: "The batch kept colliding with concurrent batches; retry it unchanged later.",
    }
    errors = {str(s): _json_body("ErrorResponse", text[s]) for s in statuses}
    errors["405"]["headers"] = {
        "Allow": {
            "description": "The methods this path serves, e.g. `POST`.",
            "schema": {"type": "string"},
            "required": True,
        }
    }
    return errors


def _security_schemes() -> dict:
    def header(name: str, text: str) -> dict:
        return {"type": "apiKey", "in": "header", "name": name, "description": text}

    return {
        "KioskId": header(
            signing.HEADER_KIOSK, "The kiosk id printed by `sortpoint kiosk register`."
        ),
        "Timestamp": header(
            signing.HEADER_TIMESTAMP, "Unix seconds; within 300 s of the server clock."
        ),
        "Nonce": header(signing.HEADER_NONCE, "16..128 printable ASCII characters, never reused."),
        "Signature": header(
            signing.HEADER_SIGNATURE,
            "Lowercase hex HMAC-SHA256 over METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nSHA256_HEX(BODY); "
            "see docs/protocol.md.",
        ),
    }


def build_document(max_batch: int) -> dict:
    """Return the OpenAPI document as a dict."""
    _, components = msgspec.json.schema_components(
        [
            schemas.DepositBatch,
            schemas.DepositsResponse,
            schemas.KioskConfig,
            schemas.ErrorResponse,
            schemas.Health,
        ],
        ref_template=_REF,
    )
    # the item limit answers 413 rather than 400, so it is checked after
    # decoding; publish it all the same
    components["DepositBatch"]["properties"]["deposits"]["maxItems"] = max_batch
    paths = {
        "/api/v1/deposits": {
            "post": {
                "summary": "Upload a batch of deposits (exactly-once by deposit id).",
                "operationId": "postDeposits",
                "security": _SIGNED,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("DepositBatch")}},
                },
                "responses": {
                    "200": _json_body("DepositsResponse", "One result per deposit, in order."),
                    **_errors(400, 401, 405, 413, 415, 500, 503),
                },
            }
        },
        "/api/v1/kiosk/config": {
            "get": {
                "summary": "Doors, categories, label key, current rules and revoked labels of the kiosk.",
                "operationId": "getKioskConfig",
                "security": _SIGNED,
                "responses": {
                    "200": _json_body("KioskConfig", "The kiosk's configuration."),
                    **_errors(401, 405, 500),
                },
            }
        },
        "/api/v1/health": {
            "get": {
                "summary": "Liveness and database reachability (unsigned).",
                "operationId": "getHealth",
                "responses": {
                    "200": _json_body("Health", "The app reaches its database."),
                    **_errors(405, 500),
                },
            }
        },
    }
    paths |= people_api.paths(_errors) | desk_api.paths(_errors)
    components |= people_api.SCHEMAS | desk_api.SCHEMAS
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sortpoint API",
            "version": "1",
            "description": "The kiosk<->backend contract (docs/protocol.md explains every field) "
            "and the token API (docs/api.md).",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": _security_schemes() | people_api.SECURITY_SCHEMES,
        },
    }


@functools.lru_cache(maxsize=8)
def document_bytes(max_batch: int) -> bytes:
    """Return the encoded document (built once per process and batch limit)."""
    return msgspec.json.encode(build_document(max_batch))
