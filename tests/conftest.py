"""Shared fixtures: the test database (SQLite by default, PostgreSQL in CI).

``SORTPOINT_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test``
runs every database test on PostgreSQL, each test in a schema of its own
(created and dropped here), so parallel runs never see each other's rows.
When that variable is set and the server cannot be reached, the tests fail:
a PostgreSQL run is never silently skipped.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, settings

PG_URL = os.environ.get("SORTPOINT_TEST_DATABASE_URL", "")

# One secret key for the session (backend.core.secrets): every app, CLI subprocess and served
# backend of the run seals and opens kiosk secrets and label keys with it, and no test writes
# a key file into the repository's instance folder.
if not (os.environ.get("SORTPOINT_SECRET_KEYS") or os.environ.get("SORTPOINT_SECRET_KEYS_FILE")):
    import secrets as _secrets

    os.environ["SORTPOINT_SECRET_KEYS"] = _secrets.token_urlsafe(32)

# The property tests check results, not speed: on a busy CI machine an example
# that runs past hypothesis' default 200 ms deadline, or slow data generation,
# would fail a correct test (and a re-run under the deadline reports it "flaky").
settings.register_profile("sortpoint", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("sortpoint")


def pytest_report_header(config):
    return f"sortpoint test database: {PG_URL or 'SQLite files in a temporary folder'}"


@pytest.fixture
def database_url(tmp_path):
    """Return the URL of an empty database for this test, and drop it after."""
    if not PG_URL:
        yield f"sqlite:///{tmp_path / 'sortpoint-test.sqlite3'}"
        return
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def on_postgres() -> bool:
    """True when the suite runs against PostgreSQL."""
    return bool(PG_URL)


@pytest.fixture
def app(database_url):
    """A backend app on a fresh database with the schema created."""
    from backend import create_app
    from backend.core.db import db
    from backend.schema import create_schema

    application = create_app({"DATABASE_URL": database_url, "TESTING": True})
    create_schema(db.engine)
    yield application
    db.engine.dispose()


@pytest.fixture
def web_app(database_url):
    """A backend app for pages and tokens over plain http (no Secure cookies), schema created."""
    from backend import create_app
    from backend.core.db import db
    from backend.schema import create_schema

    application = create_app(
        {"DATABASE_URL": database_url, "TESTING": True, "COOKIE_SECURE": False}
    )
    create_schema(db.engine)
    yield application
    db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()
