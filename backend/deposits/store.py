"""The SQL of deposit ingest: prebuilt Core statements run on the batch's connection.

Built once per dialect (bind parameters; ``= ANY(array)`` lists on
PostgreSQL, expanding IN lists on SQLite, see ``_sql.in_list``), so a request
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

from sqlalchemy import and_, bindparam, func, literal_column, select, update
from sqlalchemy.engine import Connection

from backend.core.sql import MAX_IN_PARAMS, chunked, in_list, insert_ignore_for, params
from backend.deposits.models import Deposit
from backend.ledger import points
from backend.ledger import services as ledger
from backend.ledger.models import Account, DailyTotal, LedgerEntry, PointsRule
from backend.registry.models import Category, Community, Household, Kiosk, KioskDoor, Label

DEPOSITS = Deposit.__table__
LABELS = Label.__table__
CATEGORIES = Category.__table__
DOORS = KioskDoor.__table__
RULES = PointsRule.__table__
HOUSEHOLDS = Household.__table__
ACCOUNTS = Account.__table__
KIOSKS = Kiosk.__table__
COMMUNITIES = Community.__table__
ENTRIES = LedgerEntry.__table__
TOTALS = DailyTotal.__table__


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


@functools.lru_cache(maxsize=4)
def _existing(dialect: str):
    return select(
        DEPOSITS.c.id,
        DEPOSITS.c.content_hash,
        DEPOSITS.c.status,
        DEPOSITS.c.points,
        DEPOSITS.c.household_id,
        DEPOSITS.c.reason,
    ).where(in_list(DEPOSITS.c.id, "ids", dialect))


def existing(conn: Connection, ids) -> dict[uuid.UUID, tuple]:
    """Return id -> (content_hash, status, points, household_id, reason) of recorded ids."""
    found = {}
    for chunk in chunked(sorted(ids)):
        for row in conn.execute(_existing(conn.dialect.name), {"ids": chunk}):
            found[row[0]] = tuple(row[1:])
    return found


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
    secret: str
    enabled: bool
    last_seen_at: dt.datetime | None
    setup: Setup
    #: max(points_rules.id) when this was loaded: a new rule version anywhere changes it
    rules_mark: int = 0


#: the highest rule id: an index-only look-up on both databases
RULES_MARK = select(func.coalesce(func.max(RULES.c.id), literal_column("0"))).scalar_subquery()


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
            COMMUNITIES.c.id,
            COMMUNITIES.c.slug,
            COMMUNITIES.c.timezone,
            COMMUNITIES.c.label_public_key,
            RULES_MARK,
            CATEGORIES.c.id,
            CATEGORIES.c.code,
            CATEGORIES.c.max_plausible_g,
            DOORS.c.door,
            DOORS.c.capacity_g,
            RULES.c.id,
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
        cat_id, code, max_g, door, capacity_g, rule_id = row[9:15]
        if cat_id is None:
            continue
        categories[code] = CategoryInfo(cat_id, max_g)
        if door is not None:
            doors[door] = Door(cat_id, capacity_g)
        if rule_id is not None and rule_id not in rules:
            rules[rule_id] = points.Rule(rule_id, cat_id, *row[15:])
    secret, enabled, name, last_seen, community_id, slug, timezone, key = rows[0][:8]
    return KioskContext(
        KioskRef(kiosk_id, community_id, slug, timezone, key),
        name,
        secret,
        enabled,
        last_seen,
        Setup(doors, categories, points.RuleBook(rules.values())),
        rules_mark=rows[0][8],
    )


_LABEL_COLS = (
    LABELS.c.serial,
    LABELS.c.household_id,
    HOUSEHOLDS.c.code,
    LABELS.c.revoked_at,
    LABELS.c.first_deposit_id,
    LABELS.c.community_id,
)


@functools.lru_cache(maxsize=4)
def _read_labels(dialect: str):
    return (
        select(*_LABEL_COLS)
        .join(HOUSEHOLDS, HOUSEHOLDS.c.id == LABELS.c.household_id)
        .where(in_list(LABELS.c.serial, "serials", dialect))
    )


# Labels with their households' accounts, locked in ascending household
# order (the ledger's lock order) in the same round trip.
@functools.lru_cache(maxsize=4)
def _lock_label_accounts(dialect: str):
    return (
        select(*_LABEL_COLS, ACCOUNTS.c.balance, ACCOUNTS.c.entry_count)
        .join(HOUSEHOLDS, HOUSEHOLDS.c.id == LABELS.c.household_id)
        .join(ACCOUNTS, ACCOUNTS.c.household_id == LABELS.c.household_id)
        .where(in_list(LABELS.c.serial, "serials", dialect))
        .order_by(LABELS.c.household_id, LABELS.c.serial)
        .with_for_update(of=ACCOUNTS, key_share=True)
    )


def read_labels(conn: Connection, serials) -> dict[str, tuple]:
    """Return serial -> (household id, household code, revoked_at, first deposit id, community id).

    Read without a lock: who credits a label is decided by ``claim_labels``.
    """
    found: dict[str, tuple] = {}
    for chunk in chunked(sorted(set(serials))):
        for serial, *rest in conn.execute(_read_labels(conn.dialect.name), {"serials": chunk}):
            found[serial] = tuple(rest)
    return found


def labels_with_locked_accounts(
    session, serials
) -> tuple[dict[str, tuple], dict[int, ledger.AccountState]]:
    """Read labels (as ``read_labels``) and lock their households' accounts, ascending.

    One statement when every household has its account (the usual case);
    otherwise the missing accounts are created and locked through the ledger.
    """
    wanted = sorted(set(serials))
    if len(wanted) > MAX_IN_PARAMS:
        labels = read_labels(session.connection(), wanted)
        return labels, ledger.lock_accounts(session, {row[0] for row in labels.values()})
    labels: dict[str, tuple] = {}
    accounts: dict[int, ledger.AccountState] = {}
    for serial, *rest in session.connection().execute(
        _lock_label_accounts(session.get_bind().dialect.name), {"serials": wanted}
    ):
        labels[serial] = tuple(rest[:5])
        accounts[rest[0]] = ledger.AccountState(rest[5], rest[6])
    missing = [s for s in wanted if s not in labels]
    if missing:
        # unknown serials, or households without an account row yet
        extra = read_labels(session.connection(), missing)
        if extra:
            labels.update(extra)
            accounts.update(ledger.lock_accounts(session, {row[0] for row in extra.values()}))
    return labels, accounts


_CLAIM = (
    update(LABELS)
    .where(LABELS.c.serial == bindparam("b_serial"), LABELS.c.first_deposit_id.is_(None))
    .values(first_deposit_id=bindparam("b_deposit"))
)
_CLAIMED_BY = select(LABELS.c.serial, LABELS.c.first_deposit_id).where(
    LABELS.c.serial.in_(bindparam("serials", expanding=True))
)  # the rare path: a claim lost to a concurrent batch


def claim_labels(conn: Connection, plan: dict[str, uuid.UUID]) -> dict[str, uuid.UUID]:
    """Claim each planned label for its deposit if still unclaimed; return the claims that held.

    ``UPDATE ... WHERE first_deposit_id IS NULL`` per label: a label claimed
    already (by a concurrent batch that committed first) is left alone.  When
    the row count says every claim held - the usual case - nothing more is
    read; otherwise the labels are read back to see which did.
    """
    if not plan:
        return {}
    rows = [{"b_serial": s, "b_deposit": plan[s]} for s in sorted(plan)]
    if conn.execute(_CLAIM, params(rows)).rowcount == len(rows):
        return dict(plan)
    won = {}
    for chunk in chunked(sorted(plan)):
        for serial, first in conn.execute(_CLAIMED_BY, {"serials": chunk}):
            if first == plan[serial]:
                won[serial] = first
    return won


@functools.lru_cache(maxsize=4)
def _insert_deposits(dialect: str):
    return insert_ignore_for(dialect, DEPOSITS, ["id"])


def insert_deposits(conn: Connection, rows: list[dict]) -> int:
    """Insert deposits in ascending id order, skipping ids that exist; return how many went in.

    ``INSERT ... ON CONFLICT (id) DO NOTHING`` as an executemany of one short
    statement (psycopg pipelines it); the summed row count tells how many
    ids were new.
    """
    rows.sort(key=lambda r: r["id"])
    stmt = _insert_deposits(conn.dialect.name)
    return conn.execution_options(preserve_rowcount=True).execute(stmt, params(rows)).rowcount


# ------------------------------------------------ one deposit, fewer statements
#
# A kiosk uploads each deposit as it happens: a request of one item is the
# common case.  It needs two statements besides the nonce: one read that locks
# the household's account (also answering "was this id recorded?"), and on
# PostgreSQL one write of everything (data-modifying CTEs).  Whatever that
# read could not see because it waited for the lock - a concurrent claim of
# the label, a concurrent deposit of the same id - makes the write's claim or
# insert count come back short, and the batch is retried on the general path.

_KNOWN = DEPOSITS.alias("known")


@functools.lru_cache(maxsize=4)
def _lock_one(dialect: str):
    return (
        select(
            *_LABEL_COLS,
            ACCOUNTS.c.balance,
            ACCOUNTS.c.entry_count,
            _KNOWN.c.content_hash,
            _KNOWN.c.status,
            _KNOWN.c.points,
            _KNOWN.c.household_id,
            _KNOWN.c.reason,
        )
        .select_from(
            LABELS.join(HOUSEHOLDS, HOUSEHOLDS.c.id == LABELS.c.household_id)
            .join(ACCOUNTS, ACCOUNTS.c.household_id == LABELS.c.household_id)
            .outerjoin(_KNOWN, _KNOWN.c.id == bindparam("deposit_id", type_=DEPOSITS.c.id.type))
        )
        .where(LABELS.c.serial == bindparam("serial"))
        .with_for_update(of=ACCOUNTS, key_share=True)
    )


def lock_one(
    conn: Connection, serial: str, deposit_id: uuid.UUID
) -> tuple[tuple, ledger.AccountState, tuple | None] | None:
    """Lock the account of the label's household; return (label, account, recorded).

    ``label`` as ``read_labels`` gives it, ``recorded`` as ``existing`` gives
    the deposit ``deposit_id`` (None if new).  None when the label is unknown
    or its household has no account yet: the general path handles both.
    """
    row = conn.execute(
        _lock_one(conn.dialect.name), {"serial": serial, "deposit_id": deposit_id}
    ).first()
    if row is None:
        return None
    recorded = tuple(row[8:]) if row[8] is not None else None
    return tuple(row[1:6]), ledger.AccountState(row[6], row[7]), recorded


def _bound(table, prefix: str, columns: tuple[str, ...]) -> dict:
    """Return column -> bind parameter ``prefix + column`` (unique names in one statement)."""
    return {c: bindparam(prefix + c, type_=table.c[c].type) for c in columns}


@functools.lru_cache(maxsize=16)
def _write_one(claim: bool, entry_cols: tuple | None, deposit_cols: tuple):
    """The PostgreSQL write of one deposit: SELECT (claims held, deposits inserted)."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    deposit = (
        pg_insert(DEPOSITS)
        .values(_bound(DEPOSITS, "d_", deposit_cols))
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(DEPOSITS.c.id)
        .cte("inserted")
    )
    counts = [select(func.count()).select_from(deposit).scalar_subquery()]
    ctes = []
    if claim:
        claimed = (
            update(LABELS)
            .where(
                LABELS.c.serial == bindparam("c_serial"),
                LABELS.c.first_deposit_id.is_(None),
            )
            .values(first_deposit_id=bindparam("c_deposit"))
            .returning(LABELS.c.serial)
            .cte("claimed")
        )
        counts.insert(0, select(func.count()).select_from(claimed).scalar_subquery())
    else:
        counts.insert(0, literal_column("0"))
    if entry_cols is not None:
        totals = pg_insert(TOTALS).values(
            _bound(TOTALS, "t_", ("household_id", "category_id", "day", "points"))
        )
        totals = totals.on_conflict_do_update(
            index_elements=["household_id", "category_id", "day"],
            set_={"points": TOTALS.c.points + totals.excluded.points},
        )
        ctes += [
            totals.returning(TOTALS.c.points).cte("totals"),
            ENTRIES.insert()
            .values(_bound(ENTRIES, "e_", entry_cols))
            .returning(ENTRIES.c.id)
            .cte("entry"),
            update(ACCOUNTS)
            .where(ACCOUNTS.c.household_id == bindparam("a_household"))
            .values(
                balance=bindparam("a_balance"),
                entry_count=bindparam("a_count"),
                updated_at=bindparam("a_at", type_=ACCOUNTS.c.updated_at.type),
            )
            .returning(ACCOUNTS.c.household_id)
            .cte("account"),
        ]
    return select(*counts).add_cte(*ctes)


