"""The API endpoints: health, signed deposit ingest, signed kiosk config."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text

from backend.db import db
from backend.models import utcnow

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/v1/health")
def health():
    """Answer 200 when the app can reach its database (unsigned)."""
    with db.session() as session:
        session.execute(text("SELECT 1"))
    return jsonify({"status": "ok", "database": db.dialect, "server_time": utcnow().isoformat()})
