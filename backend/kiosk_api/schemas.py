"""Declared request and response schemas of the kiosk API (msgspec Structs).

The same Structs decode+validate request bodies in one pass (scripts/
bench_validation.py measured msgspec against pydantic and hand checks, see
docs/performance.md) and generate the OpenAPI components
(``backend.kiosk_api.openapi``), so the published document cannot drift from what
the server enforces.

Type errors are the client's bug and fail the whole body with 400; value
errors an honest kiosk can produce (a door that was re-assigned, a label that
was revoked, a scale glitch) are per-item rejections inside a 200 answer.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge

DepositId = Annotated[
    uuid.UUID,
    msgspec.Meta(
        description="Chosen by the kiosk (UUID, e.g. uuid4); the idempotency key of the deposit."
    ),
]
LabelText = Annotated[
    str,
    msgspec.Meta(
        max_length=1024,
        description="The scanned QR payload, exactly as read (SP1 label).",
    ),
]
Door = Annotated[int, msgspec.Meta(description="Door number on this kiosk.")]
CategoryCode = Annotated[
    str, msgspec.Meta(max_length=64, description="Category code, e.g. plastic.")
]
NetGrams = Annotated[
    int,
    msgspec.Meta(description="Net weight in whole grams (must be 1..door capacity)."),
]
OccurredAt = Annotated[
    dt.datetime,
    msgspec.Meta(tz=True, description="RFC 3339 time the door closed, with a UTC offset."),
]


class DepositItem(msgspec.Struct):
    """One deposit as the kiosk journalled it."""

    id: DepositId
    label: LabelText
    door: Door
    category: CategoryCode
    net_g: NetGrams
    occurred_at: OccurredAt


class DepositBatch(msgspec.Struct):
    """Body of POST /api/v1/deposits: 1 to MAX_BATCH (500) deposits."""

    deposits: Annotated[list[DepositItem], msgspec.Meta(min_length=1)]


class Error(msgspec.Struct):
    """A machine-readable code and a human-readable message."""

    code: str
    message: str


class ErrorResponse(msgspec.Struct):
    """Body of every 4xx/5xx answer."""

    error: Error


Status = Literal["accepted", "flagged", "rejected", "duplicate", "conflict"]


class DepositResult(msgspec.Struct):
    """The answer for one deposit, in request order."""

    id: Annotated[str, msgspec.Meta(description="The deposit id, lowercase hyphenated.")]
    status: Status
    points: Annotated[int, msgspec.Meta(ge=0, description="Points credited by this deposit.")]
    balance: Annotated[
        int | None,
        msgspec.Meta(
            description="Household balance after this item; null when rejected or conflict."
        ),
    ]
    reason: Annotated[
        str | None,
        msgspec.Meta(
            description="Why it earned less than its weight's worth: below_minimum, daily_cap, "
            "no_rule, label_reused, implausible_weight; null otherwise."
        ),
    ]
    original_status: Annotated[
        Literal["accepted", "flagged"] | None,
        msgspec.Meta(description="For a duplicate: the status it was recorded with."),
    ]
    error: Error | None


class DepositsResponse(msgspec.Struct):
    """Body of a 200 answer to POST /api/v1/deposits."""

    results: list[DepositResult]


class DoorConfig(msgspec.Struct):
    door: int
    category: str
    capacity_g: int


class CategoryConfig(msgspec.Struct):
    code: str
    name: str
    max_plausible_g: int


class RuleConfig(msgspec.Struct):
    category: str
    version: int
    points_per_kg: int
    min_net_g: int
    daily_cap: int | None
    effective_at: dt.datetime


class Limits(msgspec.Struct):
    max_batch: int
    max_skew_s: int
    max_age_s: int
    max_ahead_s: int


class KioskConfig(msgspec.Struct):
    """Body of GET /api/v1/kiosk/config: what a kiosk needs to work offline."""

    kiosk_id: str
    kiosk_name: str
    community: str
    community_name: str
    timezone: str
    label_public_key: Annotated[
        str, msgspec.Meta(description="Unpadded base64url raw Ed25519 key.")
    ]
    doors: list[DoorConfig]
    categories: list[CategoryConfig]
    rules: list[RuleConfig]
    revoked_serials: list[str]
    server_time: dt.datetime
    server_time_unix: int
    limits: Limits


class Health(msgspec.Struct):
    status: str
    database: str
    server_time: dt.datetime


_batch_decoder = msgspec.json.Decoder(DepositBatch)


def decode_batch(body: bytes, max_batch: int) -> DepositBatch:
    """Decode and validate a deposits body; 400 if malformed, 413 if too many items.

    The whole body must be UTF-8 (msgspec checks the strings it keeps, not the
    ones it skips: an ignored key or value) and nested no deeper than the
    parser's recursion limit allows (a deposits body needs three levels).
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"body is not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        batch = _batch_decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid deposits body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("body is nested too deeply") from None
    if len(batch.deposits) > max_batch:
        raise RequestEntityTooLarge(
            f"{len(batch.deposits)} deposits in one batch; at most {max_batch} are accepted"
        )
    return batch


def encode(obj) -> bytes:
    """Encode a response Struct or plain JSON-able object."""
    return msgspec.json.encode(obj)
