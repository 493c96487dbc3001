"""The ledger's use cases: one function each, and each owns its transaction.

The service layer in the cosmicpython sense, as ``backend.registry.use_cases``:
a CLI command (or a view) calls exactly one of these and prints what it
returns; it never opens, commits or rolls back a transaction itself
(tests/test_transactions_owned.py).  Each opens one transaction (``db.begin()``
to write, ``db.read()`` for a snapshot read), composes the session-taking
functions of ``services``, ``rules`` and ``statements`` inside it and returns
plain data: dicts shaped as the commands' JSON, or frozen dataclasses.
"""

from __future__ import annotations

import datetime as dt

from backend.core.db import db
from backend.ledger import rules, services, statements
from backend.ledger.services import Mismatch


def verify_ledger() -> list[Mismatch]:
    """Recompute every balance from the entries, in one snapshot; return the mismatches."""
    with db.read() as s:  # one snapshot; deposits keep flowing meanwhile
        return services.verify(s)


def household_statement(household: str, community: str | None = None, limit: int = 50) -> dict:
    """Return a household's balance and its latest ``limit`` entries, oldest first."""
    with db.read() as s:
        return statements.household_statement(s, household, community, limit)


def set_rule(
    community: str,
    category: str,
    points_per_kg: int,
    min_net_g: int = 0,
    daily_cap: int | None = None,
    effective_at: dt.datetime | None = None,
) -> dict:
    """Append a new version of a category's points rule; return its description."""
    with db.begin() as s:
        rule = rules.set_rule(
            s, community, category, points_per_kg, min_net_g, daily_cap, effective_at
        )
        return rules.rule_info(rule, category)


def rules_table(community: str, category: str | None = None) -> list[dict]:
    """Return every version of a community's rules; ``current`` marks each one in force now."""
    with db.read() as s:
        return rules.rules_table(s, community, category)