def write_one(
    conn: Connection,
    deposit: dict,
    *,
    claim: dict | None,
    entry: dict | None,
    account: tuple[int, ledger.AccountState, dt.datetime] | None,
    total: tuple[int, int, dt.date, int] | None,
) -> tuple[int, int]:
    """Write one deposit in one PostgreSQL statement; return (claims held, deposits inserted).

    ``claim``: {serial: deposit id} or None; ``entry`` (the ledger row),
    ``account`` (household, its advanced state, time) and ``total``
    (household, category, day, points) come together for a credit.
    """
    values = {"d_" + k: v for k, v in deposit.items()}
    if claim:
        [(serial, deposit_id)] = claim.items()
        values.update(c_serial=serial, c_deposit=deposit_id)
    entry_cols = None
    if entry is not None:
        entry_cols = tuple(entry)
        values.update({"e_" + k: v for k, v in entry.items()})
        household_id, state, at = account
        values.update(
            a_household=household_id,
            a_balance=state.balance,
            a_count=state.entry_count,
            a_at=at,
        )
        values.update(
            zip(("t_household_id", "t_category_id", "t_day", "t_points"), total, strict=True)
        )
    stmt = _write_one(bool(claim), entry_cols, tuple(deposit))
    claimed, inserted = conn.execute(stmt, values).one()
    return claimed, inserted
