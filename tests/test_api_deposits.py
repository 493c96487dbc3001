"""POST /api/v1/deposits: every status and error code, 400/413, config and OpenAPI."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import msgspec
import pytest
from sqlalchemy import func, select, update

from backend.core.db import db
from backend.deposits import ingest
from backend.deposits.models import Deposit
from backend.kiosk_api import schemas
from backend.ledger import services as ledger
from backend.ledger.models import LedgerEntry
from backend.registry.models import Label
from protocol import labels as plabels
from tests.factories import (
    build_world,
    deposit_item,
    make_kiosk,
    make_label,
    post_deposits,
    signed,
)

UTC = dt.UTC


@pytest.fixture
def world(app):
    with db.begin() as s:
        return build_world(s, households=3, labels_per_household=4, capacity_g=30_000)


def send(client, world, items, **kw):
    """POST items; assert a schema-valid 200 and return the results."""
    response = post_deposits(client, world, items, **kw)
    assert response.status_code == 200, response.json
    return msgspec.json.decode(response.data, type=schemas.DepositsResponse).results


def one(client, world, item):
    [result] = send(client, world, [item])
    return result


def lab(world, household="H001", n=0):
    return world.labels[household][n]


def count(model) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(model))


def assert_rejected(result, code):
    assert (result.status, result.points, result.balance) == ("rejected", 0, None)
    assert result.error.code == code and result.error.message


# ----------------------------------------------------------------- statuses


def test_accepted_credits_points_and_balance(client, world):
    r = one(client, world, deposit_item(lab(world), net_g=1_999))
    assert (r.status, r.points, r.balance, r.reason, r.error) == (
        "accepted",
        19,
        19,
        None,
        None,
    )
    with db.session() as s:
        dep = s.scalar(select(Deposit))
        assert (dep.status, dep.points, dep.rule_id) == (
            "accepted",
            19,
            world.rules["plastic"].id,
        )
        assert s.get(Label, plabels.parse_label(lab(world))[0].serial).first_deposit_id == dep.id
        entry = s.scalar(select(LedgerEntry))
        assert (entry.kind, entry.amount, entry.source_id) == (
            "deposit",
            19,
            str(dep.id),
        )
        assert ledger.verify(s) == []


def test_balances_run_in_request_order_across_households(client, world):
    items = [
        deposit_item(lab(world, "H001", 0), net_g=1_000),
        deposit_item(lab(world, "H002", 0), net_g=2_000),
        deposit_item(lab(world, "H001", 1), net_g=3_000),
    ]
    assert [(r.points, r.balance) for r in send(client, world, items)] == [
        (10, 10),
        (20, 20),
        (30, 40),
    ]


def test_label_reused_is_flagged_and_earns_nothing(client, world):
    first = one(client, world, deposit_item(lab(world)))
    again = one(client, world, deposit_item(lab(world)))
    assert (again.status, again.points, again.reason, again.balance) == (
        "flagged",
        0,
        "label_reused",
        first.balance,
    )
    assert count(Deposit) == 2 and count(LedgerEntry) == 1


def test_label_reused_within_one_batch(client, world):
    a, b = send(client, world, [deposit_item(lab(world)), deposit_item(lab(world))])
    assert (a.status, b.status, b.reason) == ("accepted", "flagged", "label_reused")


def test_label_reuse_across_two_kiosks(client, world):
    with db.begin() as s:
        other, other_secret = make_kiosk(s, world.community, world.categories, {1: "plastic"})
    assert one(client, world, deposit_item(lab(world))).status == "accepted"
    body = json.dumps({"deposits": [deposit_item(lab(world))]}).encode()
    response = client.post(
        "/api/v1/deposits",
        data=body,
        headers=signed(other.id, other_secret, "POST", "/api/v1/deposits", body),
    )
    [result] = response.json["results"]
    assert (result["status"], result["reason"], result["points"]) == (
        "flagged",
        "label_reused",
        0,
    )
    with db.session() as s:
        kiosks = set(s.scalars(select(Deposit.kiosk_id)))
    assert kiosks == {world.kiosk.id, other.id}


def test_implausible_weight_is_flagged_and_keeps_the_label(client, world):
    heavy = one(client, world, deposit_item(lab(world), net_g=10_001))  # plastic max 10 kg
    assert (heavy.status, heavy.points, heavy.reason) == (
        "flagged",
        0,
        "implausible_weight",
    )
    normal = one(client, world, deposit_item(lab(world), net_g=500))
    assert (normal.status, normal.points) == ("accepted", 5)


def test_duplicate_returns_original_status_points_and_current_balance(client, world):
    items = [
        deposit_item(lab(world, n=0), net_g=2_000),
        deposit_item(lab(world, n=0), net_g=700),
    ]
    first = send(client, world, items)
    one(client, world, deposit_item(lab(world, n=1), net_g=1_000))  # balance moves on to 30
    again = send(client, world, items)
    assert [(r.status, r.original_status, r.points, r.reason) for r in again] == [
        ("duplicate", "accepted", 20, None),
        ("duplicate", "flagged", 0, "label_reused"),
    ]
    assert [r.balance for r in again] == [30, 30]
    assert [r.id for r in again] == [r.id for r in first]
    assert count(Deposit) == 3 and count(LedgerEntry) == 2


def test_duplicate_with_another_offset_is_the_same_content(client, world):
    item = deposit_item(lab(world), occurred_at=dt.datetime.now(UTC) - dt.timedelta(minutes=1))
    one(client, world, item)
    shanghai = dt.datetime.fromisoformat(item["occurred_at"]).astimezone(
        dt.timezone(dt.timedelta(hours=8))
    )
    again = dict(item, occurred_at=shanghai.isoformat(), id=item["id"].upper())
    assert one(client, world, again).status == "duplicate"


def test_duplicate_ignores_later_revocation(client, world):
    item = deposit_item(lab(world))
    one(client, world, item)
    revoke(lab(world), dt.datetime.now(UTC) - dt.timedelta(hours=1))
    assert one(client, world, item).status == "duplicate"


@pytest.mark.parametrize(
    "change",
    [
        {"net_g": 1_001},
        {"door": 2, "category": "paper"},
        {"occurred_at": "2001-01-01T00:00:00Z"},
    ],
)
def test_conflict_changes_nothing(client, world, change):
    item = deposit_item(lab(world))
    one(client, world, item)
    r = one(client, world, dict(item, **change, label=lab(world, n=1)))
    assert (r.status, r.points, r.balance, r.error.code) == (
        "conflict",
        0,
        None,
        "conflict",
    )
    with db.session() as s:
        assert s.get(Deposit, uuid.UUID(item["id"])).net_g == 1_000
        assert s.get(Label, plabels.parse_label(lab(world, n=1))[0].serial).first_deposit_id is None
    assert count(LedgerEntry) == 1


def test_same_id_twice_in_one_batch(client, world):
    item = deposit_item(lab(world))
    a, b, c = send(client, world, [item, item, dict(item, net_g=5)])
    assert (a.status, b.status, b.original_status, c.status) == (
        "accepted",
        "duplicate",
        "accepted",
        "conflict",
    )


# --------------------------------------------------------------- rejections


def revoke(payload, at):
    serial = plabels.parse_label(payload)[0].serial
    with db.begin() as s:
        s.execute(
            update(Label).where(Label.serial == serial).values(revoked_at=at, revoked_reason="lost")
        )


def forged_label(world) -> str:
    """A well-formed label for a real serial, signed with a key that is not the community's."""
    serial = plabels.parse_label(lab(world, n=2))[0].serial
    return plabels.encode_label(
        plabels.generate_private_key(), plabels.LabelClaims("green", "H001", serial)
    )


