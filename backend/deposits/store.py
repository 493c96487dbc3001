"""The SQL of deposit ingest: the reads the plan needs and the general writer of what it decided.

Prebuilt Core statements (bind parameters; ``= ANY(array)`` lists on
PostgreSQL, expanding IN lists on SQLite, see ``core.sql.in_list``), so a
request pays neither statement construction nor compilation, executed on the
session's Connection rather than through the ORM.  Rows read are returned
named (``plan.Recorded``, ``plan.LabelRow``, ``AccountState``), never as
positions.  Writes of many rows are executemany calls, which psycopg
pipelines.  ``write`` runs on both databases; PostgreSQL's one-deposit call
is the other writer (``pg_one``).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from backend.core.sql import MAX_IN_PARAMS, chunked, in_list, insert_ignore_for, params
from backend.deposits.context import (  # noqa: F401 - where callers have found them
    RULES_MARK,
    CategoryInfo,
    Door,
    KioskContext,
    KioskRef,
    Setup,
    kiosk_context,
)
from backend.deposits.models import Deposit
from backend.deposits.plan import LabelRow, Plan, Recorded
from backend.ledger import points
from backend.ledger import services as ledger
from backend.ledger.models import Account
from backend.registry.models import Household, Label

DEPOSITS = Deposit.__table__
LABELS = Label.__table__
HOUSEHOLDS = Household.__table__
ACCOUNTS = Account.__table__


class RaceLost(Exception):
    """A concurrent transaction changed what this one read; retry it whole."""


# ------------------------------------------------------------------ reads


@functools.lru_cache(maxsize=4)
def _recorded(dialect: str):
    return select(
        DEPOSITS.c.id,
        DEPOSITS.c.content_hash,
        DEPOSITS.c.status,
        DEPOSITS.c.points,
        DEPOSITS.c.household_id,
        DEPOSITS.c.reason,
    ).where(in_list(DEPOSITS.c.id, "ids", dialect))


def recorded(conn: Connection, ids) -> dict[uuid.UUID, Recorded]:
    """Return the deposits recorded under ``ids``."""
    found = {}
    for chunk in chunked(sorted(ids)):
        for row in conn.execute(_recorded(conn.dialect.name), {"ids": chunk}):
            found[row.id] = Recorded(
                row.content_hash, row.status, row.points, row.household_id, row.reason
            )
    return found


_LABEL_COLS = (
    LABELS.c.serial,
    LABELS.c.household_id,
    HOUSEHOLDS.c.code.label("household_code"),
    LABELS.c.community_id,
    LABELS.c.revoked_at,
    LABELS.c.first_deposit_id,
)


def _label(row) -> LabelRow:
    return LabelRow(
        row.household_id,
        row.household_code,
        row.community_id,
        row.revoked_at,
        row.first_deposit_id,
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


def read_labels(conn: Connection, serials) -> dict[str, LabelRow]:
    """Return the labels of ``serials`` (unknown ones are missing), without a lock."""
    found: dict[str, LabelRow] = {}
    for chunk in chunked(sorted(set(serials))):
        for row in conn.execute(_read_labels(conn.dialect.name), {"serials": chunk}):
            found[row.serial] = _label(row)
    return found


def labels_with_locked_accounts(
    session: Session, serials
) -> tuple[dict[str, LabelRow], dict[int, ledger.AccountState]]:
    """Read labels and lock their households' accounts, ascending.

    One statement when every household has its account (the usual case);
    otherwise the missing accounts are created and locked through the ledger.
    """
    wanted = sorted(set(serials))
    conn = session.connection()
    if len(wanted) > MAX_IN_PARAMS:
        labels = read_labels(conn, wanted)
        return labels, ledger.lock_accounts(session, {r.household_id for r in labels.values()})
    labels: dict[str, LabelRow] = {}
    accounts: dict[int, ledger.AccountState] = {}
    for row in conn.execute(_lock_label_accounts(conn.dialect.name), {"serials": wanted}):
        labels[row.serial] = _label(row)
        accounts[row.household_id] = ledger.AccountState(row.balance, row.entry_count)
    missing = [s for s in wanted if s not in labels]
    if missing:
        # unknown serials, or households without an account row yet
        extra = read_labels(conn, missing)
        if extra:
            labels.update(extra)
            accounts.update(ledger.lock_accounts(session, {r.household_id for r in extra.values()}))
    return labels, accounts


# ------------------------------------------------------------------ writes

_CLAIM = (
    update(LABELS)
    .where(LABELS.c.serial == bindparam("b_serial"), LABELS.c.first_deposit_id.is_(None))
    .values(first_deposit_id=bindparam("b_deposit"))
)


def claim_labels(conn: Connection, claims: dict[str, uuid.UUID]) -> int:
    """Claim each label for its deposit if still unclaimed; return how many claims held.

    ``UPDATE ... WHERE first_deposit_id IS NULL`` per label (ascending
    serial): a label claimed already, by a transaction that committed after
    the plan's read, is left alone and not counted.
    """
    if not claims:
        return 0
    rows = [{"b_serial": s, "b_deposit": claims[s]} for s in sorted(claims)]
    return conn.execute(_CLAIM, params(rows)).rowcount


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


def write(
    session: Session,
    kiosk: KioskContext,
    plan: Plan,
    accounts: dict[int, ledger.AccountState],
    now: dt.datetime,
) -> None:
    """Write what ``plan`` decided, in lock order; raise ``RaceLost`` if a read went stale.

    Label claims, daily totals, ledger entries and accounts (``accounts``
    are the locked states the plan was made on; the ledger advances them),
    deposits.  A claim or an id taken by a transaction that committed after
    the plan's reads makes a count come back short: the caller retries the
    whole transaction, whose new reads see it.
    """
    conn = session.connection()
    if claim_labels(conn, plan.claims) != len(plan.claims):
        raise RaceLost("a label was claimed concurrently")
    points.add_daily_totals(session, plan.increments)
    if plan.postings:
        # the deposit id is the idempotency key: its unique index backs up the
        # deposits primary key, so the ledger needs no extra look-up here
        ledger.post_many(
            session, plan.postings, locked=accounts, check_keys=False, return_ids=False
        )
        for household_id, balance in plan.balances.items():
            if accounts[household_id].balance != balance:
                raise AssertionError("ledger and ingest plan disagree on a balance")
    if plan.deposits:
        rows = [_deposit_row(kiosk, d, now) for d in plan.deposits]
        inserted = insert_deposits(conn, rows)
        if inserted != len(rows):
            raise RaceLost(f"{len(rows) - inserted} deposit ids were recorded concurrently")


def _deposit_row(kiosk: KioskContext, d, now: dt.datetime) -> dict:
    item = d.item
    return {
        "id": item.id,
        "kiosk_id": kiosk.ref.kiosk_id,
        "community_id": kiosk.ref.community_id,
        "household_id": d.household_id,
        "label_serial": d.serial,
        "door": item.door,
        "category_id": d.category_id,
        "net_g": item.net_g,
        "occurred_at": item.occurred_at,
        "local_day": d.local_day,
        "received_at": now,
        "status": d.status,
        "points": d.award.points,
        "rule_id": d.award.rule_id,
        "reason": d.award.reason,
        "content_hash": d.content_hash,
    }
