"""Request signatures: every way a request can fail authentication gets a JSON 401."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from backend.core.db import db
from backend.core.errors import Unauthorized
from backend.deposits.models import Deposit
from backend.kiosk_api import auth
from backend.kiosk_api.models import RequestNonce
from backend.registry.models import Kiosk
from protocol import labels as plabels
from protocol import signing
from tests.factories import build_world, deposit_item, signed

DOC = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
PATH = "/api/v1/deposits"


@pytest.fixture
def world(app):
    with db.begin() as s:
        return build_world(s)


def body_for(world) -> bytes:
    return json.dumps({"deposits": [deposit_item(world.labels["H001"][0])]}).encode()


def post(client, body, headers, path=PATH):
    return client.post(path, data=body, headers=headers)


def deposits_recorded() -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Deposit))


def assert_401(response, code):
    assert response.status_code == 401
    assert response.is_json
    assert response.json["error"]["code"] == code
    assert response.json["error"]["message"]


def test_a_correctly_signed_request_is_accepted(client, world):
    body = body_for(world)
    r = post(client, body, signed(world.kiosk.id, world.secret, "POST", PATH, body))
    assert r.status_code == 200
    assert r.json["results"][0]["status"] == "accepted"


@pytest.mark.parametrize(
    "missing",
    [
        signing.HEADER_KIOSK,
        signing.HEADER_TIMESTAMP,
        signing.HEADER_NONCE,
        signing.HEADER_SIGNATURE,
    ],
)
def test_missing_header(client, world, missing):
    body = body_for(world)
    headers = signed(world.kiosk.id, world.secret, "POST", PATH, body)
    del headers[missing]
    assert_401(post(client, body, headers), "signature_missing")
    assert deposits_recorded() == 0


def test_unsigned_request(client, world):
    assert_401(
        post(client, body_for(world), {"Content-Type": "application/json"}),
        "signature_missing",
    )
    assert_401(client.get("/api/v1/kiosk/config"), "signature_missing")


def test_wrong_secret(client, world):
    body = body_for(world)
    assert_401(
        post(client, body, signed(world.kiosk.id, world.secret + "x", "POST", PATH, body)),
        "signature_invalid",
    )
    assert deposits_recorded() == 0


def test_unknown_kiosk(client, world):
    body = body_for(world)
    assert_401(
        post(client, body, signed("k_nosuchkiosk", world.secret, "POST", PATH, body)),
        "signature_invalid",
    )


def test_body_tampered(client, world):
    body = body_for(world)
    headers = signed(world.kiosk.id, world.secret, "POST", PATH, body)
    tampered = body.replace(b'"net_g": 1000', b'"net_g": 9000')
    assert tampered != body
    assert_401(post(client, tampered, headers), "signature_invalid")
    assert deposits_recorded() == 0


def test_path_tampered(client, world):
    headers = signed(world.kiosk.id, world.secret, "GET", "/api/v1/kiosk/config?v=1")
    assert_401(client.get("/api/v1/kiosk/config?v=2", headers=headers), "signature_invalid")
    assert client.get("/api/v1/kiosk/config?v=1", headers=headers).status_code == 200


def test_method_tampered(client, world):
    headers = signed(world.kiosk.id, world.secret, "POST", "/api/v1/kiosk/config")
    assert_401(client.get("/api/v1/kiosk/config", headers=headers), "signature_invalid")


@pytest.mark.parametrize(
    # a few seconds inside/outside the 300 s window: the timestamp is truncated
    # to whole seconds and the request takes time, so the edge itself is fuzzy
    "skew_s, ok",
    [(-305, False), (305, False), (-295, True), (295, True)],
)
def test_timestamp_skew(client, world, skew_s, ok):
    body = body_for(world)
    headers = signed(world.kiosk.id, world.secret, "POST", PATH, body, now=time.time() + skew_s)
    response = post(client, body, headers)
    if ok:
        assert response.status_code == 200
    else:
        assert_401(response, "signature_stale")
        assert deposits_recorded() == 0


def test_timestamp_must_be_unix_seconds(client, world):
    body = body_for(world)
    headers = signed(world.kiosk.id, world.secret, "POST", PATH, body)
    headers[signing.HEADER_TIMESTAMP] += ".0"
    assert_401(post(client, body, headers), "signature_invalid")


@pytest.mark.parametrize("nonce", ["short", "x" * 129, "has space in it 123"])
def test_bad_nonce(client, world, nonce):
    body = body_for(world)
    assert_401(
        post(
            client,
            body,
            signed(world.kiosk.id, world.secret, "POST", PATH, body, nonce=nonce),
        ),
        "signature_invalid",
    )


def test_reused_nonce_is_refused_and_changes_nothing(client, world):
    body = body_for(world)
    headers = signed(world.kiosk.id, world.secret, "POST", PATH, body)
    assert post(client, body, headers).status_code == 200
    assert_401(post(client, body, headers), "nonce_reused")
    # same nonce, fresh timestamp and signature: still a replay
    again = signed(
        world.kiosk.id,
        world.secret,
        "POST",
        PATH,
        body,
        now=time.time() + 5,
        nonce=headers[signing.HEADER_NONCE],
    )
    assert_401(post(client, body, again), "nonce_reused")
    assert deposits_recorded() == 1


def test_a_refused_request_does_not_burn_its_nonce(client, world):
    body = body_for(world)
    bad = signed(world.kiosk.id, "wrong", "POST", PATH, body, nonce="n" * 20)
    assert_401(post(client, body, bad), "signature_invalid")
    good = signed(world.kiosk.id, world.secret, "POST", PATH, body, nonce="n" * 20)
    assert post(client, body, good).status_code == 200


def test_disabled_kiosk(client, world):
    with db.begin() as s:
        s.execute(update(Kiosk).where(Kiosk.id == world.kiosk.id).values(enabled=False))
    body = body_for(world)
    assert_401(
        post(client, body, signed(world.kiosk.id, world.secret, "POST", PATH, body)),
        "kiosk_disabled",
    )
    headers = signed(world.kiosk.id, world.secret, "GET", "/api/v1/kiosk/config")
    assert_401(client.get("/api/v1/kiosk/config", headers=headers), "kiosk_disabled")
    assert deposits_recorded() == 0


def test_last_seen_is_recorded(client, world):
    headers = signed(world.kiosk.id, world.secret, "GET", "/api/v1/kiosk/config")
    assert client.get("/api/v1/kiosk/config", headers=headers).status_code == 200
    with db.session() as s:
        seen = s.get(Kiosk, world.kiosk.id).last_seen_at
    assert seen is not None and abs((dt.datetime.now(dt.UTC) - seen).total_seconds()) < 600


def test_old_nonces_are_purged_and_fresh_ones_kept(world):
    now = dt.datetime.now(dt.UTC)
    with db.begin() as s:
        for age_s, nonce in ((3600, "a" * 16), (659, "b" * 16), (5, "c" * 16)):
            s.add(
                RequestNonce(
                    kiosk_id=world.kiosk.id,
                    nonce=nonce,
                    seen_at=now - dt.timedelta(seconds=age_s),
                )
            )
    with db.begin() as s:
        auth.purge_nonces(s, now, 300)
    with db.session() as s:
        assert sorted(s.scalars(select(RequestNonce.nonce))) == ["b" * 16, "c" * 16]


# ------------------------------------------------- the documented example


def _doc_value(label: str) -> str:
    match = re.search(rf"\| {re.escape(label)} \| `([^`]+)` \|", DOC.read_text())
    assert match, f"docs/protocol.md has no row {label!r}"
    return match.group(1)


def test_worked_example_in_protocol_doc_is_right():
    text = DOC.read_text()
    body = re.search(r"body \(one line, exactly these bytes\):\n\n```json\n(.+)\n```", text).group(
        1
    )
    args = [_doc_value(k) for k in ("secret", "method", "path", "timestamp", "nonce")]
    expected = _doc_value("`X-Signature`")
    assert signing.sign(*args, body.encode()) == expected
    assert _doc_value("SHA-256 of body") == __import__("hashlib").sha256(body.encode()).hexdigest()
    get_sig = re.search(r"empty body\) has the signature\n`([0-9a-f]{64})`", text).group(1)
    assert (
        signing.sign(
            args[0],
            "GET",
            "/api/v1/kiosk/config",
            args[3],
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            b"",
        )
        == get_sig
    )


def test_label_example_in_protocol_doc_verifies():
    key = plabels.public_key_from_text(_doc_value("public key"))
    claims = plabels.verify_label(_doc_value("label"), key)
    assert (claims.community, claims.household, claims.serial) == (
        "demo",
        "A-101",
        "7K3Q9XW2MD",
    )


@pytest.mark.parametrize("offset_s, ok", [(300, True), (301, False), (-300, True), (-301, False)])
def test_skew_boundary_is_exactly_300_seconds(world, offset_s, ok):
    """The window is inclusive: 300 s either way passes, 301 s does not."""
    sent_at = 1_750_000_000
    headers = signed(world.kiosk.id, world.secret, "GET", "/api/v1/kiosk/config", now=sent_at)
    now = dt.datetime.fromtimestamp(sent_at + offset_s, dt.UTC)

    def check():
        with db.begin() as s:
            return auth.authenticate(
                s,
                headers=headers,
                method="GET",
                target="/api/v1/kiosk/config",
                body=b"",
                now=now,
                max_skew_s=300,
            )

    if ok:
        assert check().ref.kiosk_id == world.kiosk.id
    else:
        with pytest.raises(Unauthorized) as refused:
            check()
        assert refused.value.code == "signature_stale"
