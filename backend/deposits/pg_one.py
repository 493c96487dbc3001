"""One deposit in one round trip on PostgreSQL: the ``sortpoint_ingest_one`` function.

A kiosk uploads each bag as it goes in, so a request of one deposit is the
common case, and on PostgreSQL its cost is mostly round trips (BEGIN, the
nonce, the locking read, the write, COMMIT).  This PL/pgSQL function does what
those statements do in one call, run on a connection in autocommit (one
statement, one transaction) through the bare psycopg cursor: one of the
engine's direct connections (``_Direct``), kept in autocommit beside its pool.

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
import os
import threading
import weakref

from sqlalchemy import event

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


class _Direct:
    """Autocommit psycopg connections of one engine for ``call``, kept beside its pool.

    The pool costs a checkout, two autocommit switches and a reset on return
    for a call that needs none of them: the function is one statement in its
    own transaction.  So each engine keeps a stack of connections that stay
    in autocommit, each with its cursor (whose adapters stay warm), taken by
    one thread for one call and put back after it; at most as many as threads
    call at once, beside the pool's own connections.  They come from the
    engine (``raw_connection().detach()``: its URL, connect arguments and
    connect events) and leave it when:

    * a call raised ``psycopg.OperationalError`` (other than a fallback
      SQLSTATE) or left the connection closed, broken or not idle: it is
      closed, the next call connects afresh.  When the connection itself is
      lost, the idle ones are closed too: after a server restart one call
      fails, as with the pool (none with the engine's ``pool_pre_ping``,
      which tests an idle one first);
    * the engine is disposed (``engine_disposed``): idle ones are closed now,
      ones in use when they come back;
    * the process forked (gunicorn and granian fork workers after import): the
      child drops the parent's without closing them (psycopg closes a
      connection only in the process that opened it) and opens its own.
    """

    def __init__(self, pre_ping: bool = False) -> None:
        #: test an idle connection with a round trip before use, as the pool
        #: does with ``SORTPOINT_DB_PRE_PING=1``
        self.pre_ping = pre_ping
        self._pid = os.getpid()
        self._generation = 0
        self._idle: list[tuple] = []
        self._lock = threading.Lock()

    def take(self) -> tuple | None:
        """Return an idle (connection, cursor, generation), or None: connect one."""
        if self._pid != os.getpid():
            self._forked()
        try:
            slot = self._idle.pop()  # atomic: no lock on the common path
        except IndexError:
            return None
        if slot[2] != self._generation:  # put back while the engine was disposed
            _close(slot[0])
            return None
        return slot

    def give(self, slot: tuple, *, keep: bool) -> None:
        """Put a slot back after its call, or close it if it may not be reused."""
        conn = slot[0]
        if (
            keep
            and slot[2] == self._generation
            and self._pid == os.getpid()
            and not conn.closed
            and not conn.broken
            and conn.info.transaction_status == _IDLE
        ):
            self._idle.append(slot)
            return
        _close(conn)

    def dispose(self) -> None:
        """Close the idle connections; those in use close when they come back."""
        if self._pid != os.getpid():
            self._forked()
            return
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for conn, _cursor, _generation in idle:
            _close(conn)

    def _forked(self) -> None:
        # the parent's connections are the parent's: never close them here
        self._lock = threading.Lock()
        self._idle = []
        self._generation += 1
        self._pid = os.getpid()


_IDLE = None  # psycopg.pq.TransactionStatus.IDLE, set on first use
_directs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_directs_lock = threading.Lock()


def _direct(engine) -> _Direct:
    direct = _directs.get(engine)
    if direct is None:
        with _directs_lock:
            direct = _directs.get(engine)
            if direct is None:
                direct = _directs[engine] = _Direct(getattr(engine.pool, "_pre_ping", False))
                event.listen(engine, "engine_disposed", _on_dispose)
    return direct


def _on_dispose(engine) -> None:
    direct = _directs.get(engine)
    if direct is not None:
        direct.dispose()


def _connect(engine, direct: _Direct) -> tuple:
    global _IDLE
    from psycopg.pq import TransactionStatus

    _IDLE = TransactionStatus.IDLE
    generation = direct._generation
    raw = engine.raw_connection()
    conn = raw.driver_connection
    raw.detach()  # ours now: the pool's slot connects afresh when next needed
    try:
        conn.autocommit = True
        return conn, conn.cursor(), generation
    except BaseException:
        _close(conn)
        raise


def _alive(slot: tuple) -> bool:
    """The pool's pre-ping for a direct connection: one round trip."""
    import psycopg

    try:
        slot[1].execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


def _close(conn) -> None:
    try:
        conn.close()
    except Exception:  # already broken: nothing to release
        log.debug("closing a one-deposit connection failed", exc_info=True)


def call(engine, args: dict) -> tuple[int, str | None, int] | None:
    """Run the function in autocommit on the engine's direct connection; None: take the general path.

    ``args`` maps every name of ``ARG_NAMES``.  Returns (points, reason,
    balance) of the credited deposit.  Errors other than the fallback ones
    propagate; a connection they broke is closed (``_Direct``).
    """
    import psycopg

    values = tuple(args[name] for name in ARG_NAMES)
    direct = _direct(engine)
    slot = direct.take()
    if slot is not None and direct.pre_ping and not _alive(slot):
        direct.give(slot, keep=False)
        slot = None
    if slot is None:
        slot = _connect(engine, direct)
    keep = True
    try:
        cursor = slot[1]
        cursor.execute(CALL_SQL, values)
        return cursor.fetchone()
    except psycopg.Error as exc:
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate == "42883" and not _missing_logged:
            _note_missing()
        if sqlstate in FALLBACK_SQLSTATES:  # a race or a refusal: the connection is fine
            log.debug("one-deposit function fell back: %s", sqlstate)
            return None
        if isinstance(exc, psycopg.OperationalError):
            keep = False
            if slot[0].broken or slot[0].closed:
                # the server went away (restart, failover): so did the idle ones,
                # as SQLAlchemy assumes of its pool after a disconnect
                direct.dispose()
        raise
    except BaseException:
        keep = False
        raise
    finally:
        direct.give(slot, keep=keep)
