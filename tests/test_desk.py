"""The desk: the reward catalog and its history, redemptions under an idempotency key,
voids, receipts, every role against every endpoint, and ``sortpoint reward``."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from backend import create_app
from backend.core.db import db
from backend.desk.models import RewardChange
from backend.ledger import services as ledger
from backend.ledger.models import LedgerEntry
from tests.desk_world import add_reward, give_points, snapshot
from tests.people_world import USERS, make_world


@pytest.fixture
def world(web_app):
    world = make_world(web_app)  # oak/H1 has 25 points
    give_points("H1", "oak", 975, "test:h1")  # 1000
    give_points("H2", "oak", 300, "test:h2")
    give_points("H1", "elm", 500, "test:elm-h1")
    world.rewards = {
        "soap": add_reward("oak", "Soap", 100, stock=5),
        "bags": add_reward("oak", "Bin bags", 50),  # unlimited
        "cash": add_reward("oak", "Cash 10 CNY", 1000, kind="cash", fen_per_point=1),
        "elm-soap": add_reward("elm", "Soap", 100, stock=3),
    }
    return world


def bearer(world, username: str) -> dict:
    return {"Authorization": f"Bearer {world.tokens[username]}"}


def redeem(client, world, username="mgr-oak", key="k1", household="H1", items=None, slug="oak"):
    items = items if items is not None else [{"reward": world.rewards["soap"], "quantity": 2}]
    headers = bearer(world, username) | ({"Idempotency-Key": key} if key is not None else {})
    return client.post(
        f"/api/v1/communities/{slug}/redemptions",
        json={"household": household, "items": items},
        headers=headers,
    )


def void(client, world, redemption_id, username="mgr-oak", reason="wrong item"):
    return client.post(
        f"/api/v1/redemptions/{redemption_id}/void",
        json={"reason": reason},
        headers=bearer(world, username),
    )


def entries_of(source_type: str) -> list[LedgerEntry]:
    with db.session() as s:
        return list(s.scalars(select(LedgerEntry).where(LedgerEntry.source_type == source_type)))


# ------------------------------------------------------------------- redeem


def test_a_redemption_debits_decrements_numbers_and_records_in_one_go(web_app, world):
    client = web_app.test_client()
    items = [
        {"reward": world.rewards["soap"], "quantity": 2},
        {"reward": world.rewards["bags"], "quantity": 3},
    ]
    first = redeem(client, world, items=items)
    assert first.status_code == 201, first.json
    assert first.json == {"id": first.json["id"], "receipt": 1, "points": 350, "balance": 650}
    second = redeem(client, world, key="k2", household="H2")
    assert second.status_code == 201 and second.json["receipt"] == 2
    assert second.json["points"] == 200 and second.json["balance"] == 100
    # elm numbers its own receipts
    third = redeem(
        client,
        world,
        username="mgr-elm",
        key="k1",
        slug="elm",
        items=[{"reward": world.rewards["elm-soap"], "quantity": 1}],
    )
    assert third.status_code == 201 and third.json["receipt"] == 1
    state = snapshot()
    assert state["stock"][world.rewards["soap"]] == 1
    assert state["stock"][world.rewards["bags"]] is None
    debits = entries_of("redemption")
    assert sorted(e.amount for e in debits) == [-350, -200, -100]
    assert all(e.kind == "redemption" for e in debits)
    with db.session() as s:
        assert ledger.verify(s) == []
    receipt = client.get(
        f"/api/v1/redemptions/{first.json['id']}", headers=bearer(world, "mgr-oak")
    )
    assert receipt.status_code == 200
    body = receipt.json
    assert (body["receipt"], body["household"], body["building"]) == (1, "H1", "B1")
    assert (body["points"], body["balance_after"], body["manager"]) == (350, 650, "mgr-oak")
    assert body["voided"] is None
    assert [(i["name"], i["quantity"], i["points"]) for i in body["items"]] == [
        ("Soap", 2, 200),
        ("Bin bags", 3, 150),
    ]
    assert body["entry_id"] in {e.id for e in debits}


def test_the_same_key_again_gives_the_same_answer_and_changes_nothing(web_app, world):
    client = web_app.test_client()
    first = redeem(client, world)
    before = snapshot()
    # the same items listed in another order are the same body
    again = redeem(client, world)
    assert again.status_code == 201 and again.json == first.json
    assert snapshot() == before
    # another manager of the community (here an admin) replaying the key gets the same answer
    assert redeem(client, world, username="admin").json == first.json
    assert snapshot() == before


@pytest.mark.parametrize(
    "change",
    [
        {"household": "H2"},
        {"items": "more"},
        {"items": "other"},
    ],
)
def test_the_same_key_with_another_body_is_a_conflict(web_app, world, change):
    client = web_app.test_client()
    assert redeem(client, world).status_code == 201
    before = snapshot()
    kwargs = {}
    if "household" in change:
        kwargs["household"] = change["household"]
    elif change["items"] == "more":
        kwargs["items"] = [{"reward": world.rewards["soap"], "quantity": 3}]
    else:
        kwargs["items"] = [{"reward": world.rewards["bags"], "quantity": 2}]
    response = redeem(client, world, **kwargs)
    assert response.status_code == 409
    assert response.json["error"]["code"] == "idempotency_conflict"
    assert snapshot() == before


def test_refusals_change_nothing(web_app, world):
    client = web_app.test_client()
    soap, cash = world.rewards["soap"], world.rewards["cash"]
    before = snapshot()
    cases = [
        (dict(household="H2", items=[{"reward": cash, "quantity": 1}]), 409, "insufficient_points"),
        (dict(items=[{"reward": soap, "quantity": 6}]), 409, "out_of_stock"),
        (dict(items=[{"reward": world.rewards["elm-soap"], "quantity": 1}]), 404, "not_found"),
        (dict(household="NOPE"), 404, "not_found"),
        (dict(items=[]), 400, "invalid"),
        (dict(items=[{"reward": soap, "quantity": 0}]), 400, "invalid"),
        (dict(items=[{"reward": soap, "quantity": True}]), 400, "invalid"),
        (
            dict(items=[{"reward": soap, "quantity": 1}, {"reward": soap, "quantity": 1}]),
            400,
            "invalid",
        ),
        (dict(key=None), 400, "invalid"),
        (dict(key="x" * 101), 400, "invalid"),
    ]
    for i, (kwargs, status, code) in enumerate(cases):
        kwargs.setdefault("key", f"refused-{i}")
        response = redeem(client, world, **kwargs)
        assert (response.status_code, response.json["error"]["code"]) == (status, code), kwargs
        assert snapshot() == before, kwargs
    # a key refused once is still free: the refusal recorded nothing under it
    ok = redeem(client, world, key="refused-1", items=[{"reward": soap, "quantity": 5}])
    assert ok.status_code == 201 and ok.json["receipt"] == 1


def test_a_reward_outside_its_window_is_refused(web_app, world):
    client = web_app.test_client()
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    later = add_reward("oak", "Mooncake", 10, starts_at=soon)
    before = snapshot()
    response = redeem(client, world, items=[{"reward": later, "quantity": 1}])
    assert response.status_code == 409
    assert response.json["error"]["code"] == "reward_unavailable"
    assert snapshot() == before


def test_a_balance_exactly_spent_reaches_zero_and_one_more_point_is_refused(web_app, world):
    client = web_app.test_client()
    one = add_reward("oak", "Exactly", 1000)
    ok = redeem(client, world, items=[{"reward": one, "quantity": 1}])
    assert ok.status_code == 201 and ok.json["balance"] == 0
    refused = redeem(
        client, world, key="k2", items=[{"reward": world.rewards["bags"], "quantity": 1}]
    )
    assert refused.json["error"]["code"] == "insufficient_points"


# --------------------------------------------------------------------- void


def test_a_void_reverses_the_points_restores_the_stock_and_is_kept(web_app, world):
    client = web_app.test_client()
    items = [
        {"reward": world.rewards["soap"], "quantity": 2},
        {"reward": world.rewards["bags"], "quantity": 1},
    ]
    done = redeem(client, world, items=items).json
    response = void(client, world, done["id"])
    assert response.status_code == 200
    assert response.json == {"id": done["id"], "balance": 1000}
    state = snapshot()
    assert state["stock"][world.rewards["soap"]] == 5
    assert state["stock"][world.rewards["bags"]] is None
    [reversal] = entries_of("redemption_void")
    assert reversal.kind == "reversal" and reversal.amount == 250
    assert reversal.reverses_entry_id == entries_of("redemption")[0].id
    receipt = client.get(f"/api/v1/redemptions/{done['id']}", headers=bearer(world, "res-h1")).json
    assert receipt["voided"]["by"] == "mgr-oak"
    assert receipt["voided"]["reason"] == "wrong item"
    assert receipt["voided"]["balance_after"] == 1000
    # a second void changes nothing
    before = snapshot()
    again = void(client, world, done["id"], username="admin")
    assert again.status_code == 409 and again.json["error"]["code"] == "already_voided"
    assert snapshot() == before
    # the key of a voided redemption still answers as the first time
    assert redeem(client, world, items=items).json == done
    with db.session() as s:
        assert ledger.verify(s) == []


def test_a_void_past_the_window_is_refused(web_app, world):
    client = web_app.test_client()
    done = redeem(client, world).json
    web_app.config["VOID_WINDOW_S"] = 0
    before = snapshot()
    response = void(client, world, done["id"])
    assert response.status_code == 409
    assert response.json["error"]["code"] == "void_window_passed"
    assert snapshot() == before


def test_void_refuses_a_missing_reason_and_an_unknown_redemption(web_app, world):
    client = web_app.test_client()
    done = redeem(client, world).json
    before = snapshot()
    for reason in ("", "   ", None, "x" * 161):
        response = void(client, world, done["id"], reason=reason)
        assert response.status_code == 400, reason
    assert void(client, world, 9999).status_code == 404
    assert snapshot() == before


def test_the_void_window_comes_from_the_environment(database_url, monkeypatch):
    monkeypatch.setenv("SORTPOINT_VOID_WINDOW_S", "600")
    app = create_app({"DATABASE_URL": database_url, "TESTING": True})
    assert app.config["VOID_WINDOW_S"] == 600
    monkeypatch.delenv("SORTPOINT_VOID_WINDOW_S")
    assert create_app({"DATABASE_URL": database_url}).config["VOID_WINDOW_S"] == 24 * 3600
    db.engine.dispose()


def test_redemptions_and_voids_are_append_only(web_app, world):
    client = web_app.test_client()
    done = redeem(client, world).json
    void(client, world, done["id"])
    for statement in (
        "UPDATE redemptions SET points = 1",
        "DELETE FROM redemption_items",
        "DELETE FROM redemption_voids",
        "UPDATE reward_changes SET changed_by = 'someone'",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.begin() as s:
            s.execute(text(statement))


# ------------------------------------------------------------------ catalog


def test_the_catalog_shows_stock_left_and_cash_value(web_app, world):
    client = web_app.test_client()
    redeem(client, world)
    body = client.get("/api/v1/communities/oak/rewards", headers=bearer(world, "res-h1")).json
    assert body["community"] == "oak"
    by_name = {r["name"]: r for r in body["rewards"]}
    assert set(by_name) == {"Soap", "Bin bags", "Cash 10 CNY"}
    assert by_name["Soap"]["stock"] == 3 and by_name["Soap"]["available"] is True
    assert by_name["Bin bags"]["stock"] is None
    assert by_name["Cash 10 CNY"]["cash_fen"] == 1000
    assert by_name["Cash 10 CNY"]["fen_per_point"] == 1


def test_managers_edit_the_catalog_and_every_change_is_kept(web_app, world):
    client = web_app.test_client()
    soap = world.rewards["soap"]
    response = client.patch(
        f"/api/v1/rewards/{soap}",
        json={"points": 120, "stock": 9},
        headers=bearer(world, "mgr-oak"),
    )
    assert response.status_code == 200
    assert (response.json["points"], response.json["stock"], response.json["changed"]) == (
        120,
        9,
        True,
    )
    same = client.patch(
        f"/api/v1/rewards/{soap}", json={"points": 120}, headers=bearer(world, "admin")
    )
    assert same.json["changed"] is False
    added = client.post(
        "/api/v1/communities/oak/rewards",
        json={
            "name": "Phone top-up 20",
            "kind": "topup",
            "points": 2000,
            "ends_at": "2099-01-01T00:00:00+08:00",
        },
        headers=bearer(world, "admin"),
    )
    assert added.status_code == 201 and added.json["kind"] == "topup"
    with db.session() as s:
        changes = s.scalars(
            select(RewardChange).where(RewardChange.reward_id == soap).order_by(RewardChange.id)
        ).all()
    assert [(c.action, c.changed_by) for c in changes] == [("add", "cli"), ("edit", "mgr-oak")]
    assert json.loads(changes[1].before) == {"points": 100, "stock": 5}
    assert json.loads(changes[1].after) == {"points": 120, "stock": 9}
    bad = [
        ({"points": 0}, 400),
        ({"kind": "cash"}, 400),
        ({"fen_per_point": 2}, 400),
        ({"stock": -1}, 400),
        ({"starts_at": "tomorrow"}, 400),
        ({"starts_at": "2030-01-02T00:00:00+00:00", "ends_at": "2030-01-01T00:00:00+00:00"}, 400),
    ]
    before = snapshot()
    for change, status in bad:
        r = client.patch(f"/api/v1/rewards/{soap}", json=change, headers=bearer(world, "mgr-oak"))
        assert r.status_code == status, (change, r.json)
    assert (
        client.patch(
            "/api/v1/rewards/999", json={"points": 1}, headers=bearer(world, "admin")
        ).status_code
        == 404
    )
    assert snapshot() == before


# ------------------------------------------------------ every role, every endpoint

MANAGE_OAK = {"admin", "mgr-oak"}
SEE_OAK_CATALOG = {"admin", "mgr-oak", "staff-oak", "staff-b1", "res-h1", "res-h2"}
SEE_ELM_CATALOG = {"admin", "mgr-elm", "staff-elm"}
#: who may read the receipt of a redemption for oak/H1
SEE_OAK_H1 = {"admin", "mgr-oak", "staff-oak", "staff-b1", "res-h1"}


def _refused(response, status=403):
    assert response.status_code == status, response.json
    assert response.mimetype == "application/json"
    return response.json["error"]["code"]


def test_each_role_against_each_desk_endpoint(web_app, world):
    client = web_app.test_client()
    done = redeem(client, world, key="setup").json
    soap = world.rewards["soap"]
    for username in sorted(USERS):
        headers = bearer(world, username)
        for slug, allowed in (("oak", SEE_OAK_CATALOG), ("elm", SEE_ELM_CATALOG)):
            r = client.get(f"/api/v1/communities/{slug}/rewards", headers=headers)
            if username in allowed:
                assert r.status_code == 200, (username, slug)
            else:
                assert _refused(r) == "forbidden", (username, slug)
        r = client.get(f"/api/v1/redemptions/{done['id']}", headers=headers)
        if username in SEE_OAK_H1:
            assert r.status_code == 200, username
        else:
            assert _refused(r) == "forbidden", username
        before = snapshot()
        writes = {
            "redeem": lambda u=username, h=headers: redeem(
                client,
                world,
                username=u,
                key=f"by-{u}",
                items=[{"reward": soap, "quantity": 1}],
            ),
            "void": lambda u=username, h=headers: void(client, world, done["id"], username=u),
            "edit": lambda u=username, h=headers: client.patch(
                f"/api/v1/rewards/{soap}", json={"name": f"Soap {u}"}, headers=h
            ),
            "add": lambda u=username, h=headers: client.post(
                "/api/v1/communities/oak/rewards",
                json={"name": "x", "kind": "goods", "points": 1},
                headers=h,
            ),
        }
        if username not in MANAGE_OAK:
            for name, call in writes.items():
                assert _refused(call()) == "forbidden", (username, name)
                assert snapshot() == before, (username, name)
    # a manager of oak may not redeem for an elm household, nor void an elm redemption
    elm = redeem(
        client,
        world,
        username="mgr-elm",
        key="elm",
        slug="elm",
        items=[{"reward": world.rewards["elm-soap"], "quantity": 1}],
    ).json
    before = snapshot()
    assert (
        _refused(
            redeem(
                client,
                world,
                key="x",
                slug="elm",
                items=[{"reward": world.rewards["elm-soap"], "quantity": 1}],
            )
        )
        == "forbidden"
    )
    assert _refused(void(client, world, elm["id"])) == "forbidden"
    assert (
        _refused(
            client.get("/api/v1/communities/nowhere/rewards", headers=bearer(world, "mgr-oak"))
        )
        == "forbidden"
    )
    assert (
        _refused(
            client.get("/api/v1/communities/nowhere/rewards", headers=bearer(world, "admin")), 404
        )
        == "not_found"
    )
    assert snapshot() == before
    # and what managers may do, they can
    for username in sorted(MANAGE_OAK):
        response = redeem(
            client,
            world,
            username=username,
            key=f"ok-{username}",
            items=[{"reward": soap, "quantity": 1}],
        )
        assert response.status_code == 201, response.json
    assert void(client, world, done["id"], username="admin").status_code == 200


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/v1/communities/oak/rewards"),
        ("post", "/api/v1/communities/oak/rewards"),
        ("patch", "/api/v1/rewards/1"),
        ("post", "/api/v1/communities/oak/redemptions"),
        ("post", "/api/v1/redemptions/1/void"),
        ("get", "/api/v1/redemptions/1"),
    ],
)
def test_every_desk_endpoint_needs_a_token(web_app, world, method, path):
    client = web_app.test_client()
    before = snapshot()
    for headers in ({}, {"Authorization": "Bearer spt_nothing_here"}):
        response = getattr(client, method)(
            path, json={}, headers=headers | {"Idempotency-Key": "a"}
        )
        assert _refused(response, 401) == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert snapshot() == before


def test_the_openapi_document_has_the_desk(web_app):
    document = web_app.test_client().get("/api/openapi.json").json
    for path in (
        "/api/v1/communities/{slug}/rewards",
        "/api/v1/rewards/{id}",
        "/api/v1/communities/{slug}/redemptions",
        "/api/v1/redemptions/{id}",
        "/api/v1/redemptions/{id}/void",
    ):
        assert path in document["paths"], path
    for name in ("Reward", "Catalog", "RedemptionRequest", "RedemptionDone", "Receipt"):
        assert name in document["components"]["schemas"]
    redeem_op = document["paths"]["/api/v1/communities/{slug}/redemptions"]["post"]
    assert {"201", "401", "403", "409"} <= set(redeem_op["responses"])


# ---------------------------------------------------------------------- CLI


def test_reward_commands(web_app, world):
    runner = web_app.test_cli_runner()
    out = runner.invoke(
        args=[
            "reward",
            "add",
            "oak",
            "--name",
            "Rice 1 kg",
            "--kind",
            "goods",
            "--points",
            "300",
            "--stock",
            "20",
            "--json",
        ]
    )
    assert out.exit_code == 0, out.output
    reward_id = json.loads(out.output)["id"]
    assert set(json.loads(out.output)) == {"id"}
    listed = runner.invoke(args=["reward", "list", "oak", "--json"])
    assert reward_id in [r["id"] for r in json.loads(listed.output)["rewards"]]
    text_list = runner.invoke(args=["reward", "list", "oak"]).output
    assert f"{reward_id}\tRice 1 kg\tgoods\t300 points\tstock 20\tavailable" in text_list
    assert runner.invoke(args=["reward", "set-stock", str(reward_id), "12"]).exit_code == 0
    assert runner.invoke(args=["reward", "edit", str(reward_id), "--points", "280"]).exit_code == 0
    history = json.loads(runner.invoke(args=["reward", "history", str(reward_id), "--json"]).output)
    assert [(h["action"], h["changed_by"]) for h in history] == [
        ("add", "cli"),
        ("set_stock", "cli"),
        ("edit", "cli"),
    ]
    assert (history[1]["before"], history[1]["after"]) == ({"stock": 20}, {"stock": 12})
    cash = runner.invoke(
        args=[
            "reward",
            "add",
            "oak",
            "--name",
            "Cash",
            "--kind",
            "cash",
            "--points",
            "1000",
            "--json",
        ]
    )
    cash_id = json.loads(cash.output)["id"]
    assert any(
        r["cash_fen"] == 1000
        for r in json.loads(runner.invoke(args=["reward", "list", "oak", "--json"]).output)[
            "rewards"
        ]
        if r["id"] == cash_id
    )
    bad = runner.invoke(
        args=[
            "reward",
            "add",
            "oak",
            "--name",
            "x",
            "--kind",
            "goods",
            "--points",
            "1",
            "--fen-per-point",
            "2",
        ]
    )
    assert bad.exit_code == 1 and "only a cash reward" in bad.output
    assert (
        runner.invoke(
            args=["reward", "add", "nowhere", "--name", "x", "--kind", "goods", "--points", "1"]
        ).exit_code
        == 1
    )
    assert runner.invoke(args=["reward", "set-stock", "999", "1"]).exit_code == 1
