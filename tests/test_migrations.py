"""The Alembic revisions build exactly the schema the models describe (``backend.schema.metadata()``).

Runs on SQLite, and on PostgreSQL when SORTPOINT_TEST_DATABASE_URL is set.
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from backend import migrations
from backend.core.db import make_engine
from backend.core.models import Base
from backend.ledger.models import LedgerEntry
from backend.registry import services as registry
from backend.schema import create_schema


@pytest.fixture
def engine(database_url):
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def _diffs(engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def _tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def test_upgrade_empty_database_reaches_head_and_matches_models(engine):
    assert migrations.current_revision(engine) is None
    migrations.upgrade(engine)
    assert migrations.current_revision(engine) == migrations.head_revision()
    assert _tables(engine) >= set(Base.metadata.tables)
    assert _diffs(engine) == []


def test_compare_metadata_notices_a_schema_the_models_do_not_describe(engine):
    # guards the test above: an empty database must show every table as missing
    diffs = _diffs(engine)
    added = {d[1].name for d in diffs if d[0] == "add_table"}
    assert added == set(Base.metadata.tables)


def _ledger_entry_id(engine) -> int:
    with Session(engine) as s, s.begin():
        registry.create_community(s, "mig", "Migration test")
        registry.add_building(s, "mig", "B1", "Building 1")
        household = registry.add_household(s, "mig", "H1", "B1")
        entry = LedgerEntry(
            household_id=household.id,
            kind="adjustment",
            amount=5,
            balance_after=5,
            reason="test",
            source_type="test",
            source_id="1",
        )
        s.add(entry)
        s.flush()
        return entry.id


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entries SET amount = 500 WHERE id = :id",
        "UPDATE ledger_entries SET reason = 'rewritten' WHERE id = :id",
        "DELETE FROM ledger_entries WHERE id = :id",
    ],
)
def test_triggers_refuse_rewriting_a_ledger_entry_after_upgrade(engine, statement):
    migrations.upgrade(engine)
    entry_id = _ledger_entry_id(engine)
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text(statement), {"id": entry_id})
    with engine.connect() as conn:
        row = conn.execute(text("SELECT amount, reason FROM ledger_entries")).one()
    assert tuple(row) == (5, "test")


def test_truncate_refused_on_postgres(engine, on_postgres):
    if not on_postgres:
        pytest.skip("SQLite has no TRUNCATE")
    migrations.upgrade(engine)
    _ledger_entry_id(engine)
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE ledger_entries CASCADE"))


def test_downgrade_to_base_then_upgrade_again(engine):
    migrations.upgrade(engine)
    migrations.downgrade(engine, "base")
    assert migrations.current_revision(engine) is None
    assert not (_tables(engine) & set(Base.metadata.tables))
    migrations.upgrade(engine)
    assert migrations.current_revision(engine) == migrations.head_revision()
    assert _diffs(engine) == []
    entry_id = _ledger_entry_id(engine)  # the triggers came back too
    with pytest.raises(DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM ledger_entries WHERE id = :id"), {"id": entry_id})


def test_create_schema_is_stamped_at_head_so_upgrade_is_a_no_op(engine):
    create_schema(engine)
    assert migrations.current_revision(engine) == migrations.head_revision()
    migrations.upgrade(engine)  # would fail with "table exists" if it re-ran 0001
    assert _diffs(engine) == []
