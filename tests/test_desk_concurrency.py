"""Racing redemptions and voids never overdraw a balance or a stock, on SQLite and PostgreSQL.

Real threads call the use cases (each on its own connection from the pool) against the
real database, as tests/test_ingest_concurrency.py does for ingest.  Afterwards the ledger
verifies, no stock or balance is below zero, every successful redemption has exactly one
debit (and every void one reversal), and the totals add up.
"""

from __future__ import annotations

import collections
import datetime as dt

import pytest
from sqlalchemy import select

from backend.core.db import db
from backend.core.errors import SortpointError
from backend.desk import use_cases as desk
from backend.desk.models import Redemption, RedemptionVoid, Reward
from backend.ledger import services as ledger
from backend.ledger.models import Account, LedgerEntry
from backend.registry.services import find_household
from tests.desk_world import add_reward, give_points
from tests.people_world import make_world
from tests.test_ingest_concurrency import in_threads

THREADS = 8
WINDOW = dt.timedelta(hours=24)


@pytest.fixture
def world(app):
    world = make_world(app)  # oak/H1 starts with 25 points
    with db.session() as s:
        world.h1 = find_household(s, "H1", "oak").id
    return world


def attempt(call):
    """Run a use case; return its answer, or the error code it was refused with."""
    try:
        return call()
    except SortpointError as exc:
        return exc.code


def check_invariants() -> dict:
    with db.session() as s:
        assert ledger.verify(s) == []
        assert all(n >= 0 for n in s.scalars(select(Reward.stock)) if n is not None)
        assert all(n >= 0 for n in s.scalars(select(Account.balance)))
        redemptions = s.scalars(select(Redemption)).all()
        debits = s.scalars(select(LedgerEntry).where(LedgerEntry.kind == "redemption")).all()
        assert len(debits) == len(redemptions)
        assert {r.entry_id for r in redemptions} == {e.id for e in debits}
        for r in redemptions:
            entry = next(e for e in debits if e.id == r.entry_id)
            assert (entry.household_id, -entry.amount) == (r.household_id, r.points)
        voids = s.scalars(select(RedemptionVoid)).all()
        reversals = s.scalars(
            select(LedgerEntry).where(LedgerEntry.source_type == "redemption_void")
        ).all()
        assert len(voids) == len(reversals) == len({v.redemption_id for v in voids})
        numbers = sorted(r.receipt_number for r in redemptions)
        assert numbers == list(range(1, len(numbers) + 1))  # per community; one community here
        return {"redemptions": redemptions, "voids": voids}


def test_racing_redemptions_never_overdraw_one_balance(world):
    give_points("H1", "oak", 975, "race:h1")  # 1000: room for exactly 10 at 100
    bags = add_reward("oak", "Bin bags", 100)  # unlimited: only the balance limits
    token = world.tokens["mgr-oak"]

    def worker(i):
        return [
            attempt(
                lambda j=j: desk.redeem_by_token(
                    token,
                    "oak",
                    f"w{i}-{j}",
                    {"household": "H1", "items": [{"reward": bags, "quantity": 1}]},
                )
            )
            for j in range(3)
        ]

    outcomes = [o for per in in_threads(worker, THREADS) for o in per]
    done = [o for o in outcomes if isinstance(o, dict)]
    assert len(done) == 10
    assert collections.Counter(o for o in outcomes if not isinstance(o, dict)) == {
        "insufficient_points": len(outcomes) - 10
    }
    assert sorted(o["balance"] for o in done) == list(range(0, 1000, 100))
    check_invariants()
    with db.session() as s:
        assert set(s.scalars(select(Redemption.household_id))) == {world.h1}
        assert ledger.balance(s, world.h1) == 0


def test_racing_redemptions_never_overdraw_one_stock(world):
    give_points("H1", "oak", 5000, "race:h1")
    give_points("H2", "oak", 5000, "race:h2")
    soap = add_reward("oak", "Soap", 10, stock=7)
    token = world.tokens["mgr-oak"]

    def worker(i):
        household = "H1" if i % 2 else "H2"
        return [
            attempt(
                lambda j=j: desk.redeem_by_token(
                    token,
                    "oak",
                    f"w{i}-{j}",
                    {"household": household, "items": [{"reward": soap, "quantity": 1 + (j % 2)}]},
                )
            )
            for j in range(3)
        ]

    outcomes = [o for per in in_threads(worker, THREADS) for o in per]
    done = [o for o in outcomes if isinstance(o, dict)]
    assert {o for o in outcomes if not isinstance(o, dict)} <= {"out_of_stock"}
    sold = sum(o["points"] for o in done) // 10
    with db.session() as s:
        left = s.get(Reward, soap).stock
    assert sold + left == 7
    assert left <= 1  # every request asks for 1 or 2: it stops only when fewer are left
    check_invariants()


