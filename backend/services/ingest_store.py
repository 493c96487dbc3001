"""The SQL of deposit ingest: prebuilt Core statements run on the batch's connection.

Built once at import (bind parameters, expanding IN lists), so a request
pays neither statement construction nor compilation, and executed on the
session's Connection rather than through the ORM.  Writes of many rows are
executemany calls, which psycopg pipelines and SQLAlchemy turns into
multi-row INSERTs where RETURNING is needed.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from dataclasses import dataclass

from sqlalchemy import Uuid, and_, bindparam, case, select, type_coerce, update
from sqlalchemy.engine import Connection

from backend.models import Category, Deposit, Household, KioskDoor, Label, PointsRule
from backend.services import points
from backend.services._sql import chunked, insert_ignore_for, params

DEPOSITS = Deposit.__table__
LABELS = Label.__table__
CATEGORIES = Category.__table__
DOORS = KioskDoor.__table__
RULES = PointsRule.__table__
HOUSEHOLDS = Household.__table__


@dataclass(frozen=True, slots=True)
class Door:
    """A kiosk door: the category it takes and its bin's capacity."""

    category_id: int
    capacity_g: int


@dataclass(frozen=True, slots=True)
class CategoryInfo:
    """A community category as ingest needs it."""

    id: int
    max_plausible_g: int


@dataclass(frozen=True, slots=True)
class Setup:
    """The kiosk's doors, the community's categories and their rule versions."""

    doors: dict[int, Door]
    categories: dict[str, CategoryInfo]
    rules: points.RuleBook


_EXISTING = select(
    DEPOSITS.c.id, DEPOSITS.c.content_hash, DEPOSITS.c.status, DEPOSITS.c.points,
    DEPOSITS.c.household_id, DEPOSITS.c.reason,
).where(DEPOSITS.c.id.in_(bindparam("ids", expanding=True)))


def existing(conn: Connection, ids) -> dict[uuid.UUID, tuple]:
    """Return id -> (content_hash, status, points, household_id, reason) of recorded ids."""
    found = {}
    for chunk in chunked(sorted(ids)):
        for row in conn.execute(_EXISTING, {"ids": chunk}):
            found[row[0]] = tuple(row[1:])
    return found


# One query for doors, categories and rule versions: rules change a few times a
# year, so the LEFT JOIN product stays small while saving a round trip.
_SETUP = (
    select(
        CATEGORIES.c.id, CATEGORIES.c.code, CATEGORIES.c.max_plausible_g, DOORS.c.door,
        DOORS.c.capacity_g, RULES.c.id, RULES.c.version, RULES.c.points_per_kg, RULES.c.min_net_g,
        RULES.c.daily_cap, RULES.c.effective_at,
    )
    .select_from(
        CATEGORIES.outerjoin(
            DOORS, and_(DOORS.c.category_id == CATEGORIES.c.id, DOORS.c.kiosk_id == bindparam("kiosk_id"))
        ).outerjoin(
            RULES, and_(RULES.c.category_id == CATEGORIES.c.id, RULES.c.effective_at <= bindparam("until"))
        )
    )
    .where(CATEGORIES.c.community_id == bindparam("community_id"))
)


def kiosk_setup(conn: Connection, kiosk_id: str, community_id: int, until: dt.datetime) -> Setup:
    """Load doors, categories and the rule versions effective up to ``until``."""
    doors: dict[int, Door] = {}
    categories: dict[str, CategoryInfo] = {}
    rules: dict[int, points.Rule] = {}
    bind = {"kiosk_id": kiosk_id, "community_id": community_id, "until": until}
    for row in conn.execute(_SETUP, bind):
        cat_id, code, max_g, door, capacity_g, rule_id = row[:6]
        categories[code] = CategoryInfo(cat_id, max_g)
        if door is not None:
            doors[door] = Door(cat_id, capacity_g)
        if rule_id is not None and rule_id not in rules:
            rules[rule_id] = points.Rule(rule_id, cat_id, *row[6:])
    return Setup(doors, categories, points.RuleBook(rules.values()))


_READ_LABELS = (
    select(
        LABELS.c.serial, LABELS.c.household_id, HOUSEHOLDS.c.code, LABELS.c.revoked_at,
        LABELS.c.first_deposit_id, LABELS.c.community_id,
    )
    .join(HOUSEHOLDS, HOUSEHOLDS.c.id == LABELS.c.household_id)
    .where(LABELS.c.serial.in_(bindparam("serials", expanding=True)))
)


def read_labels(conn: Connection, serials) -> dict[str, tuple]:
    """Return serial -> (household id, household code, revoked_at, first deposit id, community id).

    Read without a lock: who credits a label is decided by ``claim_labels``.
    """
    found: dict[str, tuple] = {}
    for chunk in chunked(sorted(set(serials))):
        for serial, *rest in conn.execute(_READ_LABELS, {"serials": chunk}):
            found[serial] = tuple(rest)
    return found


def claim_labels(conn: Connection, plan: dict[str, uuid.UUID]) -> dict[str, uuid.UUID]:
    """Claim each planned label for its deposit if still unclaimed; return the claims that held.

    One ``UPDATE ... WHERE first_deposit_id IS NULL RETURNING serial`` per
    chunk: a label already claimed (now, or by a concurrent batch that
    committed first) is simply not returned.
    """
    won: dict[str, uuid.UUID] = {}
    for chunk in chunked(sorted(plan), 500):
        mapping = {s: type_coerce(plan[s], Uuid()) for s in chunk}
        stmt = (
            update(LABELS)
            .where(LABELS.c.serial.in_(chunk), LABELS.c.first_deposit_id.is_(None))
            .values(first_deposit_id=case(mapping, value=LABELS.c.serial))
            .returning(LABELS.c.serial)
        )
        won.update((serial, plan[serial]) for (serial,) in conn.execute(stmt))
    return won


@functools.lru_cache(maxsize=4)
def _insert_deposits(dialect: str):
    return insert_ignore_for(dialect, DEPOSITS, ["id"]).returning(DEPOSITS.c.id)


def insert_deposits(conn: Connection, rows: list[dict]) -> int:
    """Insert deposits in ascending id order, skipping ids that exist; return how many went in."""
    rows.sort(key=lambda r: r["id"])
    return len(conn.execute(_insert_deposits(conn.dialect.name), params(rows)).all())
