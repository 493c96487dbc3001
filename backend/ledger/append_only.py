"""The ledger's append-only guard: triggers the ORM models cannot express.

The ledger is append-only: triggers refuse any UPDATE or DELETE of a ledger
entry on SQLite and on PostgreSQL, so even a hand-typed SQL statement cannot
rewrite history.  Corrections are new, reversing entries.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

APPEND_ONLY_TABLES = ("ledger_entries",)

_SQLITE = """
CREATE TRIGGER IF NOT EXISTS {table}_no_{op}
BEFORE {OP} ON {table}
BEGIN
    SELECT RAISE(ABORT, '{table} is append-only: {op} refused');
END
"""

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION sortpoint_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$ LANGUAGE plpgsql
"""

_PG_TRIGGER = """
CREATE TRIGGER {table}_append_only
BEFORE UPDATE OR DELETE ON {table}
FOR EACH ROW EXECUTE FUNCTION sortpoint_append_only()
"""

_PG_TRUNCATE = """
CREATE TRIGGER {table}_no_truncate
BEFORE TRUNCATE ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION sortpoint_append_only()
"""


def append_only_ddl(dialect: str, tables: tuple[str, ...] = APPEND_ONLY_TABLES) -> list[str]:
    """Return the statements that make ``tables`` (the ledger's by default) append-only."""
    statements: list[str] = []
    if dialect == "sqlite":
        for table in tables:
            for op in ("update", "delete"):
                statements.append(_SQLITE.format(table=table, op=op, OP=op.upper()))
    elif dialect == "postgresql":
        statements.append(_PG_FUNCTION)
        for table in tables:
            statements.append(_PG_TRIGGER.format(table=table))
            statements.append(_PG_TRUNCATE.format(table=table))
    else:
        raise ValueError(f"unsupported database dialect {dialect!r}")
    return statements


def install_append_only(conn: Connection, tables: tuple[str, ...] = APPEND_ONLY_TABLES) -> None:
    """Create the append-only triggers of ``tables`` on an open connection."""
    for statement in append_only_ddl(conn.dialect.name, tables):
        # text() escapes the '%' of the PL/pgSQL RAISE for psycopg's pyformat
        # paramstyle; exec_driver_sql would hand it to the driver raw.
        conn.execute(text(statement))
