"""What a hostile client found in the kiosk API, each answered as docs/protocol.md says.

Every probe here once answered 500, or was accepted although the protocol
does not promise it: an ``occurred_at`` whose UTC is outside years 1..9999,
deep nesting in an ignored field, a database failure logging the kiosk's
secret, a body that is not ``application/json`` or not UTF-8, a label with
whitespace around it, 405s without ``Allow`` and an OpenAPI document without
405 and 500.  The same probes against the production server (granian) are in
tests/test_served_granian.py.
"""

from __future__ import annotations

import datetime as dt
import logging

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from werkzeug.test import EnvironBuilder, run_wsgi_app

from backend.core.db import db
from backend.deposits import ingest
from backend.kiosk_api import schemas
from tests.factories import build_world, deposit_item, post_deposits, signed

UTC = dt.UTC


def _tz(hours: int, minutes: int = 0) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours, minutes=minutes))


@pytest.fixture
def world(app):
    with db.begin() as s:
        return build_world(s, households=2, labels_per_household=4)


def _results(response) -> list:
    assert response.status_code == 200, response.json
    return msgspec.json.decode(response.data, type=schemas.DepositsResponse).results


# ---------------------------------------------------------------- occurred_at beyond UTC

FIRST_LOCAL = dt.datetime(1, 1, 1, tzinfo=_tz(1))  # 0000-12-31T23:00Z
LAST_LOCAL = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=_tz(-1))  # 10000-01-01T00:59:59Z


def test_an_occurred_at_outside_utc_years_is_rejected_alone_in_its_batch(client, world):
    labels = world.labels["H001"]
    items = [
        deposit_item(labels[0]),
        deposit_item(labels[1], occurred_at=FIRST_LOCAL),
        deposit_item(labels[2], occurred_at=LAST_LOCAL),
        deposit_item(labels[3]),
    ]
    assert items[1]["occurred_at"] == "0001-01-01T00:00:00+01:00"
    assert items[2]["occurred_at"] == "9999-12-31T23:59:59-01:00"
    results = _results(post_deposits(client, world, items))
    assert [(r.status, r.error and r.error.code) for r in results] == [
        ("accepted", None),
        ("rejected", "occurred_at_too_old"),
        ("rejected", "occurred_at_in_future"),
        ("accepted", None),
    ]
    assert results[3].balance == 20


@pytest.mark.parametrize("at", [FIRST_LOCAL, LAST_LOCAL], ids=["first", "last"])
def test_an_occurred_at_outside_utc_years_alone_is_rejected(client, world, at):
    """A batch of one takes the one-deposit paths (one round trip on PostgreSQL)."""
    item = deposit_item(world.labels["H002"][0], occurred_at=at)
    [result] = _results(post_deposits(client, world, [item]))
    assert result.status == "rejected"
    assert result.error.code in ("occurred_at_too_old", "occurred_at_in_future")
    # and again: a rejected id is evaluated afresh, never 500
    [again] = _results(post_deposits(client, world, [item]))
    assert again.error == result.error


_CYCLE_YEARS = 400  # the Gregorian calendar repeats every 400 years, weekdays and leap days