def test_one_key_from_many_threads_redeems_once(world):
    give_points("H1", "oak", 975, "race:h1")
    soap = add_reward("oak", "Soap", 100, stock=50)
    body = {"household": "H1", "items": [{"reward": soap, "quantity": 2}]}
    tokens = [world.tokens["mgr-oak"], world.tokens["admin"]]

    answers = in_threads(
        lambda i: desk.redeem_by_token(tokens[i % 2], "oak", "the-one-key", body), THREADS
    )
    assert all(a == answers[0] for a in answers)
    state = check_invariants()
    assert len(state["redemptions"]) == 1
    with db.session() as s:
        assert s.get(Reward, soap).stock == 48


def test_one_key_for_two_households_at_once_redeems_once_and_conflicts(world):
    give_points("H1", "oak", 975, "race:h1")
    give_points("H2", "oak", 1000, "race:h2")
    soap = add_reward("oak", "Soap", 100, stock=50)
    token = world.tokens["mgr-oak"]

    def worker(i):
        body = {"household": "H1" if i % 2 else "H2", "items": [{"reward": soap, "quantity": 1}]}
        return attempt(lambda: desk.redeem_by_token(token, "oak", "shared", body))

    outcomes = in_threads(worker, THREADS)
    done = [o for o in outcomes if isinstance(o, dict)]
    assert done and all(o == done[0] for o in done)
    assert {o for o in outcomes if not isinstance(o, dict)} == {"idempotency_conflict"}
    assert len(check_invariants()["redemptions"]) == 1


def test_voids_racing_redemptions_and_each_other(world):
    give_points("H1", "oak", 575, "race:h1")  # 600
    give_points("H2", "oak", 600, "race:h2")
    soap = add_reward("oak", "Soap", 50, stock=12)
    token = world.tokens["mgr-oak"]
    first = [
        desk.redeem_by_token(
            token,
            "oak",
            f"pre-{i}",
            {"household": "H1" if i % 2 else "H2", "items": [{"reward": soap, "quantity": 2}]},
        )
        for i in range(4)
    ]  # 8 of 12 soaps out, 200 points from each household

    def worker(i):
        if i < 4:  # two threads void each of the first two redemptions; one of each wins
            target = first[i % 2]["id"]
            return [attempt(lambda: desk.void_by_token(token, target, f"race {i}", WINDOW))]
        household = "H1" if i % 2 else "H2"
        return [
            attempt(
                lambda j=j: desk.redeem_by_token(
                    token,
                    "oak",
                    f"w{i}-{j}",
                    {"household": household, "items": [{"reward": soap, "quantity": 2}]},
                )
            )
            for j in range(3)
        ]

    outcomes = [o for per in in_threads(worker, THREADS) for o in per]
    void_outcomes = outcomes[:4]
    assert sum(isinstance(o, dict) for o in void_outcomes) == 2
    assert [o for o in void_outcomes if not isinstance(o, dict)] == ["already_voided"] * 2
    refused = {o for o in outcomes[4:] if not isinstance(o, dict)}
    assert refused <= {"out_of_stock", "insufficient_points"}
    state = check_invariants()
    voided = {v.redemption_id for v in state["voids"]}
    assert voided == {first[0]["id"], first[1]["id"]}
    live = [r for r in state["redemptions"] if r.id not in voided]
    with db.session() as s:
        stock = s.get(Reward, soap).stock
        balances = dict(s.execute(select(Account.household_id, Account.balance)).all())
    # each live redemption took 2 soaps (100 points); voided ones gave theirs back
    assert stock == 12 - 2 * len(live)
    spent = collections.Counter()
    for r in live:
        spent[r.household_id] += r.points
    assert sum(balances.values()) == 1200 - sum(spent.values())
    for household_id, points in spent.items():
        assert balances[household_id] == 600 - points