def tampered_label(world) -> str:
    """A genuine label with the household changed (signature no longer matches)."""
    return lab(world, n=2).replace(".H001.", ".H002.")


def test_every_rejection_code(client, world):
    now = dt.datetime.now(UTC)
    with db.begin() as s:
        unknown_serial = make_label(s, world.community, world.households["H003"], world.private_key)
        s.execute(
            update(Label)
            .where(Label.serial == plabels.parse_label(unknown_serial)[0].serial)
            .values(household_id=world.households["H002"].id)
        )
        from tests.factories import make_community

        _, other_key, _ = make_community(s, "other")
    never_issued = plabels.encode_label(
        world.private_key, plabels.LabelClaims("green", "H001", "ZZZZZZZZ")
    )
    other = plabels.encode_label(other_key, plabels.LabelClaims("other", "H001", "ABCDEFGH"))
    revoked = lab(world, "H003", 0)
    revoke(revoked, now - dt.timedelta(minutes=10))
    cases = {
        "label_malformed": deposit_item("SP1.green.H001"),
        "label_bad_signature": deposit_item(forged_label(world)),
        "label_wrong_community": deposit_item(other),
        "label_unknown": deposit_item(never_issued),
        "label_revoked": deposit_item(revoked),
        "unknown_door": deposit_item(lab(world), door=9),
        "unknown_category": deposit_item(lab(world), category="wood"),
        "door_category_mismatch": deposit_item(lab(world), door=1, category="paper"),
        "net_g_out_of_range": deposit_item(lab(world), net_g=0),
        "occurred_at_in_future": deposit_item(
            lab(world), occurred_at=now + dt.timedelta(minutes=6)
        ),
        "occurred_at_too_old": deposit_item(lab(world), occurred_at=now - dt.timedelta(days=31)),
    }
    assert set(cases) == set(ingest.CHECK_CODES)
    items = list(cases.values()) + [deposit_item(lab(world, "H002", 3))]
    results = send(client, world, items)  # the last result is the valid item
    for code, result in zip(cases, results, strict=False):
        assert_rejected(result, code)
    assert results[-1].status == "accepted"  # one bad item never fails its batch
    assert count(Deposit) == 1 and count(LedgerEntry) == 1
    # a label whose household does not match the label row is unknown too
    assert_rejected(one(client, world, deposit_item(unknown_serial)), "label_unknown")


