"""The submitting kiosk as ingest sees it: its set-up, loaded in one query, and when a kept copy is current.

``kiosk_context`` loads a kiosk with its community, doors, categories and rule
versions in one joined SELECT; its rows are read by column name.  The kiosk
API's per-worker cache keeps these copies (``kiosk_api.kiosk_cache``), and
``nonce_if_current_sql`` is the one statement that records a request's nonce
only while a kept copy still matches the database: its text is the ONLY copy
of that test, run by ``kiosk_api.auth`` (both databases) and spelled into the
PostgreSQL one-deposit function (``pg_one``).
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, func, literal_column, select
from sqlalchemy.engine import Connection

from backend.ledger import points
from backend.ledger.models import PointsRule
from backend.registry.models import Category, Community, Kiosk, KioskDoor
from backend.registry.sealed import open_kiosk_secret

RULES = PointsRule.__table__
CATEGORIES = Category.__table__
DOORS = KioskDoor.__table__
KIOSKS = Kiosk.__table__
COMMUNITIES = Community.__table__


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


@dataclass(frozen=True, slots=True)
class KioskRef:
    """What ingest needs to know about the submitting kiosk and its community."""

    kiosk_id: str
    community_id: int
    community_slug: str
    timezone: str
    label_public_key: str


@dataclass(frozen=True, slots=True)
class KioskContext:
    """A kiosk row with its community, doors, categories and rule versions."""

    ref: KioskRef
    name: str
    #: the kiosk's secret in clear: the key its requests' HMAC signatures are checked with
    hmac_key: str
    enabled: bool
    last_seen_at: dt.datetime | None
    setup: Setup
    #: max(points_rules.id) when this was loaded: a new rule version anywhere changes it
    rules_mark: int = 0
    #: ``kiosks.secret`` exactly as stored: what ``nonce_if_current_sql`` compares
    #: a kept copy with
    secret_as_stored: str = ""


#: the highest rule id: an index-only look-up on both databases
RULES_MARK = select(func.coalesce(func.max(RULES.c.id), literal_column("0"))).scalar_subquery()


def nonce_if_current_sql(
    *,
    kiosk_id: str,
    nonce: str,
    seen_at: str,
    secret_as_stored: str,
    timezone: str,
    label_key: str,
    rules_mark: str,
) -> str:
    """Return the INSERT of a nonce that inserts only while a kept kiosk copy is current.

    The arguments are the SQL spellings of the values (bind parameters such
    as ``:nonce``, or PL/pgSQL arguments such as ``p_nonce``).  Current: the
    kiosk is enabled with the same secret as stored, its community has the
    same time zone and label key, and no rule version was added anywhere.  A
    nonce used before inserts nothing either (a replay).  Valid SQL on
    SQLite and PostgreSQL.
    """
    return f"""INSERT INTO request_nonces (kiosk_id, nonce, seen_at)
    SELECT {kiosk_id}, {nonce}, {seen_at}
     WHERE EXISTS (SELECT 1 FROM kiosks k JOIN communities c ON c.id = k.community_id
                    WHERE k.id = {kiosk_id} AND k.enabled AND k.secret = {secret_as_stored}
                      AND c.timezone = {timezone} AND c.label_public_key = {label_key})
       AND (SELECT coalesce(max(r.id), 0) FROM points_rules r) = {rules_mark}
    ON CONFLICT (kiosk_id, nonce) DO NOTHING"""


# One query for the kiosk, its community, doors, categories and rule versions:
# a request needs all of them, and rules change a few times a year, so the
# LEFT JOIN product stays small while saving round trips.
@functools.lru_cache(maxsize=2)
def _context(all_rules: bool):
    rules_on = RULES.c.category_id == CATEGORIES.c.id
    if not all_rules:
        rules_on = and_(rules_on, RULES.c.effective_at <= bindparam("until"))
    return (
        select(
            KIOSKS.c.secret,
            KIOSKS.c.enabled,
            KIOSKS.c.name,
            KIOSKS.c.last_seen_at,
            COMMUNITIES.c.id.label("community_id"),
            COMMUNITIES.c.slug,
            COMMUNITIES.c.timezone,
            COMMUNITIES.c.label_public_key,
            RULES_MARK.label("rules_mark"),
            CATEGORIES.c.id.label("category_id"),
            CATEGORIES.c.code,
            CATEGORIES.c.max_plausible_g,
            DOORS.c.door,
            DOORS.c.capacity_g,
            RULES.c.id.label("rule_id"),
            RULES.c.version,
            RULES.c.points_per_kg,
            RULES.c.min_net_g,
            RULES.c.daily_cap,
            RULES.c.effective_at,
        )
        .select_from(
            KIOSKS.join(COMMUNITIES, COMMUNITIES.c.id == KIOSKS.c.community_id)
            .outerjoin(CATEGORIES, CATEGORIES.c.community_id == COMMUNITIES.c.id)
            .outerjoin(
                DOORS,
                and_(
                    DOORS.c.category_id == CATEGORIES.c.id,
                    DOORS.c.kiosk_id == KIOSKS.c.id,
                ),
            )
            .outerjoin(RULES, rules_on)
        )
        .where(KIOSKS.c.id == bindparam("kiosk_id"))
    )


def kiosk_context(
    conn: Connection, kiosk_id: str, until: dt.datetime | None
) -> KioskContext | None:
    """Load a kiosk with everything a request needs.

    Rule versions effective up to ``until``; ``None`` loads every version
    (what a cached copy needs: it scores deposits of later requests too).
    """
    params_ = {"kiosk_id": kiosk_id}
    if until is not None:
        params_["until"] = until
    rows = conn.execute(_context(until is None), params_).all()
    if not rows:
        return None
    doors: dict[int, Door] = {}
    categories: dict[str, CategoryInfo] = {}
    rules: dict[int, points.Rule] = {}
    for row in rows:
        if row.category_id is None:
            continue
        categories[row.code] = CategoryInfo(row.category_id, row.max_plausible_g)
        if row.door is not None:
            doors[row.door] = Door(row.category_id, row.capacity_g)
        if row.rule_id is not None and row.rule_id not in rules:
            rules[row.rule_id] = points.Rule(
                id=row.rule_id,
                category_id=row.category_id,
                version=row.version,
                points_per_kg=row.points_per_kg,
                min_net_g=row.min_net_g,
                daily_cap=row.daily_cap,
                effective_at=row.effective_at,
            )
    first = rows[0]
    return KioskContext(
        KioskRef(kiosk_id, first.community_id, first.slug, first.timezone, first.label_public_key),
        name=first.name,
        # the one place the stored secret becomes the HMAC key
        hmac_key=open_kiosk_secret(kiosk_id, first.secret),
        enabled=first.enabled,
        last_seen_at=first.last_seen_at,
        setup=Setup(doors, categories, points.RuleBook(rules.values())),
        rules_mark=first.rules_mark,
        secret_as_stored=first.secret,
    )
