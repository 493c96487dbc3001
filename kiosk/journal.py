"""The kiosk's durable deposit journal and its bounded outbox (SQLite).

Every deposit is a row whose id the kiosk chooses.  The flow writes it twice,
each time committed and fsynced (WAL, ``synchronous=FULL``) before the door
moves:

    begin_deposit()   -> "open"         before the door unlocks
    finish_deposit()  -> "recorded"     before the door locks (net_g > 0: outbox)
                      -> "empty"        (net_g <= 0: nothing to upload)
    interrupt()       -> "interrupted"  never uploaded, kept for staff

The syncer uploads "recorded" rows oldest first and stores the backend's
answer: accepted/flagged/duplicate -> "synced", rejected -> "rejected" (never
retried), conflict -> "conflict" plus a fault.  A deposit the backend cannot
even parse (a 400: a kiosk bug) is held back from the queue with a fault, so it
cannot block the deposits behind it; ``requeue`` puts it back.  After a crash, ``open_deposits``
lists the rows the station must resolve; a row is never deleted unanswered.

The schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS`` lists the
steps from each version to the next, so a later release can upgrade a journal
in place, and a journal written by a newer release is refused, not guessed at.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path

from kiosk import JournalError, OutboxFull

__all__ = ["Journal", "JournalDeposit", "JournalError", "OutboxFull", "SCHEMA_VERSION"]

STATES = ("open", "recorded", "empty", "interrupted", "synced", "rejected", "conflict")
SYNCED_STATUSES = ("accepted", "flagged", "duplicate")

_V1 = """
CREATE TABLE deposits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    label TEXT NOT NULL,
    household TEXT NOT NULL,
    serial TEXT NOT NULL,
    door INTEGER NOT NULL,
    category TEXT NOT NULL,
    before_g INTEGER NOT NULL,
    after_g INTEGER,
    net_g INTEGER,
    occurred_at TEXT,
    state TEXT NOT NULL CHECK (state IN ('open', 'recorded', 'empty', 'interrupted',
                                         'synced', 'rejected', 'conflict')),
    reason TEXT,
    created_at REAL NOT NULL,
    finished_at REAL,
    sync_status TEXT,
    points INTEGER,
    balance INTEGER,
    error_code TEXT,
    error_message TEXT,
    answered_at REAL
);
CREATE INDEX deposits_state_seq ON deposits (state, seq);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE faults (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    message TEXT NOT NULL,
    raised_at REAL NOT NULL,
    cleared_at REAL
);
CREATE UNIQUE INDEX faults_active_key ON faults (key) WHERE cleared_at IS NULL;
"""

# v2: a deposit the backend cannot parse (400) is held out of the upload queue
# for staff instead of blocking it; the backend's reason and original status
_V2 = """
ALTER TABLE deposits ADD COLUMN held_reason TEXT;
ALTER TABLE deposits ADD COLUMN sync_reason TEXT;
ALTER TABLE deposits ADD COLUMN original_status TEXT;
"""

# v3: every scan asks whether its label's serial was used here before (``serial_used``)
_V3 = """
CREATE INDEX deposits_serial ON deposits (serial);
"""

#: version -> the SQL that takes a journal from version - 1 to it
MIGRATIONS: dict[int, str] = {1: _V1, 2: _V2, 3: _V3}

#: states of a deposit whose label has reached, or will reach, the backend (an empty or
#: interrupted deposit never leaves the kiosk; a rejected one claimed nothing)
LABEL_CLAIMING_STATES = ("recorded", "synced")
SCHEMA_VERSION = max(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class JournalDeposit:
    """One journal row: the deposit, its local state and the backend's answer."""

    seq: int
    id: str
    label: str
    household: str
    serial: str
    door: int
    category: str
    before_g: int
    after_g: int | None
    net_g: int | None
    occurred_at: dt.datetime | None
    state: str
    reason: str | None
    created_at: float
    finished_at: float | None
    sync_status: str | None
    points: int | None
    balance: int | None
    error_code: str | None
    error_message: str | None
    answered_at: float | None
    #: why a recorded deposit is held back from upload for staff (None: queued)
    held_reason: str | None
    #: the backend's reason for fewer points (label_reused, daily_cap, ...)
    sync_reason: str | None
    #: for a duplicate answer: the status the deposit was first recorded with
    original_status: str | None

    def to_upload(self) -> dict:
        """Return the deposit as one item of ``POST /api/v1/deposits``."""
        return {
            "id": self.id,
            "label": self.label,
            "door": self.door,
            "category": self.category,
            "net_g": self.net_g,
            "occurred_at": self.occurred_at.isoformat(),
        }

    @property
    def answered(self) -> bool:
        """Return True once the backend's answer is stored."""
        return self.sync_status is not None

    def answer(self) -> dict | None:
        """Return the stored answer as the protocol's result item (reason included), or None."""
        if not self.answered:
            return None
        error = (
            {"code": self.error_code, "message": self.error_message} if self.error_code else None
        )
        return {
            "id": self.id,
            "status": self.sync_status,
            "points": self.points,
            "balance": self.balance,
            "reason": self.sync_reason,
            "original_status": self.original_status,
            "error": error,
        }