def test_tampered_label_earns_nothing(client, world):
    assert_rejected(one(client, world, deposit_item(tampered_label(world))), "label_bad_signature")
    assert count(LedgerEntry) == 0


@pytest.mark.parametrize(
    "net_g, ok", [(-5, False), (0, False), (1, True), (30_000, True), (30_001, False)]
)
def test_net_g_bounds_follow_the_door_capacity(app, client, net_g, ok):
    with db.begin() as s:
        world = build_world(s, capacity_g=30_000, doors={1: "paper"})
    r = one(client, world, deposit_item(lab(world), door=1, category="paper", net_g=net_g))
    if ok:
        assert r.status in ("accepted", "flagged")
    else:
        assert_rejected(r, "net_g_out_of_range")


def test_revocation_applies_from_its_time(client, world):
    now = dt.datetime.now(UTC)
    revoke(lab(world, n=0), now - dt.timedelta(hours=1))
    # a bag that went in before the label was revoked still counts (offline backlog)
    early = one(
        client,
        world,
        deposit_item(lab(world, n=0), occurred_at=now - dt.timedelta(hours=2)),
    )
    late = one(
        client,
        world,
        deposit_item(lab(world, n=0), occurred_at=now - dt.timedelta(minutes=1)),
    )
    assert early.status == "accepted"
    assert_rejected(late, "label_revoked")


def test_backlog_limit_comes_from_config(app, client, world):
    app.config["DEPOSIT_MAX_AGE_S"] = 3600
    old = deposit_item(lab(world), occurred_at=dt.datetime.now(UTC) - dt.timedelta(hours=2))
    assert_rejected(one(client, world, old), "occurred_at_too_old")


# -------------------------------------------------------------- 400 and 413


def raw_post(client, world, body: bytes):
    headers = signed(world.kiosk.id, world.secret, "POST", "/api/v1/deposits", body)
    return client.post("/api/v1/deposits", data=body, headers=headers)


@pytest.mark.parametrize(
    "body, where",
    [
        (b"{not json", "JSON"),
        (b"[]", "object"),
        (b'{"deposits": []}', "deposits"),
        (b'{"items": []}', "deposits"),
        (None, "net_g"),
        (None, "occurred_at"),
        (None, "id"),
    ],
)
def test_malformed_body_is_a_json_400(client, world, body, where):
    if body is None:
        item = deposit_item(lab(world))
        if where == "net_g":
            item["net_g"] = "1000"
        elif where == "occurred_at":
            item["occurred_at"] = "2025-01-01T08:00:00"  # no offset
        else:
            item["id"] = "not-a-uuid"
        body = json.dumps({"deposits": [deposit_item(lab(world, n=1)), item]}).encode()
    response = raw_post(client, world, body)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_request"
    assert where in response.json["error"]["message"]
    assert count(Deposit) == 0


def test_oversized_batch_is_a_json_413(client, world):
    items = [deposit_item(lab(world)) for _ in range(501)]
    response = raw_post(client, world, json.dumps({"deposits": items}).encode())
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"
    assert "500" in response.json["error"]["message"]
    assert count(Deposit) == 0
    assert len(send(client, world, items[:500])) == 500


def test_oversized_body_is_a_json_413(app, client, world):
    app.config["MAX_CONTENT_LENGTH"] = 2_000
    items = [deposit_item(lab(world)) for _ in range(20)]
    response = raw_post(client, world, json.dumps({"deposits": items}).encode())
    assert response.status_code == 413 and response.json["error"]["code"] == "payload_too_large"


