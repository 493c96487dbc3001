"""One deposit in one round trip on PostgreSQL: the ``sortpoint_ingest_one`` function.

A kiosk uploads each bag as it goes in, so a request of one deposit is the
common case, and on PostgreSQL its cost is mostly round trips (BEGIN, the
nonce, the locking read, the write, COMMIT).  This PL/pgSQL function is the
one-deposit *writer*: it writes what ``plan.assume_ordinary`` decided, in one
call on a connection in autocommit (one statement, one transaction) through
the bare psycopg cursor.

It decides nothing.  The plan was made in Python before anything was read,
on stated assumptions; the function checks each against the locked rows and
raises one of ``FALLBACK_SQLSTATES`` when one does not hold, which rolls the
whole statement back (the nonce too) and sends the request to the general
path, where the same plan is made on the rows as read:

* the kept kiosk copy is current and the nonce is new: the statement of
  ``context.nonce_if_current_sql``, spelled in here (SPF01);
* the label was issued to the household and community the payload names and
  is not revoked; the household has an account (SPF02), locked ``FOR NO KEY
  UPDATE`` (the ingest lock order);
* the label was never claimed: the claim ``UPDATE ... WHERE first_deposit_id
  IS NULL`` (SPF03);
* the day's total is at most ``p_max_credited``, the most under which the
  plan's award holds (``points.award_holds_up_to``; NULL: any) (SPF05);
* the deposit id is new (SPF04).

Then it writes the plan's daily total increment, ledger entry (the balance
after it and the account's new balance and count, which only the locked
row knows) and deposit row, and returns the balance.

Created by ``schema.create_schema`` from ``CREATE_SQL`` below and by the newest
Alembic revision that spells the same text out (a test holds them equal);
never on SQLite.
"""

from __future__ import annotations

import logging

from backend.deposits.context import nonce_if_current_sql

log = logging.getLogger(__name__)

NAME = "sortpoint_ingest_one"

#: SQLSTATEs after which the request takes the general path: an assumption of
#: the plan that did not hold (SPF01-05), lock and uniqueness races, and a
#: database not upgraded yet (no such function)
FALLBACK_SQLSTATES = frozenset(
    {"SPF01", "SPF02", "SPF03", "SPF04", "SPF05", "40P01", "40001", "23505", "42883"}
)

_ARGS = (
    ("p_kiosk_id", "text"),
    ("p_nonce", "text"),
    ("p_now", "timestamptz"),
    ("p_secret_as_stored", "text"),
    ("p_timezone", "text"),
    ("p_label_key", "text"),
    ("p_rules_mark", "integer"),
    ("p_serial", "text"),
    ("p_household_code", "text"),
    ("p_community_id", "integer"),
    ("p_deposit_id", "uuid"),
    ("p_door", "integer"),
    ("p_category_id", "integer"),
    ("p_net_g", "integer"),
    ("p_occurred_at", "timestamptz"),
    ("p_local_day", "date"),
    ("p_content_hash", "text"),
    ("p_status", "text"),
    ("p_rule_id", "integer"),
    ("p_points", "integer"),
    ("p_reason", "text"),
    ("p_max_credited", "integer"),
    ("p_entry_kind", "text"),
    ("p_entry_reason", "text"),
    ("p_source_type", "text"),
    ("p_source_id", "text"),
    ("p_idempotency_key", "text"),
)
ARG_NAMES = tuple(name for name, _ in _ARGS)
_SIGNATURE = ", ".join(sql_type for _, sql_type in _ARGS)

_NONCE = nonce_if_current_sql(
    kiosk_id="p_kiosk_id",
    nonce="p_nonce",
    seen_at="p_now",
    secret_as_stored="p_secret_as_stored",
    timezone="p_timezone",
    label_key="p_label_key",
    rules_mark="p_rules_mark",
)

