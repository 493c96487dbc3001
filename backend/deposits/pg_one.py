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
import os
import threading
import weakref

from sqlalchemy import event

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


def call(engine, args: dict) -> int | None:
    """Run the function in autocommit; return the household's balance, or None: the general path.

    ``args`` maps every name of ``ARG_NAMES``.  Errors other than the
    fallback ones propagate.
    """
    values = tuple(args[name] for name in ARG_NAMES)
    if DIRECT:
        return _call_direct(engine, values)
    return _call_pooled(engine, values)


#: run the call on the engine's direct connections (``_Direct``) rather than its pool
DIRECT = True


def _fell_back(exc) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "42883" and not _missing_logged:
        _note_missing()
    if sqlstate in FALLBACK_SQLSTATES:  # an assumption that did not hold, or a race
        log.debug("one-deposit function fell back: %s", sqlstate)
        return True
    return False


def _call_pooled(engine, values: tuple) -> int | None:
    """The call on a connection checked out of the engine's pool, switched to autocommit."""
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


def _call_direct(engine, values: tuple) -> int | None:
    """The call on one of the engine's direct connections (``_Direct``)."""
    import psycopg

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
        return cursor.fetchone()[0]
    except psycopg.Error as exc:
        if _fell_back(exc):  # the connection is fine
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
