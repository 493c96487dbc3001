"""sortpoint backend: the Flask app that keeps every household's points ledger.

``create_app()`` is the factory (``granian --interface wsgi --factory backend:create_app``,
``flask --app backend``).  One package per capability, each with its models,
services (the only code that opens transactions), CLI commands and blueprint;
dependencies run one way, top to bottom (``.importlinter``, checked in CI):

* ``kiosk_api/``  – the signed kiosk protocol: auth, kiosk cache, config, JSON views
* ``desk/``       – the reward catalog, redemptions, receipts and voids (beside ``kiosk_api``)
* ``people/``     – users, roles and scopes, login pages, API tokens (beside ``deposits``)
* ``deposits/``   – the deposit record and its ingest: one plan, a writer per database
* ``ledger/``     – accounts, append-only entries, points rules, caps, statements
* ``registry/``   – communities, categories, buildings, households, kiosks, labels
* ``core/``       – database, errors, model base, SQL helpers, CLI helpers

Beside them, the composition root: this factory, ``cli`` (gathers the command
groups), ``schema`` (every table), ``migrations/`` and ``demo``.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask

from backend.core import secrets
from backend.core.db import db


def default_instance_path() -> str | None:
    """Return the instance folder (the default SQLite database, the demo's files).

    ``SORTPOINT_INSTANCE_PATH`` (made absolute) if set; else, in a source
    checkout, its ``var/`` folder, where ``scripts/demo`` and ``kiosk run --sim``
    look too, from whatever folder a command runs; else None: Flask's default
    for an installed package (``<prefix>/var/backend-instance``).
    """
    configured = os.environ.get("SORTPOINT_INSTANCE_PATH")
    if configured:
        return os.path.abspath(configured)
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "scripts" / "demo").is_file():
        return str(checkout / "var")
    return None


def default_database_url(instance_path: str) -> str:
    """Return the embedded default: a SQLite file in the instance folder."""
    return "sqlite:///" + str(Path(instance_path) / "sortpoint.sqlite3")


def create_app(config: dict | None = None) -> Flask:
    """Create and configure the backend app."""
    app = Flask(__name__, instance_path=default_instance_path())
    app.config.from_mapping(
        DATABASE_URL=os.environ.get("SORTPOINT_DATABASE_URL")
        or default_database_url(app.instance_path),
        SIGNATURE_MAX_SKEW_S=300,
        MAX_BATCH=500,
        MAX_CONTENT_LENGTH=4 * 1024 * 1024,
        # how far back a kiosk's backlog may reach (offline for days is normal)
        DEPOSIT_MAX_AGE_S=int(os.environ.get("SORTPOINT_DEPOSIT_MAX_AGE_S", 30 * 24 * 3600)),
        DEPOSIT_MAX_AHEAD_S=300,
        # test pooled PostgreSQL connections before use (backend/core/db.py)
        DB_PRE_PING=os.environ.get("SORTPOINT_DB_PRE_PING", "") in ("1", "true", "yes"),
        # seconds a worker reuses a kiosk's set-up (backend/kiosk_api/kiosk_cache.py); 0: never
        KIOSK_CACHE_TTL_S=int(os.environ.get("SORTPOINT_KIOSK_CACHE_TTL_S", 60)),
    )
    if config:
        app.config.update(config)
    if app.config["DATABASE_URL"].startswith("sqlite"):
        os.makedirs(app.instance_path, exist_ok=True)
    db.init_app(app)
    # kiosk secrets and label keys are sealed under keys kept outside the database; the server
    # does not start without them, a CLI command asks for them when it needs them
    secrets.init_app(app, required=app.config.get("SECRET_KEYS_REQUIRED", True))

    from backend import cli, desk, kiosk_api, people
    from backend.kiosk_api.views import bp as kiosk_bp
    from backend.schema import metadata

    metadata()  # every capability's tables, mapped before the first request
    kiosk_api.init_app(app)
    people.init_app(app)
    desk.init_app(app)
    # the kiosk API is authenticated by request signatures, never by a cookie: no CSRF token
    people.csrf.exempt(kiosk_bp)
    cli.init_app(app)
    return app