CREATE_SQL = f"""
CREATE OR REPLACE FUNCTION {NAME}({", ".join(f"{n} {t}" for n, t in _ARGS)})
RETURNS TABLE (out_balance bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_household integer;
    v_balance bigint;
    v_count integer;
BEGIN
    -- assumed: the kept kiosk copy is current and the nonce is new
    {_NONCE};
    IF NOT FOUND THEN
        RAISE EXCEPTION 'replayed nonce or stale kiosk copy' USING ERRCODE = 'SPF01';
    END IF;
    -- assumed: the label is this household's, of this community, not revoked; the
    -- household's account lock serialises its labels, totals and entries
    SELECT l.household_id, a.balance, a.entry_count
      INTO v_household, v_balance, v_count
      FROM labels l
      JOIN households h ON h.id = l.household_id
      JOIN accounts a ON a.household_id = l.household_id
     WHERE l.serial = p_serial AND h.code = p_household_code
       AND l.community_id = p_community_id AND l.revoked_at IS NULL
       FOR NO KEY UPDATE OF a;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'label for the general path' USING ERRCODE = 'SPF02';
    END IF;
    -- assumed: the label was never claimed
    UPDATE labels SET first_deposit_id = p_deposit_id
     WHERE serial = p_serial AND first_deposit_id IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'label claimed before' USING ERRCODE = 'SPF03';
    END IF;
    -- assumed: the day's total is at most what the plan's award holds for
    IF p_max_credited IS NOT NULL AND coalesce(
           (SELECT t.points FROM daily_totals t
             WHERE t.household_id = v_household AND t.category_id = p_category_id
               AND t.day = p_local_day), 0) > p_max_credited THEN
        RAISE EXCEPTION 'the day total changes the award' USING ERRCODE = 'SPF05';
    END IF;
    IF p_entry_kind IS NOT NULL THEN
        INSERT INTO daily_totals AS t (household_id, category_id, day, points)
        VALUES (v_household, p_category_id, p_local_day, p_points)
        ON CONFLICT (household_id, category_id, day)
        DO UPDATE SET points = t.points + excluded.points;
        v_balance := v_balance + p_points;
        v_count := v_count + 1;
        INSERT INTO ledger_entries (household_id, kind, amount, balance_after, reason,
                                    source_type, source_id, idempotency_key, created_at)
        VALUES (v_household, p_entry_kind, p_points, v_balance, p_entry_reason,
                p_source_type, p_source_id, p_idempotency_key, p_now);
        UPDATE accounts SET balance = v_balance, entry_count = v_count, updated_at = p_now
         WHERE household_id = v_household;
    END IF;
    -- assumed: the deposit id is new
    INSERT INTO deposits (id, kiosk_id, community_id, household_id, label_serial, door,
                          category_id, net_g, occurred_at, local_day, received_at, status,
                          points, rule_id, reason, content_hash)
    VALUES (p_deposit_id, p_kiosk_id, p_community_id, v_household, p_serial, p_door,
            p_category_id, p_net_g, p_occurred_at, p_local_day, p_now, p_status,
            p_points, p_rule_id, p_reason, p_content_hash)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'deposit id recorded before' USING ERRCODE = 'SPF04';
    END IF;
    out_balance := v_balance;
    RETURN NEXT;
END
$fn$
"""

DROP_SQL = f"DROP FUNCTION IF EXISTS {NAME}({_SIGNATURE})"

# explicit casts: psycopg sends Python ints as int2/int4/int8 by value and str
# as unknown, and a function call must resolve to exactly this signature
CALL_SQL = f"SELECT * FROM {NAME}({', '.join(f'%s::{t}' for _, t in _ARGS)})"


_missing_logged = False


def _note_missing() -> None:
    global _missing_logged
    _missing_logged = True
    log.warning("%s is missing: run `sortpoint db upgrade`; one-deposit requests are slower", NAME)


def install(conn) -> None:
    """Create (or replace) the function on a PostgreSQL connection; nothing on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(CREATE_SQL)


def drop(conn) -> None:
    """Drop the function on PostgreSQL; nothing on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(DROP_SQL)


def call(engine, args: dict) -> int | None:
    """Run the function in autocommit; return the household's balance, or None: the general path.

    ``args`` maps every name of ``ARG_NAMES``.  Errors other than the
    fallback ones propagate.
    """
    return _call_pooled(engine, tuple(args[name] for name in ARG_NAMES))


def _fell_back(exc) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "42883" and not _missing_logged:
        _note_missing()
    if sqlstate in FALLBACK_SQLSTATES:  # an assumption that did not hold, or a race
        log.debug("one-deposit function fell back: %s", sqlstate)
        return True
    return False


def _call_pooled(engine, values: tuple) -> int | None:
    """The call on a connection of the engine's pool, in autocommit for this one statement.

    Switching psycopg's autocommit sends nothing to the server, and the
    pool's reset on return sends no ROLLBACK to an idle connection; the
    cursor is kept with the connection.  A lost connection is invalidated,
    as SQLAlchemy does for its own statements (and ``SORTPOINT_DB_PRE_PING``
    tests it before use, as for every checkout).  Measured against a pool
    of direct autocommit connections of its own (docs/performance.md): the
    same wall time, 0.03 ms more CPU a call.
    """
    import psycopg

    fairy = engine.raw_connection()
    try:
        conn = fairy.driver_connection
        conn.autocommit = True
        try:
            cursor = fairy.info.get(_CURSOR)
            if cursor is None or cursor.closed:
                cursor = fairy.info[_CURSOR] = conn.cursor()
            cursor.execute(CALL_SQL, values)
            return cursor.fetchone()[0]
        except psycopg.Error as exc:
            if _fell_back(exc):
                return None
            if isinstance(exc, psycopg.OperationalError):
                fairy.invalidate(exc)
            raise
        finally:
            if not (conn.closed or conn.broken):
                conn.autocommit = False
    finally:
        fairy.close()


_CURSOR = "sortpoint.pg_one.cursor"
