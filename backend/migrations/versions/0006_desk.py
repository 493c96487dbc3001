"""The desk: rewards and their changes, receipt counters, redemptions, their items and voids.

Self-contained: the tables and the append-only triggers are spelled out here,
not imported from ``backend/desk/models.py`` or ``backend/ledger/append_only.py``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = sa.DateTime(timezone=True)
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = ("reward_changes", "redemptions", "redemption_items", "redemption_voids")

_SQLITE_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS {table}_no_{op}
BEFORE {OP} ON {table}
BEGIN
    SELECT RAISE(ABORT, '{table} is append-only: {op} refused');
END
"""
# the function exists since revision 0001; created again here so this revision stands alone
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


def upgrade() -> None:
    op.create_table(
        "rewards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("fen_per_point", sa.Integer(), nullable=True),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("starts_at", UTC_DATETIME, nullable=True),
        sa.Column("ends_at", UTC_DATETIME, nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint(
            "kind IN ('goods', 'card', 'topup', 'cash')", name=op.f("ck_rewards_kind_known")
        ),
        sa.CheckConstraint("points > 0", name=op.f("ck_rewards_points_positive")),
        sa.CheckConstraint("stock IS NULL OR stock >= 0", name=op.f("ck_rewards_stock_nonneg")),
        sa.CheckConstraint(
            "(kind = 'cash') = (fen_per_point IS NOT NULL)", name=op.f("ck_rewards_cash_has_rate")
        ),
        sa.CheckConstraint(
            "fen_per_point IS NULL OR fen_per_point > 0", name=op.f("ck_rewards_rate_positive")
        ),
        sa.ForeignKeyConstraint(
            ["community_id"], ["communities.id"], name=op.f("fk_rewards_community_id_communities")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
    )
    op.create_index("ix_rewards_community_id", "rewards", ["community_id", "id"], unique=False)
    op.create_table(
        "reward_changes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("reward_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_reward_changes_reward_id_rewards")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_reward_changes_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_changes")),
    )
    op.create_index(
        "ix_reward_changes_reward_id", "reward_changes", ["reward_id", "id"], unique=False
    )
    op.create_table(
        "receipt_counters",
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_receipt_counters_community_id_communities"),
        ),
        sa.PrimaryKeyConstraint("community_id", name=op.f("pk_receipt_counters")),
    )
    op.create_table(
        "redemptions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=False),
        sa.Column("receipt_number", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", BIG_ID, nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.CheckConstraint("points > 0", name=op.f("ck_redemptions_points_positive")),
        sa.CheckConstraint("balance_after >= 0", name=op.f("ck_redemptions_balance_after_nonneg")),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["communities.id"],
            name=op.f("fk_redemptions_community_id_communities"),
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_redemptions_entry_id_ledger_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["household_id"],
            ["households.id"],
            name=op.f("fk_redemptions_household_id_households"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_redemptions_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
        sa.UniqueConstraint(
            "community_id", "idempotency_key", name=op.f("uq_redemptions_community_key")
        ),
        sa.UniqueConstraint(
            "community_id", "receipt_number", name=op.f("uq_redemptions_community_receipt")
        ),
        sa.UniqueConstraint("entry_id", name=op.f("uq_redemptions_entry_id")),
    )
    op.create_index(
        "ix_redemptions_household_id", "redemptions", ["household_id", "id"], unique=False
    )
    op.create_table(
        "redemption_items",
        sa.Column("redemption_id", BIG_ID, nullable=False),
        sa.Column("reward_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("points_each", sa.Integer(), nullable=False),
        sa.Column("counted_stock", sa.Boolean(), nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_redemption_items_quantity_positive")),
        sa.CheckConstraint(
            "points_each > 0", name=op.f("ck_redemption_items_points_each_positive")
        ),
        sa.ForeignKeyConstraint(
            ["redemption_id"],
            ["redemptions.id"],
            name=op.f("fk_redemption_items_redemption_id_redemptions"),
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_redemption_items_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("redemption_id", "reward_id", name=op.f("pk_redemption_items")),
    )
    op.create_table(
        "redemption_voids",
        sa.Column("redemption_id", BIG_ID, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("reversal_entry_id", BIG_ID, nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["redemption_id"],
            ["redemptions.id"],
            name=op.f("fk_redemption_voids_redemption_id_redemptions"),
        ),
        sa.ForeignKeyConstraint(
            ["reversal_entry_id"],
            ["ledger_entries.id"],
            name=op.f("fk_redemption_voids_reversal_entry_id_ledger_entries"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_redemption_voids_user_id_users")
        ),
        sa.PrimaryKeyConstraint("redemption_id", name=op.f("pk_redemption_voids")),
        sa.UniqueConstraint(
            "reversal_entry_id", name=op.f("uq_redemption_voids_reversal_entry_id")
        ),
    )
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in APPEND_ONLY:
            for name in ("update", "delete"):
                op.execute(_SQLITE_TRIGGER.format(table=table, op=name, OP=name.upper()))
    else:
        op.execute(sa.text(_PG_FUNCTION))
        for table in APPEND_ONLY:
            op.execute(sa.text(_PG_TRIGGER.format(table=table)))
            op.execute(sa.text(_PG_TRUNCATE.format(table=table)))


def downgrade() -> None:
    # the triggers go with their tables; the function stays (revision 0001 owns it)
    op.drop_table("redemption_voids")
    op.drop_table("redemption_items")
    op.drop_index("ix_redemptions_household_id", table_name="redemptions")
    op.drop_table("redemptions")
    op.drop_table("receipt_counters")
    op.drop_index("ix_reward_changes_reward_id", table_name="reward_changes")
    op.drop_table("reward_changes")
    op.drop_index("ix_rewards_community_id", table_name="rewards")
    op.drop_table("rewards")