_COLUMNS = ", ".join(f.name for f in fields(JournalDeposit))


def _row_to_deposit(row: sqlite3.Row) -> JournalDeposit:
    values = dict(row)
    if values["occurred_at"] is not None:
        values["occurred_at"] = dt.datetime.fromisoformat(values["occurred_at"])
    return JournalDeposit(**values)


class Journal:
    """The deposit journal: one SQLite file, every write committed before returning."""

    def __init__(
        self,
        path: str | Path,
        *,
        outbox_limit: int = 100_000,
        outbox_warn_ratio: float = 0.5,
        clock: Callable[[], float] = time.time,
    ):
        if outbox_limit < 1:
            raise ValueError("outbox_limit must be at least 1")
        if not 0 < outbox_warn_ratio <= 1:
            raise ValueError("outbox_warn_ratio must be in (0, 1]")
        self.path = Path(path)
        self.outbox_limit = outbox_limit
        self.outbox_warn_ratio = outbox_warn_ratio
        self._clock = clock
        self._lock = threading.RLock()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # one connection shared by the flow and the sync thread, serialised by
        # our lock; autocommit mode so that we issue BEGIN IMMEDIATE ourselves
        self._conn = sqlite3.connect(
            str(self.path), timeout=30, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        try:
            self._configure()
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # -- set-up -------------------------------------------------------------------

    def _configure(self) -> None:
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise JournalError(f"journal {self.path}: cannot enable WAL (got {mode!r})")
        # FULL: the WAL is fsynced at every commit, so a committed deposit
        # survives power loss, not only a crash of the process
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=30000")

    def _migrate(self) -> None:
        with self._lock:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise JournalError(
                    f"journal {self.path} has schema version {version}, newer than this "
                    f"release understands ({SCHEMA_VERSION}); upgrade the kiosk software"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                with self._tx():
                    for statement in MIGRATIONS[target].split(";"):
                        if statement.strip():
                            self._conn.execute(statement)
                    self._conn.execute(f"PRAGMA user_version = {target}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """Run a write transaction: BEGIN IMMEDIATE ... COMMIT (fsynced), or roll back."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def settings(self) -> dict:
        """Return the durability settings in force (for selftest and tests)."""
        with self._lock:
            return {
                "journal_mode": self._conn.execute("PRAGMA journal_mode").fetchone()[0],
                "synchronous": self._conn.execute("PRAGMA synchronous").fetchone()[0],
                "schema_version": self._conn.execute("PRAGMA user_version").fetchone()[0],
            }

    # -- the deposit life cycle ---------------------------------------------------

    def begin_deposit(
        self, *, label: str, household: str, serial: str, door: int, category: str, before_g: int
    ) -> str:
        """Write a new "open" deposit and return its id; call BEFORE the door unlocks."""
        deposit_id = str(uuid.uuid4())
        with self._tx() as conn:
            pending = conn.execute(
                "SELECT count(*) FROM deposits WHERE state IN ('open', 'recorded')"
            ).fetchone()[0]
            if pending >= self.outbox_limit:
                raise OutboxFull(
                    f"outbox full: {pending} deposits await upload (limit {self.outbox_limit})"
                )
            conn.execute(
                "INSERT INTO deposits (id, label, household, serial, door, category, before_g,"
                " state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?)",
                (
                    deposit_id,
                    label,
                    household,
                    serial,
                    int(door),
                    category,
                    int(before_g),
                    self._clock(),
                ),
            )
        return deposit_id

    def finish_deposit(
        self, deposit_id: str, *, after_g: int, net_g: int, occurred_at: dt.datetime
    ) -> None:
        """Record the weighed result; call BEFORE the door locks.

        ``net_g > 0`` puts the deposit in the outbox ("recorded"); ``net_g <= 0``
        marks it "empty" (nothing went in, nothing to upload).
        """
        if occurred_at.tzinfo is None or occurred_at.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware")
        state = "recorded" if net_g > 0 else "empty"
        self._transition(
            deposit_id,
            "open",
            "state = ?, after_g = ?, net_g = ?, occurred_at = ?, finished_at = ?",
            (state, int(after_g), int(net_g), occurred_at.isoformat(), self._clock()),
        )

    def interrupt(self, deposit_id: str, reason: str) -> None:
        """Mark an open deposit "interrupted": kept for staff, never uploaded."""
        self._transition(
            deposit_id,
            "open",
            "state = 'interrupted', reason = ?, finished_at = ?",
            (reason, self._clock()),
        )

    def _transition(self, deposit_id: str, from_state: str, assignments: str, params: tuple):
        with self._tx() as conn:
            row = conn.execute("SELECT state FROM deposits WHERE id = ?", (deposit_id,)).fetchone()
            if row is None:
                raise JournalError(f"no deposit {deposit_id} in the journal")
            if row["state"] != from_state:
                raise JournalError(f"deposit {deposit_id} is {row['state']!r}, not {from_state!r}")
            conn.execute(f"UPDATE deposits SET {assignments} WHERE id = ?", (*params, deposit_id))

    # -- reading ------------------------------------------------------------------

    def get(self, deposit_id: str) -> JournalDeposit:
        """Return one deposit with every column; raise JournalError if unknown."""
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM deposits WHERE id = ?", (deposit_id,)
            ).fetchone()
        if row is None:
            raise JournalError(f"no deposit {deposit_id} in the journal")
        return _row_to_deposit(row)

    def _select(self, where: str, params: tuple, limit: int) -> list[JournalDeposit]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM deposits WHERE {where} ORDER BY seq LIMIT ?",
                (*params, int(limit)),
            ).fetchall()
        return [_row_to_deposit(row) for row in rows]

    def open_deposits(self) -> list[JournalDeposit]:
        """Return the "open" deposits (a crash left them unresolved), oldest first."""
        return self._select("state = 'open'", (), self.outbox_limit)

    def outbox(self, limit: int) -> list[JournalDeposit]:
        """Return up to ``limit`` recorded deposits to upload (not held), oldest first."""
        return self._select("state = 'recorded' AND held_reason IS NULL", (), limit)

    def deposits(
        self, states: tuple[str, ...] | None = None, limit: int = 100
    ) -> list[JournalDeposit]:
        """Return deposits (of ``states``, if given), oldest first."""
        if states is None:
            return self._select("1 = 1", (), limit)
        marks = ", ".join("?" for _ in states)
        return self._select(f"state IN ({marks})", tuple(states), limit)

    def serial_used(self, serial: str) -> bool:
        """Return True if a deposit with the label ``serial`` went, or will go, to the backend."""
        marks = ", ".join("?" for _ in LABEL_CLAIMING_STATES)
        with self._lock:
            row = self._conn.execute(
                f"SELECT 1 FROM deposits WHERE serial = ? AND state IN ({marks}) LIMIT 1",
                (serial, *LABEL_CLAIMING_STATES),
            ).fetchone()
        return row is not None

    def outbox_depth(self, *, include_held: bool = True) -> int:
        """Return how many recorded deposits await the backend's answer."""
        where = "state = 'recorded'" + ("" if include_held else " AND held_reason IS NULL")
        with self._lock:
            return self._conn.execute(f"SELECT count(*) FROM deposits WHERE {where}").fetchone()[0]

    def capacity_fault(self) -> str | None:
        """Return a fault message once the outbox reaches the warn ratio of its limit."""
        depth = self.outbox_depth()
        threshold = max(1, math.ceil(self.outbox_limit * self.outbox_warn_ratio))
        if depth < threshold:
            return None
        last = self.get_meta("last_sync_ok_at")
        since = f"; last successful sync at {_iso(last)}" if last else "; never synced"
        return (
            f"outbox holds {depth} of at most {self.outbox_limit} deposits awaiting upload"
            f"{since}: check the network and the backend before it fills"
        )

    # -- backend answers ----------------------------------------------------------

    def record_results(self, results: list[dict]) -> dict[str, int]:
        """Store the backend's answers by id; return how many of each status.

        accepted/flagged/duplicate -> "synced"; rejected -> "rejected" (never
        retried); conflict -> "conflict" and an active fault.  Answers for
        deposits that are not awaiting one are ignored (a retried batch).
        """
        counts: dict[str, int] = {}
        now = self._clock()
        with self._tx() as conn:
            for result in results:
                status = result.get("status")
                state = _state_for(status)
                error = result.get("error") or {}
                cur = conn.execute(
                    "UPDATE deposits SET state = ?, sync_status = ?, points = ?, balance = ?,"
                    " error_code = ?, error_message = ?, answered_at = ?, sync_reason = ?,"
                    " original_status = ?, held_reason = NULL"
                    " WHERE id = ? AND state = 'recorded'",
                    (
                        state,
                        status,
                        result.get("points"),
                        result.get("balance"),
                        error.get("code"),
                        error.get("message"),
                        now,
                        result.get("reason"),
                        result.get("original_status"),
                        str(result["id"]),
                    ),
                )
                if cur.rowcount == 0:
                    counts["ignored"] = counts.get("ignored", 0) + 1
                    continue
                counts[status] = counts.get(status, 0) + 1
                if state == "conflict":
                    self._raise_fault(
                        conn,
                        f"conflict:{result['id']}",
                        f"backend holds deposit {result['id']} with different content"
                        f" ({error.get('message') or 'conflict'}); staff must reconcile it",
                    )
        return counts

    # -- held deposits ---------------------------------------------------------------

    def hold(self, deposit_id: str, reason: str) -> None:
        """Keep a recorded deposit out of the upload queue for staff, and raise a fault."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE deposits SET held_reason = ? WHERE id = ? AND state = 'recorded'",
                (reason, deposit_id),
            )
            if cur.rowcount == 0:
                raise JournalError(f"deposit {deposit_id} is not awaiting upload; cannot hold it")
            self._update_held_fault(conn)

    def requeue(self, deposit_id: str) -> None:
        """Put a held, rejected or conflicting deposit back in the upload queue (staff action)."""
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE deposits SET state = 'recorded', held_reason = NULL, sync_status = NULL,"
                " points = NULL, balance = NULL, error_code = NULL, error_message = NULL,"
                " answered_at = NULL, sync_reason = NULL, original_status = NULL"
                " WHERE id = ? AND (state IN ('rejected', 'conflict')"
                " OR (state = 'recorded' AND held_reason IS NOT NULL))",
                (deposit_id,),
            )
            if cur.rowcount == 0:
                raise JournalError(f"deposit {deposit_id} is not held, rejected or in conflict")
            conn.execute(
                "UPDATE faults SET cleared_at = ? WHERE key = ? AND cleared_at IS NULL",
                (self._clock(), f"conflict:{deposit_id}"),
            )
            self._update_held_fault(conn)

    def _update_held_fault(self, conn: sqlite3.Connection) -> None:
        held = conn.execute(
            "SELECT count(*), max(held_reason) FROM deposits"
            " WHERE state = 'recorded' AND held_reason IS NOT NULL"
        ).fetchone()
        if held[0]:
            self._raise_fault(
                conn,
                "held_deposits",
                f"{held[0]} deposits held back from upload for staff (e.g. {held[1]})",
            )
        else:
            conn.execute(
                "UPDATE faults SET cleared_at = ? WHERE key = 'held_deposits'"
                " AND cleared_at IS NULL",
                (self._clock(),),
            )

    # -- faults and meta ----------------------------------------------------------

    def _raise_fault(self, conn: sqlite3.Connection, key: str, message: str) -> None:
        cur = conn.execute(
            "UPDATE faults SET message = ? WHERE key = ? AND cleared_at IS NULL", (message, key)
        )
        if cur.rowcount == 0:
            conn.execute(
                "INSERT INTO faults (key, message, raised_at) VALUES (?, ?, ?)",
                (key, message, self._clock()),
            )

    def raise_fault(self, key: str, message: str) -> None:
        """Set the active fault ``key`` (one per key; a repeat updates its message)."""
        with self._tx() as conn:
            self._raise_fault(conn, key, message)

    def clear_fault(self, key: str) -> None:
        """Clear the active fault ``key``, if any (its history stays)."""
        with self._tx() as conn:
            conn.execute(
                "UPDATE faults SET cleared_at = ? WHERE key = ? AND cleared_at IS NULL",
                (self._clock(), key),
            )

    def faults(self) -> list[dict]:
        """Return the active faults, oldest first (the outbox capacity fault included)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, message, raised_at FROM faults WHERE cleared_at IS NULL ORDER BY id"
            ).fetchall()
        active = [dict(row) for row in rows]
        capacity = self.capacity_fault()
        if capacity:
            active.append({"key": "outbox_capacity", "message": capacity, "raised_at": None})
        return active

    def set_meta(self, key: str, value) -> None:
        """Store a JSON-serialisable value under ``key`` (committed)."""
        text = json.dumps(value, sort_keys=True)
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO meta (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (key, text, self._clock()),
            )

    def get_meta(self, key: str, default=None):
        """Return the value stored under ``key``, or ``default``."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    # -- overview and upkeep --------------------------------------------------------

    def status(self) -> dict:
        """Return state counts, outbox depth and limit, last sync and active faults."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT state, count(*) AS n FROM deposits GROUP BY state"
            ).fetchall()
        counts = {state: 0 for state in STATES}
        counts.update({row["state"]: row["n"] for row in rows})
        with self._lock:
            held = self._conn.execute(
                "SELECT count(*) FROM deposits WHERE state = 'recorded' AND held_reason IS NOT NULL"
            ).fetchone()[0]
        return {
            "states": counts,
            "held": held,
            "outbox_depth": counts["recorded"],
            "outbox_limit": self.outbox_limit,
            "last_sync_at": self.get_meta("last_sync_at"),
            "last_sync_ok_at": self.get_meta("last_sync_ok_at"),
            "last_sync_error": self.get_meta("last_sync_error"),
            "faults": self.faults(),
        }

    def prune(self, older_than_s: float) -> int:
        """Delete synced deposits answered, and empty ones finished, more than ``older_than_s`` ago.

        Only rows the backend holds (synced) or that hold nothing (empty) go; open,
        recorded (queued or held), interrupted, rejected and conflict rows stay for
        the uploader or for staff.  Cleared faults older than the cut-off go too.
        Returns the number of deposits deleted.
        """
        cutoff = self._clock() - older_than_s
        with self._tx() as conn:
            cur = conn.execute(
                "DELETE FROM deposits WHERE (state = 'synced' AND answered_at < ?)"
                " OR (state = 'empty' AND finished_at < ?)",
                (cutoff, cutoff),
            )
            conn.execute(
                "DELETE FROM faults WHERE cleared_at IS NOT NULL AND cleared_at < ?", (cutoff,)
            )
        return cur.rowcount

    def close(self) -> None:
        """Checkpoint the WAL and close the database (a second close does nothing)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _state_for(status) -> str:
    if status in SYNCED_STATUSES:
        return "synced"
    if status in ("rejected", "conflict"):
        return status
    raise JournalError(f"unknown deposit status {status!r} from the backend")


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds")
