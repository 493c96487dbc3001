"""One deposit in one round trip on PostgreSQL: the ``sortpoint_ingest_one`` function.

A kiosk uploads each bag as it goes in, so a request of one deposit is the
common case, and on PostgreSQL its cost is mostly round trips (BEGIN, the
nonce, the locking read, the write, COMMIT).  This PL/pgSQL function does what
those statements do in one call, run on a connection in autocommit (one
statement, one transaction) through the bare psycopg cursor.

It takes only the new-deposit, label-claiming case, with everything Python
decides already decided (``ingest.apply_one_fn``: checks, rule, points before
the cap, local day, content hash, the ledger entry's reason and keys).  The
function records the nonce only if the kept kiosk copy is still current (the
same test as ``auth._insert_nonce_if_current``), locks the household's account
``FOR NO KEY UPDATE`` (the ingest lock order), claims the label, applies the
daily cap against the locked day's total with ``points.score``'s formula, and
writes the daily total, ledger entry, account and deposit.  Anything else -
a replayed nonce, a stale copy, an unknown or revoked label, a label claimed
before, an id recorded before - raises one of ``FALLBACK_SQLSTATES``: the whole
statement rolls back (the nonce too) and the request takes the general path,
which answers it exactly as before.

Created by Alembic revision 0002 and by ``schema.create_schema``; never on SQLite.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

NAME = "sortpoint_ingest_one"

#: SQLSTATEs after which the request takes the general path: the function's
#: own refusals (SPF01-04), lock and uniqueness races, and a database not
#: upgraded yet (no such function)
FALLBACK_SQLSTATES = frozenset(
    {"SPF01", "SPF02", "SPF03", "SPF04", "40P01", "40001", "23505", "42883"}
)

_ARGS = (
    ("p_kiosk_id", "text"),
    ("p_nonce", "text"),
    ("p_now", "timestamptz"),
    ("p_secret", "text"),
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
    ("p_rule_id", "integer"),
    ("p_points", "integer"),
    ("p_reason", "text"),
    ("p_daily_cap", "integer"),
    ("p_entry_kind", "text"),
    ("p_entry_reason", "text"),
    ("p_source_type", "text"),
    ("p_source_id", "text"),
    ("p_idempotency_key", "text"),
)
ARG_NAMES = tuple(name for name, _ in _ARGS)
_SIGNATURE = ", ".join(sql_type for _, sql_type in _ARGS)

CREATE_SQL = f"""
CREATE OR REPLACE FUNCTION {NAME}({", ".join(f"{n} {t}" for n, t in _ARGS)})
RETURNS TABLE (out_points integer, out_reason text, out_balance bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    v_household integer;
    v_code text;
    v_revoked timestamptz;
    v_community integer;
    v_balance bigint;
    v_count integer;
    v_total integer;
    v_room integer;
    v_points integer := p_points;
    v_reason text := p_reason;
BEGIN
    -- the nonce, only while the caller's kept kiosk copy is current
    INSERT INTO request_nonces (kiosk_id, nonce, seen_at)
    SELECT p_kiosk_id, p_nonce, p_now
     WHERE EXISTS (SELECT 1 FROM kiosks k JOIN communities c ON c.id = k.community_id
                    WHERE k.id = p_kiosk_id AND k.enabled AND k.secret = p_secret
                      AND c.timezone = p_timezone AND c.label_public_key = p_label_key)
       AND (SELECT coalesce(max(r.id), 0) FROM points_rules r) = p_rules_mark
    ON CONFLICT (kiosk_id, nonce) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'replayed nonce or stale kiosk copy' USING ERRCODE = 'SPF01';
    END IF;
    -- the household's account lock serialises its labels, totals and entries
    SELECT l.household_id, h.code, l.revoked_at, l.community_id, a.balance, a.entry_count
      INTO v_household, v_code, v_revoked, v_community, v_balance, v_count
      FROM labels l
      JOIN households h ON h.id = l.household_id
      JOIN accounts a ON a.household_id = l.household_id
     WHERE l.serial = p_serial
       FOR NO KEY UPDATE OF a;
    IF NOT FOUND OR v_code <> p_household_code OR v_community <> p_community_id
       OR (v_revoked IS NOT NULL AND v_revoked <= p_occurred_at) THEN
        RAISE EXCEPTION 'label for the general path' USING ERRCODE = 'SPF02';
    END IF;
    UPDATE labels SET first_deposit_id = p_deposit_id
     WHERE serial = p_serial AND first_deposit_id IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'label claimed before' USING ERRCODE = 'SPF03';
    END IF;
    IF p_daily_cap IS NOT NULL THEN
        SELECT t.points INTO v_total FROM daily_totals t
         WHERE t.household_id = v_household AND t.category_id = p_category_id
           AND t.day = p_local_day;
        -- points.score: room = max(0, cap - credited today); more than room is capped
        v_room := greatest(0, p_daily_cap - coalesce(v_total, 0));
        IF v_points > v_room THEN
            v_points := v_room;
            v_reason := 'daily_cap';
        END IF;
    END IF;
    IF v_points > 0 THEN
        INSERT INTO daily_totals AS t (household_id, category_id, day, points)
        VALUES (v_household, p_category_id, p_local_day, v_points)
        ON CONFLICT (household_id, category_id, day)
        DO UPDATE SET points = t.points + excluded.points;
        v_balance := v_balance + v_points;
        v_count := v_count + 1;
        INSERT INTO ledger_entries (household_id, kind, amount, balance_after, reason,
                                    source_type, source_id, idempotency_key, created_at)
        VALUES (v_household, p_entry_kind, v_points, v_balance, p_entry_reason,
                p_source_type, p_source_id, p_idempotency_key, p_now);
        UPDATE accounts SET balance = v_balance, entry_count = v_count, updated_at = p_now
         WHERE household_id = v_household;
    END IF;
    INSERT INTO deposits (id, kiosk_id, community_id, household_id, label_serial, door,
                          category_id, net_g, occurred_at, local_day, received_at, status,
                          points, rule_id, reason, content_hash)
    VALUES (p_deposit_id, p_kiosk_id, p_community_id, v_household, p_serial, p_door,
            p_category_id, p_net_g, p_occurred_at, p_local_day, p_now, 'accepted',
            v_points, p_rule_id, v_reason, p_content_hash)
    ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'deposit id recorded before' USING ERRCODE = 'SPF04';
    END IF;
    out_points := v_points;
    out_reason := v_reason;
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


def call(engine, args: dict) -> tuple[int, str | None, int] | None:
    """Run the function in autocommit on a pooled connection; None: take the general path.

    ``args`` maps every name of ``ARG_NAMES``.  Returns (points, reason,
    balance) of the credited deposit.  Errors other than the fallback ones
    propagate; a connection they broke is dropped from the pool.
    """
    import psycopg

    values = tuple(args[name] for name in ARG_NAMES)
    raw = engine.raw_connection()
    pg = raw.driver_connection
    try:
        pg.autocommit = True
        try:
            return pg.execute(CALL_SQL, values).fetchone()
        except psycopg.Error as exc:
            sqlstate = getattr(exc, "sqlstate", None)
            if sqlstate == "42883" and not _missing_logged:
                _note_missing()
            if sqlstate in FALLBACK_SQLSTATES:
                log.debug("one-deposit function fell back: %s", sqlstate)
                return None
            raise
        finally:
            if not pg.closed:
                pg.autocommit = False
    finally:
        if pg.closed:
            raw.invalidate()
        raw.close()
