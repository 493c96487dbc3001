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

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.core.db import db
from backend.deposits import ingest
from backend.kiosk_api import schemas
from tests.factories import build_world, deposit_item, post_deposits

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