@given(
    st.one_of(
        st.datetimes(dt.datetime(1, 1, 1), dt.datetime(1, 1, 1, 23, 59, 59, 999999)),
        st.datetimes(dt.datetime(9999, 12, 31), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
    ),
    st.timedeltas(dt.timedelta(hours=-23, minutes=-59), dt.timedelta(hours=23, minutes=59)),
)
def test_the_content_hash_spells_every_instant_the_schema_accepts(local, offset):
    """Near the ends of datetime's range, the UTC text is that of the same time 400 years away."""
    at = local.replace(tzinfo=dt.timezone(offset))
    shift = _CYCLE_YEARS if local.year == 1 else -_CYCLE_YEARS
    moved = at.replace(year=local.year + shift).astimezone(UTC)
    year = moved.year - shift
    expected = (
        f"{year:04}-{moved:%m-%dT%H:%M:%S}.{moved.microsecond:06}Z"
        if year in (0, 10000)
        else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )
    assert ingest._utc_text(at) == expected
    assert len(ingest.content_hash(_item(at))) == 64


def _item(at: dt.datetime) -> ingest.DepositIn:
    import uuid

    return ingest.DepositIn(uuid.UUID(int=1), "SP1.x", 1, "plastic", 1, at)


# ---------------------------------------------------------------- bodies: nesting, UTF-8, type

PATH = "/api/v1/deposits"


def _post(client, world, body: bytes, content_type: str | None = "application/json", **kw):
    headers = signed(world.kiosk.id, world.secret, "POST", PATH, body)
    headers.pop("Content-Type", None)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.post(PATH, data=body, headers=headers, **kw)


def _body(world, extra: bytes = b"") -> bytes:
    item = msgspec.json.encode(deposit_item(world.labels["H001"][0]))
    return b'{"deposits": [' + item + b"]" + extra + b"}"


def _assert_error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.data
    error = response.get_json()["error"]
    assert error["code"] == code
    return error["message"]


@pytest.mark.parametrize("depth", [1_000, 100_000, 1_000_000])
def test_deep_nesting_in_an_ignored_field_is_a_bad_request(client, world, depth):
    body = _body(world, b', "x": ' + b"[" * depth + b"]" * depth)
    assert len(body) < 4 * 1024 * 1024
    message = _assert_error(_post(client, world, body), 400, "bad_request")
    assert "nested too deeply" in message
    # nesting an honest body never needs is refused, and nothing was applied
    assert _results(_post(client, world, _body(world)))[0].status == "accepted"


def test_invalid_utf8_anywhere_is_a_bad_request(client, world):
    for extra in (b', "x\xff": 1', b', "x": "\xc3\x28"', b', "x": {"\xed\xa0\x80": []}'):
        message = _assert_error(_post(client, world, _body(world, extra)), 400, "bad_request")
        assert "UTF-8" in message
    assert _results(_post(client, world, _body(world)))[0].status == "accepted"


@pytest.mark.parametrize(
    "content_type",
    [None, "", "text/plain", "application/x-www-form-urlencoded", "application/jsonx",
     "application/json-patch+json", "application/json; charset=latin-1",
     "application/json; boundary=x", "multipart/form-data; boundary=x"],
)  # fmt: skip
def test_a_body_that_is_not_declared_json_is_refused_before_authentication(
    client, world, content_type
):
    response = _post(client, world, _body(world), content_type)
    _assert_error(response, 415, "unsupported_media_type")
    # before authentication: an unsigned request gets the same answer
    unsigned = client.post(PATH, data=_body(world), content_type=content_type or "")
    _assert_error(unsigned, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON; Charset=UTF-8"],
)
def test_json_with_or_without_charset_utf8_is_accepted(client, world, content_type):
    assert _results(_post(client, world, _body(world), content_type))[0].status == "accepted"


def _post_chunked(app, world, body: bytes):
    """POST as a WSGI server hands over a chunked body: no CONTENT_LENGTH, input terminated."""
    headers = signed(world.kiosk.id, world.secret, "POST", PATH, body)
    environ = EnvironBuilder(PATH, method="POST", headers=headers, data=body).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    environ["wsgi.input_terminated"] = True  # granian and gunicorn set it
    answer, status, headers = run_wsgi_app(app, environ, buffered=True)
    return app.response_class(b"".join(answer), status=status, headers=headers)


def test_a_chunked_body_over_the_limit_is_413_not_401(client, world, app):
    limit = app.config["MAX_CONTENT_LENGTH"]
    response = _post_chunked(app, world, _body(world, b', "pad": "' + b"x" * limit + b'"'))
    _assert_error(response, 413, "payload_too_large")
    # at the limit exactly, a chunked body is read whole and applied
    body = _body(world)
    body = body[:-1] + b', "pad": "' + b"x" * (limit - len(body) - 11) + b'"}'
    assert len(body) == limit
    assert _results(_post_chunked(app, world, body))[0].status == "accepted"


# ---------------------------------------------------------------- no secret in any log line


def _secrets(world) -> dict[str, str]:
    from protocol import labels as plabels

    return {
        "kiosk secret": world.secret,
        "label public key": world.public_key_text,
        "label private key": plabels.private_key_to_text(world.private_key),
    }


def test_a_failing_database_logs_no_secret(client, world, caplog):
    """Every log line, DEBUG included (SQLAlchemy's echo too), of requests before and after a failure."""
    caplog.set_level(logging.DEBUG)
    labels = world.labels["H001"]
    # the kiosk's set-up is kept after this one: the next requests' nonce statement
    # compares the kept secret and label key with the database's
    assert _results(post_deposits(client, world, [deposit_item(labels[0])]))[0].status == (
        "accepted"
    )
    config = client.get(
        "/api/v1/kiosk/config",
        headers=signed(world.kiosk.id, world.secret, "GET", "/api/v1/kiosk/config"),
    )
    assert config.status_code == 200
    with db.begin() as s:
        s.execute(text("DROP TABLE request_nonces"))
    for items in ([deposit_item(labels[1])], [deposit_item(labels[2]), deposit_item(labels[3])]):
        _assert_error(post_deposits(client, world, items), 500, "internal_error")
    config = client.get(
        "/api/v1/kiosk/config",
        headers=signed(world.kiosk.id, world.secret, "GET", "/api/v1/kiosk/config"),
    )
    _assert_error(config, 500, "internal_error")

    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) >= 3, "each failure is logged with its traceback"
    assert any("request_nonces" in caplog.text for _ in failures)
    for name, secret in _secrets(world).items():
        assert secret not in caplog.text, f"the {name} is in a log line"
    assert "SQL parameters hidden" in caplog.text


