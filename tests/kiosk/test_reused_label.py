"""A label used before at this kiosk promises no points: the backend will most likely hold it.

The backend credits a label once and flags a second use (``label_reused``).  The kiosk knows the
serials its journal sent, or will send, so its result screen says the deposit may be held for
review instead of showing an estimate that the backend's answer would take back.
"""

from __future__ import annotations

import pytest

from kiosk.station import BACKEND_CONFIG_META
from kiosk.texts import LABEL_USED_HERE
from kiosk.ui import deposit_view
from tests.kiosk.stations import Keys, Session, offline_config

ESTIMATE = "Thank you: 600 g of paper. +9 points (estimate)"
MAY_BE_HELD = f"Thank you: 600 g of paper. No points yet ({LABEL_USED_HERE})"


@pytest.fixture
def session(tmp_path):
    """Return an offline session with cached rules: 15 points a kg of paper."""
    keys = Keys()
    session = Session(offline_config(tmp_path / "state", keys.public))
    session.keys = keys
    session.journal.set_meta(
        BACKEND_CONFIG_META,
        {
            "label_public_key": keys.public,
            "community": "green",
            "revoked_serials": [],
            "rules": [{"category": "paper", "points_per_kg": 15, "min_net_g": 0}],
        },
    )
    session.station.refresh_config()  # backend down: the cached config serves
    yield session
    session.close()


def deposit(session, label: str, grams: int, shown: str) -> None:
    session.run(f"{label}\npaper\ndrop {grams}\nclose\nexpect {shown}")


def test_a_reused_label_says_it_may_be_held_and_promises_no_points(session):
    label = session.keys.label(serial="SER0000042")
    deposit(session, label, 600, ESTIMATE)
    session.run("wait 10\nexpect-state idle")
    mark = session.screen.mark()
    deposit(session, label, 600, MAY_BE_HELD)
    shown = session.screen.since(mark)
    assert not any("points (estimate)" in text for text in shown), shown
    assert session.flow.current.label_used
    assert deposit_view(session.flow.current)["label_used"] is True
    assert [row.serial for row in session.journal.deposits(limit=5)] == ["SER0000042"] * 2


def test_a_label_whose_earlier_bag_was_never_recorded_is_not_reused(session):
    label = session.keys.label(serial="SER0000043")
    deposit(session, label, 0, "No deposit was detected")  # empty: never sent to the backend
    session.run("wait 10\nexpect-state idle")
    deposit(session, label, 600, ESTIMATE)
    assert not session.flow.current.label_used
    other = session.keys.label(serial="SER0000044")  # another serial is never reused
    session.run("wait 10\nexpect-state idle")
    deposit(session, other, 600, ESTIMATE)
