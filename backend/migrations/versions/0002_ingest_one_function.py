"""PostgreSQL: the one-deposit function ``sortpoint_ingest_one`` (backend/services/ingest_fn.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

"""

from collections.abc import Sequence

from alembic import op

from backend.services import ingest_fn

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the function on PostgreSQL; SQLite has no stored functions (no-op)."""
    ingest_fn.install(op.get_bind())


def downgrade() -> None:
    """Drop the function on PostgreSQL (no-op on SQLite)."""
    ingest_fn.drop(op.get_bind())
