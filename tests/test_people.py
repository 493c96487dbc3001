"""People and access: users and scopes, tokens, the token API, every role against every endpoint,
login sessions, the shared login limit and the ``sortpoint user`` commands."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from backend import create_app
from backend.core.db import db
from backend.people import credentials
from backend.people.models import LoginFailure
from tests.people_world import USERS, make_world


@pytest.fixture
def world(web_app):
    return make_world(web_app)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def log_in(client, username: str, password: str, **extra):
    token = csrf_token(client.get("/account/login").text)
    return client.post(
        "/account/login",
        data={"username": username, "password": password, "csrf_token": token},
        **extra,
    )


# ------------------------------------------------------- every role, every endpoint

#: who may read each household: (community, code) -> users
MAY_SEE = {
    ("oak", "H1"): {"admin", "mgr-oak", "staff-oak", "staff-b1", "res-h1"},
    ("oak", "H2"): {"admin", "mgr-oak", "staff-oak", "res-h2"},
    ("elm", "H1"): {"admin", "mgr-elm", "staff-elm"},
}


def test_each_role_against_the_household_read(web_app, world):
    for username in sorted(USERS):
        for place in sorted(MAY_SEE):
            _check_household_read(web_app, world, username, place)


def _check_household_read(web_app, world, username, place):
    client = web_app.test_client()
    slug, code = place
    with web_app.app_context(), db.read() as s:
        failures_before = s.scalar(select(func.count()).select_from(LoginFailure))
    response = client.get(
        f"/api/v1/communities/{slug}/households/{code}", headers=bearer(world.tokens[username])
    )
    if username in MAY_SEE[place]:
        assert response.status_code == 200, (username, place, response.json)
        body = response.json
        assert {"code", "building", "balance", "entries"} <= set(body)
        assert body["code"] == code
        assert body["building"] == {"H1": "B1", "H2": "B2"}[code]
        expected_balance = 25 if place == ("oak", "H1") else 0
        assert body["balance"] == expected_balance
        assert len(body["entries"]) == (1 if expected_balance else 0)
    else:
        assert response.status_code == 403, (username, place, response.json)
        assert response.json["error"]["code"] == "forbidden"
        assert response.mimetype == "application/json"
    with web_app.app_context(), db.read() as s:
        assert s.scalar(select(func.count()).select_from(LoginFailure)) == failures_before


@pytest.mark.parametrize("username", sorted(USERS))
def test_each_role_against_api_me(web_app, world, username):
    client = web_app.test_client()
    response = client.get("/api/v1/me", headers=bearer(world.tokens[username]))
    assert response.status_code == 200
    body = response.json
    role, communities, buildings, households = USERS[username]
    assert body["username"] == username and body["role"] == role
    assert body["scopes"] == {
        "communities": list(communities),
        "buildings": list(buildings),
        "households": list(households),
    }
    if role == "resident":
        slug, code = households[0].split("/")
        assert body["household"] == {
            "community": slug,
            "code": code,
            "building": {"H1": "B1", "H2": "B2"}[code],
            "unit": "",
            "balance": 25 if code == "H1" else 0,
        }
    else:
        assert body["household"] is None


@pytest.mark.parametrize("username", sorted(USERS))
def test_each_role_against_the_pages(web_app, world, username):
    client = web_app.test_client()
    assert client.get("/account/me").status_code == 302  # to the login page
    page = client.get("/account/login")
    assert page.status_code == 200 and 'name="password"' in page.text
    response = log_in(client, username, world.passwords[username])
    assert response.status_code == 302 and response.headers["Location"].endswith("/account/me")
    me = client.get("/account/me")
    assert me.status_code == 200
    assert f'<dd id="username">{username}</dd>' in me.text
    if USERS[username][0] == "resident":
        assert '<dd id="balance">' in me.text
    # the page session is not an API credential: the token API wants a bearer token
    assert client.get("/api/v1/me").status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer spt_aaaaaaaaaa_nope"},
        {"Authorization": "Bearer not-a-token"},
    ],
)
def test_without_a_valid_token_401_json(web_app, world, headers):
    client = web_app.test_client()
    for path in ("/api/v1/me", "/api/v1/communities/oak/households/H1"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.json["error"]["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_token_with_a_right_prefix_and_a_wrong_secret_is_refused(web_app, world):
    real = world.tokens["admin"]
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    response = web_app.test_client().get("/api/v1/me", headers=bearer(forged))
    assert response.status_code == 401


def test_unknown_places_403_for_the_scoped_and_404_for_those_who_see_them(web_app, world):
    client = web_app.test_client()

    def status(user, path):
        return client.get(path, headers=bearer(world.tokens[user])).status_code

    assert status("admin", "/api/v1/communities/nowhere/households/H1") == 404
    assert status("mgr-oak", "/api/v1/communities/nowhere/households/H1") == 403
    assert status("mgr-oak", "/api/v1/communities/oak/households/H9") == 404
    assert status("res-h1", "/api/v1/communities/oak/households/H9") == 403
    assert status("staff-b1", "/api/v1/communities/oak/households/H9") == 403


# ------------------------------------------------------------- tokens, users


def test_tokens_are_stored_hashed_and_revocable(web_app, world, runner_for):
    token = world.tokens["mgr-oak"]
    prefix = credentials.token_prefix(token)
    with web_app.app_context(), db.read() as s:
        from backend.people.models import ApiToken

        row = s.scalar(select(ApiToken).where(ApiToken.prefix == prefix))
        assert row.token_sha256 == credentials.token_sha256(token)
        assert token not in (row.token_sha256, row.prefix)
    client = web_app.test_client()
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    result = runner_for(web_app).invoke(args=["user", "revoke-token", prefix, "--json"])
    assert result.exit_code == 0 and json.loads(result.output) == {
        "prefix": prefix,
        "changed": True,
    }
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401 and "revoked" in response.json["error"]["message"]
    again = runner_for(web_app).invoke(args=["user", "revoke-token", prefix, "--json"])
    assert json.loads(again.output)["changed"] is False
    # the user's other tokens still work
    other = runner_for(web_app).invoke(args=["user", "token", "mgr-oak", "--json"])
    assert (
        client.get("/api/v1/me", headers=bearer(json.loads(other.output)["token"])).json["username"]
        == "mgr-oak"
    )


@pytest.fixture
def runner_for():
    return lambda app: app.test_cli_runner()


def test_disabling_a_user_stops_their_tokens_logins_and_sessions(web_app, world, runner_for):
    client = web_app.test_client()
    assert log_in(client, "mgr-oak", world.passwords["mgr-oak"]).status_code == 302
    assert client.get("/account/me").status_code == 200
    result = runner_for(web_app).invoke(args=["user", "disable", "mgr-oak"])
    assert result.exit_code == 0, result.output
    assert client.get("/account/me").status_code == 302  # the session ended
    assert client.get("/api/v1/me", headers=bearer(world.tokens["mgr-oak"])).status_code == 401
    assert log_in(web_app.test_client(), "mgr-oak", world.passwords["mgr-oak"]).status_code == 401
    listed = json.loads(runner_for(web_app).invoke(args=["user", "list", "--json"]).output)
    assert {u["username"]: u["disabled"] for u in listed}["mgr-oak"] is True


def test_reset_password_ends_sessions_and_only_the_new_one_works(web_app, world, runner_for):
    client = web_app.test_client()
    assert log_in(client, "res-h1", world.passwords["res-h1"]).status_code == 302
    result = runner_for(web_app).invoke(args=["user", "reset-password", "res-h1", "--json"])
    new = json.loads(result.output)
    assert set(new) == {"username", "password"} and new["password"] != world.passwords["res-h1"]
    assert client.get("/account/me").status_code == 302
    fresh = web_app.test_client()
    assert log_in(fresh, "res-h1", world.passwords["res-h1"]).status_code == 401
    assert log_in(fresh, "res-h1", new["password"]).status_code == 302


def test_user_create_prints_the_password_once_and_checks_scopes(web_app, world, runner_for):
    runner = runner_for(web_app)
    result = runner.invoke(
        args=["user", "create", "desk2", "--role", "manager", "--community", "oak", "--json"]
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert set(created) == {"username", "password"} and len(created["password"]) == 16
    assert log_in(web_app.test_client(), "desk2", created["password"]).status_code == 302
    listed = runner.invoke(args=["user", "list"]).output
    assert "desk2\tmanager\toak\tactive" in listed
    assert created["password"] not in listed
    for args, message in [
        (["desk2", "--role", "manager", "--community", "oak"], "exists already"),
        (["m3", "--role", "manager"], "at least one --community"),
        (
            ["m3", "--role", "manager", "--household", "oak/H1", "--community", "oak"],
            "no --household",
        ),
        (["r3", "--role", "resident"], "exactly one --household"),
        (
            ["r3", "--role", "resident", "--household", "oak/H1", "--household", "oak/H2"],
            "exactly one",
        ),
        (["r3", "--role", "resident", "--household", "oak/H9"], "no household"),
        (["s3", "--role", "staff", "--building", "oak-B1"], "COMMUNITY/CODE"),
        (["a3", "--role", "admin", "--community", "oak"], "no --community"),
        (["Bad Name", "--role", "admin"], "invalid user name"),
    ]:
        result = runner.invoke(args=["user", "create", *args])
        assert result.exit_code == 1, (args, result.output)
        assert message in result.output, (args, result.output)
    result = runner.invoke(args=["user", "create", "x1", "--role", "owner"])
    assert result.exit_code == 2


# ------------------------------------------------------------ login sessions


def test_a_failed_login_is_counted_and_a_good_one_clears_the_count(web_app, world):
    client = web_app.test_client()
    response = log_in(client, "mgr-oak", "wrong")
    assert response.status_code == 401 and 'id="login-error"' in response.text
    with web_app.app_context(), db.read() as s:
        assert s.scalar(select(func.count()).select_from(LoginFailure)) == 1
    assert log_in(client, "mgr-oak", world.passwords["mgr-oak"]).status_code == 302
    with web_app.app_context(), db.read() as s:
        assert s.scalar(select(func.count()).select_from(LoginFailure)) == 0


def test_the_login_limit_holds_across_app_processes(web_app, world, database_url):
    """Two apps on one database (two workers, or two servers) share the count of failures."""
    other = create_app({"DATABASE_URL": database_url, "TESTING": True, "COOKIE_SECURE": False})
    one, two = web_app.test_client(), other.test_client()
    for client in (one, two, one, two, one):  # five failures, split between the two
        assert log_in(client, "mgr-oak", "wrong").status_code == 401
    for client in (one, two):  # now even the right password is refused, on both
        response = log_in(client, "mgr-oak", world.passwords["mgr-oak"])
        assert response.status_code == 429
        assert "Too many failed logins" in response.text
    # another user is not locked out by them
    assert log_in(two, "mgr-elm", world.passwords["mgr-elm"]).status_code == 302


def test_the_login_limit_per_address(web_app, world):
    web_app.config["LOGIN_MAX_FAILURES_PER_ADDRESS"] = 3
    client = web_app.test_client()
    for name in ("nobody1", "nobody2", "nobody3"):
        assert log_in(client, name, "guess").status_code == 401
    assert log_in(client, "admin", world.passwords["admin"]).status_code == 429
    elsewhere = web_app.test_client()
    ok = log_in(
        elsewhere, "admin", world.passwords["admin"], environ_base={"REMOTE_ADDR": "10.0.0.9"}
    )
    assert ok.status_code == 302


def test_passwords_are_argon2_and_rehashed_when_the_parameters_change(web_app, world):
    from argon2 import PasswordHasher

    from backend.people.models import User

    with web_app.app_context(), db.read() as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "admin"))
    assert stored.startswith("$argon2id$")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("secret-pass")
    ok, new_hash = credentials.check_password(weak, "secret-pass")
    assert ok and new_hash is not None and not credentials.HASHER.check_needs_rehash(new_hash)
    assert credentials.check_password(stored, "wrong") == (False, None)
    assert credentials.check_password(None, "anything") == (False, None)


def test_a_next_parameter_never_leaves_the_site(web_app, world):
    client = web_app.test_client()
    token = csrf_token(client.get("/account/login").text)
    response = client.post(
        "/account/login?next=//evil.example/x",
        data={"username": "admin", "password": world.passwords["admin"], "csrf_token": token},
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/account/me")


def test_the_openapi_document_describes_the_token_api(web_app, world):
    client = web_app.test_client()
    doc = client.get("/api/openapi.json").json
    me = doc["paths"]["/api/v1/me"]["get"]
    assert me["security"] == [{"BearerToken": []}]
    assert {"200", "401"} <= set(me["responses"])
    household = doc["paths"]["/api/v1/communities/{slug}/households/{code}"]["get"]
    assert {"200", "401", "403", "404"} <= set(household["responses"])
    schemas = doc["components"]["schemas"]
    # what the endpoints answer has every field the document requires, and no other
    answers = {
        "Me": client.get("/api/v1/me", headers=bearer(world.tokens["res-h1"])).json,
        "HouseholdView": client.get(
            "/api/v1/communities/oak/households/H1", headers=bearer(world.tokens["admin"])
        ).json,
    }
    answers["OwnHousehold"] = answers["Me"]["household"]
    answers["Scopes"] = answers["Me"]["scopes"]
    answers["LedgerEntry"] = answers["HouseholdView"]["entries"][0]
    for name, answer in answers.items():
        schema = schemas[name]
        assert set(schema["required"]) <= set(answer) <= set(schema["properties"]), name
    assert doc["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