def test_other_errors_are_json_too(client):
    assert client.get("/api/v1/nothing").json["error"]["code"] == "not_found"
    response = client.get("/api/v1/deposits")
    assert response.status_code == 405 and response.json["error"]["code"] == "method_not_allowed"


# ------------------------------------------------------------ config, docs


def test_kiosk_config(client, world):
    revoke(lab(world, "H002", 1), dt.datetime.now(UTC))
    headers = signed(world.kiosk.id, world.secret, "GET", "/api/v1/kiosk/config")
    response = client.get("/api/v1/kiosk/config", headers=headers)
    assert response.status_code == 200
    config = msgspec.json.decode(response.data, type=schemas.KioskConfig)
    assert config.community == "green" and config.timezone == "Asia/Shanghai"
    assert [(d.door, d.category, d.capacity_g) for d in config.doors] == [
        (1, "plastic", 30_000),
        (2, "paper", 30_000),
    ]
    assert {c.code for c in config.categories} == set(world.categories)
    assert {(r.category, r.points_per_kg) for r in config.rules} == {
        (c, 10) for c in world.categories
    }
    assert config.revoked_serials == [plabels.parse_label(lab(world, "H002", 1))[0].serial]
    key = plabels.public_key_from_text(config.label_public_key)
    assert plabels.verify_label(lab(world), key).household == "H001"
    assert abs(config.server_time_unix - dt.datetime.now(UTC).timestamp()) < 600
    assert config.limits.max_batch == 500 and config.limits.max_skew_s == 300


def test_health_is_unsigned(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200 and response.json["status"] == "ok"


def test_health_writes_server_time_in_utc_with_z_like_every_answer(client):
    server_time = client.get("/api/v1/health").json["server_time"]
    assert server_time.endswith("Z") and "+00:00" not in server_time
    parsed = dt.datetime.fromisoformat(server_time)
    assert parsed.utcoffset() == dt.timedelta(0)
    assert abs((parsed - dt.datetime.now(UTC)).total_seconds()) < 600


def test_openapi_document_comes_from_the_schemas(client):
    doc = client.get("/api/openapi.json").json
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/api/v1/deposits",
        "/api/v1/kiosk/config",
        "/api/v1/health",
        "/api/v1/me",  # the token API (backend/people/openapi.py, tests/test_people.py)
        "/api/v1/communities/{slug}/households/{code}",
        # the desk (backend/desk/openapi.py, tests/test_desk.py)
        "/api/v1/communities/{slug}/rewards",
        "/api/v1/rewards/{id}",
        "/api/v1/communities/{slug}/redemptions",
        "/api/v1/redemptions/{id}",
        "/api/v1/redemptions/{id}/void",
    }
    item = doc["components"]["schemas"]["DepositItem"]
    assert set(item["required"]) == {
        "id",
        "label",
        "door",
        "category",
        "net_g",
        "occurred_at",
    }
    assert item["properties"]["occurred_at"]["format"] == "date-time"
    deposits = doc["components"]["schemas"]["DepositBatch"]["properties"]["deposits"]
    assert (deposits["minItems"], deposits["maxItems"]) == (1, 500)
    statuses = doc["components"]["schemas"]["DepositResult"]["properties"]["status"]
    assert set(statuses["enum"]) == {
        "accepted",
        "flagged",
        "rejected",
        "duplicate",
        "conflict",
    }
    post = doc["paths"]["/api/v1/deposits"]["post"]
    assert {"200", "400", "401", "413"} <= set(post["responses"])
    assert set(doc["components"]["securitySchemes"]) == {
        "KioskId",
        "Timestamp",
        "Nonce",
        "Signature",
        "BearerToken",
    }


def test_unknown_fields_are_ignored(client, world):
    item = dict(deposit_item(lab(world)), firmware="2.1", tare_g=412)
    result = one(client, world, item)
    assert (result.status, result.points) == ("accepted", 10)


def test_a_batch_that_keeps_losing_races_is_a_json_503(client, world, monkeypatch):
    def always_lose(*args, **kwargs):
        raise ingest._RaceLost("a concurrent batch recorded these ids")

    monkeypatch.setattr(ingest, "apply_batch", always_lose)
    monkeypatch.setattr(ingest.time, "sleep", lambda s: None)
    response = post_deposits(client, world, [deposit_item(lab(world))])
    assert response.status_code == 503
    assert response.json["error"]["code"] == "busy"
    assert count(Deposit) == 0
