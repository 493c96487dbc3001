"""``ingest.content_hash``: the stored digest that tells a duplicate from a conflict.

Deposits keep it (``deposits.content_hash``), so its value may never change:
a kiosk retrying a deposit recorded by an older version must still be told
``duplicate``.
"""

from __future__ import annotations

import datetime as dt
import uuid

from hypothesis import given
from hypothesis import strategies as st

from backend.deposits import ingest

LABEL = "SP1.oak-gardens.B1-101.7XK3M9QPZA." + "A" * 86


def _item(occurred_at: dt.datetime) -> ingest.DepositIn:
    return ingest.DepositIn(
        uuid.UUID("6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f"), LABEL, 3, "plastic", 640, occurred_at
    )


def test_the_digest_is_the_one_stored_rows_carry():
    # computed with strftime("%Y-%m-%dT%H:%M:%S.%fZ"), as every version before wrote it
    at = dt.datetime(2026, 3, 29, 1, 30, 5, 120, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert (
        ingest.content_hash(_item(at))
        == "07ee9fe1d074bdb1fc66e8d1d131dd3e9d516eb790d024334445aa37e1bfab91"
    )


@given(
    st.datetimes(
        min_value=dt.datetime(1, 1, 2),
        max_value=dt.datetime(9999, 12, 30),
        timezones=st.builds(
            dt.timezone, st.timedeltas(dt.timedelta(hours=-23), dt.timedelta(hours=23))
        ),
    )
)
def test_the_time_is_spelled_as_strftime_spells_it(at):
    assert ingest._utc_text(at) == at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