# ---------------------------------------------------------------- the signed path


def _post_to(client, world, sent: str, signed_path: str, **kw):
    """POST a deposit to ``sent``, signed over ``signed_path`` (200: applied, whatever its status)."""
    body = _body(world)
    headers = signed(world.kiosk.id, world.secret, "POST", signed_path, body)
    return client.post(sent, data=body, headers=headers, **kw)


def test_the_signature_covers_the_path_as_routed_with_escapes_decoded(client, world):
    """No server gives the raw target (granian, in production, does not): one rule for all."""
    _assert_error(
        _post_to(client, world, "/api/v1/deposit%73", PATH + "x"), 401, "signature_invalid"
    )
    _assert_error(
        _post_to(client, world, "/api/v1/deposit%73", "/api/v1/deposit%73"),
        401,
        "signature_invalid",
    )
    assert _results(_post_to(client, world, "/api/v1/deposit%73", PATH))
    # the query string is signed as sent
    assert _results(_post_to(client, world, PATH + "?a=%41", PATH + "?a=%41"))
    _assert_error(_post_to(client, world, PATH + "?a=%41", PATH + "?a=A"), 401, "signature_invalid")


def test_a_raw_target_in_the_environ_is_not_read(client, world):
    """granian starts each environ from the process's environment: RAW_URI there is not the request's."""
    bogus = {"RAW_URI": "/bogus", "REQUEST_URI": "/bogus"}
    response = _post_to(client, world, PATH, "/bogus", environ_overrides=bogus)
    _assert_error(response, 401, "signature_invalid")
    assert _results(_post_to(client, world, PATH, PATH, environ_overrides=bogus))


def test_an_app_mounted_under_a_prefix_signs_the_prefix_too(client, world):
    """A kiosk whose backend url has a path signs it (docs/kiosk-config.md); the mount point is it."""
    mounted = {"SCRIPT_NAME": "/sortpoint"}
    response = _post_to(client, world, PATH, PATH, environ_overrides=mounted)
    _assert_error(response, 401, "signature_invalid")
    response = _post_to(client, world, PATH, "/sortpoint" + PATH, environ_overrides=mounted)
    assert _results(response)


# ---------------------------------------------------------------- 405, 500 and the document

SERVED = {
    "/api/v1/deposits": ("POST",),
    "/api/v1/kiosk/config": ("GET",),
    "/api/v1/health": ("GET",),
    # the token API (backend/people)
    "/api/v1/me": ("GET",),
    "/api/v1/communities/{slug}/households/{code}": ("GET",),
    # the desk (backend/desk)
    "/api/v1/communities/{slug}/rewards": ("GET", "POST"),
    "/api/v1/rewards/{id}": ("PATCH",),
    "/api/v1/communities/{slug}/redemptions": ("POST",),
    "/api/v1/redemptions/{id}": ("GET",),
    "/api/v1/redemptions/{id}/void": ("POST",),
}


def test_every_operation_documents_405_and_500(client):
    doc = client.get("/api/openapi.json").get_json()
    assert set(doc["paths"]) == set(SERVED)
    for path, ops in doc["paths"].items():
        assert tuple(m.upper() for m in ops) == SERVED[path]
        for op in ops.values():
            responses = op["responses"]
            assert {"405", "500"} <= responses.keys(), path
            assert responses["405"]["headers"]["Allow"]["required"] is True
            for status, response in responses.items():
                if status not in ("200", "201"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    deposits = doc["paths"]["/api/v1/deposits"]["post"]["responses"]
    assert {"400", "401", "413", "415", "503"} <= deposits.keys()


@pytest.mark.parametrize("path", sorted(SERVED))
def test_a_405_says_which_methods_are_allowed(client, path):
    served = set(SERVED[path])
    concrete = path.replace("{id}", "1")  # an integer in the route
    for method in sorted({"GET", "POST", "PUT", "DELETE", "PATCH"} - served):
        response = client.open(concrete, method=method)
        _assert_error(response, 405, "method_not_allowed")
        allowed = {m.strip() for m in response.headers["Allow"].split(",")}
        assert served <= allowed and method not in allowed
        assert response.mimetype == "application/json"


# ---------------------------------------------------------------- the label exactly as scanned


@pytest.mark.parametrize("spelling", [" {}", "{}\n", "{}\r\n", "\t{} "])
def test_whitespace_around_a_label_is_label_malformed(client, world, spelling):
    label = world.labels["H002"][1]
    items = [deposit_item(spelling.format(label)), deposit_item(label)]
    results = _results(post_deposits(client, world, items))
    assert [(r.status, r.error and r.error.code) for r in results] == [
        ("rejected", "label_malformed"),
        ("accepted", None),  # the rejected spelling did not use the label up
    ]
    assert "whitespace" in results[0].error.message
