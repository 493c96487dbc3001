"""The result screen says, in plain words, why a deposit earned fewer points or none.

Offline sessions get each backend answer injected; one session against the real backend
(SQLite or PostgreSQL) earns full points, a capped remainder, nothing under the minimum,
and nothing for a reused label, and shows why each time.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.core.db import db
from kiosk.station import BACKEND_CONFIG_META
from kiosk.texts import KIOSK_PROBLEM, REASONS, REJECTIONS, reason_text
from tests.factories import build_world
from tests.kiosk.stations import Keys, ServedBackend, Session, kiosk_config, offline_config

ROOT = Path(__file__).resolve().parents[2]


def documented_codes(heading: str) -> set[str]:
    """Return the codes in the first column of the docs/protocol.md table under ``heading``."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    table = text[text.index(heading) :].split("\n\n", 2)[1]
    return set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE))


def test_every_documented_reason_has_plain_words_and_rejections_are_documented():
    reasons = documented_codes("**Reasons** (`reason`)") - {"null"}  # null: full points
    assert (
        reasons
        == set(REASONS)
        == {"below_minimum", "daily_cap", "no_rule", "label_reused", "implausible_weight"}
    )
    assert set(REJECTIONS) <= documented_codes("**Rejection codes**")
    for code, words in REASONS.items():
        assert "_" not in words and code not in words


def test_reason_text_is_precise_when_it_can_be():
    assert reason_text(None) is None
    assert (
        reason_text("below_minimum", net_g=60, min_net_g=100)
        == "under the 100 g minimum for points"
    )
    # a cached minimum the weight meets means the backend's rule differs: no wrong number
    assert reason_text("below_minimum", net_g=160, min_net_g=100) == REASONS["below_minimum"]
    assert (
        reason_text("daily_cap", category="paper")
        == "your household reached today's points limit for paper"
    )
    assert reason_text("no_rule", category="glass") == "glass earns no points at the moment"
    assert reason_text("a_new_reason") == "a new reason"  # never silently nothing


@pytest.fixture
def showing_result(tmp_path):
    """Return a session showing the result of a 50 g paper deposit (offline), with cached rules."""
    keys = Keys()
    session = Session(offline_config(tmp_path / "state", keys.public))
    session.journal.set_meta(
        BACKEND_CONFIG_META,
        {
            "label_public_key": keys.public,
            "community": "green",
            "revoked_serials": [],
            "rules": [{"category": "paper", "points_per_kg": 20, "min_net_g": 100}],
        },
    )
    session.station.refresh_config()  # backend down: the cached config serves
    session.run(f"""
        {keys.label()}
        paper
        drop 50
        close
        expect Thank you: 50 g of paper. +0 points (estimate: under the 100 g minimum for points)
    """)
    yield session
    session.close()


def answered(session, **result) -> str:
    session.flow.send("answer", result={"id": "x", "balance": 40, "error": None, **result})
    return session.station.screen.text


@pytest.mark.parametrize(
    ("result", "shown"),
    [
        ({"status": "accepted", "points": 1, "reason": None}, "+1 points - balance 40"),
        (
            {"status": "accepted", "points": 0, "reason": "below_minimum"},
            "+0 points (under the 100 g minimum for points) - balance 40",
        ),
        (
            {"status": "accepted", "points": 0, "reason": "daily_cap"},
            "+0 points (your household reached today's points limit for paper) - balance 40",
        ),
        (
            {"status": "accepted", "points": 0, "reason": "no_rule"},
            "+0 points (paper earns no points at the moment) - balance 40",
        ),
        (
            {"status": "flagged", "points": 0, "reason": "label_reused"},
            (
                "0 points for now (this label was already used for an earlier bag): held for staff review"
                " - balance 40"
            ),
        ),
        (
            {"status": "flagged", "points": 0, "reason": "implausible_weight"},
            "0 points for now (the weight is unusually high for this bin): held for staff review",
        ),
        (
            {"status": "flagged", "points": 0, "reason": None},
            "0 points for now (it needs a check): held for staff review",
        ),
        # a retried upload answers duplicate: the screen shows the first outcome, not "+0 points"
        (
            {
                "status": "duplicate",
                "original_status": "flagged",
                "points": 0,
                "reason": "label_reused",
            },
            "0 points for now (this label was already used for an earlier bag): held for staff review",
        ),
        (
            {"status": "duplicate", "original_status": "accepted", "points": 1, "reason": None},
            "+1 points - balance 40",
        ),
        (
            {
                "status": "rejected",
                "points": 0,
                "balance": None,
                "error": {"code": "label_revoked", "message": "label SER0000001 was revoked"},
            },
            "Recorded 50 g of paper, but not credited: this label has been revoked",
        ),
        (
            {
                "status": "rejected",
                "points": 0,
                "balance": None,
                "error": {"code": "door_category_mismatch", "message": "door 2 takes plastic"},
            },
            f"Recorded 50 g of paper, but not credited: {KIOSK_PROBLEM}",
        ),
        (
            {
                "status": "conflict",
                "points": 0,
                "balance": None,
                "error": {"code": "conflict", "message": "this id was recorded before"},
            },
            f"not credited: {KIOSK_PROBLEM}",
        ),
    ],
)
def test_each_answer_says_why(showing_result, result, shown):
    text = answered(showing_result, **result)
    assert shown in text
    assert "_" not in text  # no raw codes on a resident's screen


# -- against the real backend -------------------------------------------------------------


@pytest.fixture
def capped_world(app):
    with db.begin() as s:
        return build_world(s, labels_per_household=4, points_per_kg=20, min_net_g=100, daily_cap=30)


def test_the_backends_reasons_reach_the_screen_and_the_journal(tmp_path, app, capped_world):
    world = capped_world
    served = ServedBackend(app)
    served.start()
    s = Session(
        kiosk_config(
            tmp_path / "state",
            backend_url=served.url,
            public_key=None,
            kiosk_id=world.kiosk.id,
            secret=world.secret,
            community=world.community.slug,
        )
    )
    try:
        labels = world.labels["H001"]
        steps = [
            (labels[0], 1_000, "+20 points - balance 20"),
            (
                labels[1],
                1_000,
                ("+10 points (your household reached today's points limit for paper) - balance 30"),
            ),
            (labels[2], 60, "+0 points (under the 100 g minimum for points) - balance 30"),
            (
                labels[0],
                500,
                (
                    "0 points for now (this label was already used for an earlier bag):"
                    " held for staff review - balance 30"
                ),
            ),
        ]
        for label, grams, shown in steps:
            s.run(f"{label}\npaper\ndrop {grams}\nclose\nexpect {shown}\nwait 6\nexpect-state idle")
        rows = s.journal.deposits(limit=10)
        assert [(r.sync_status, r.points, r.sync_reason) for r in rows] == [
            ("accepted", 20, None),
            ("accepted", 10, "daily_cap"),
            ("accepted", 0, "below_minimum"),
            ("flagged", 0, "label_reused"),
        ]
    finally:
        s.close()
        served.stop()
