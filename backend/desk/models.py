"""The desk's tables: the reward catalog and its change history, redemptions and their voids.

Only ``rewards`` is ever updated (stock, price, window); everything else is
append-only (database triggers refuse UPDATE and DELETE, ``APPEND_ONLY_TABLES``):
a catalog change is a new ``reward_changes`` row, a void is a new
``redemption_voids`` row beside the redemption it cancels, and the points move
only through ledger entries.  Money is whole numbers: points, and fen (0.01 CNY).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models import Base, BigId, UTCDateTime, utcnow

REWARD_KINDS = ("goods", "card", "topup", "cash")
#: tables no statement may update or delete (triggers, ``backend.desk.append_only``)
APPEND_ONLY_TABLES = ("reward_changes", "redemptions", "redemption_items", "redemption_voids")


class Reward(Base):
    """One reward a community's desk gives for points; ``stock`` None is unlimited."""

    __tablename__ = "rewards"
    __table_args__ = (
        CheckConstraint("kind IN ('goods', 'card', 'topup', 'cash')", name="kind_known"),
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint("stock IS NULL OR stock >= 0", name="stock_nonneg"),
        CheckConstraint("(kind = 'cash') = (fen_per_point IS NOT NULL)", name="cash_has_rate"),
        CheckConstraint("fen_per_point IS NULL OR fen_per_point > 0", name="rate_positive"),
        Index("ix_rewards_community_id", "community_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(8))
    #: the price of one, in points
    points: Mapped[int] = mapped_column(Integer)
    #: cash only: what one point pays out, in fen (1 = 0.01 CNY a point)
    fen_per_point: Mapped[int | None] = mapped_column(Integer)
    #: how many are left; None = unlimited
    stock: Mapped[int | None] = mapped_column(Integer)
    #: redeemable from (inclusive) / until (exclusive); None = open-ended
    starts_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RewardChange(Base):
    """One change of a reward: who, when, and its fields before and after (JSON text)."""

    __tablename__ = "reward_changes"
    __table_args__ = (Index("ix_reward_changes_reward_id", "reward_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    #: add | edit | set_stock
    action: Mapped[str] = mapped_column(String(16))
    #: the user who changed it; None for the operator's command line
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    changed_by: Mapped[str] = mapped_column(String(64))
    #: JSON objects of the changed fields; ``before`` is null for ``add``
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReceiptCounter(Base):
    """The last receipt number of a community (moves in each redemption's transaction)."""

    __tablename__ = "receipt_counters"

    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, default=0)


class Redemption(Base):
    """A household's redemption at the desk: receipt, points, balance after, who, when."""

    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint("community_id", "receipt_number", name="uq_redemptions_community_receipt"),
        UniqueConstraint("community_id", "idempotency_key", name="uq_redemptions_community_key"),
        CheckConstraint("points > 0", name="points_positive"),
        CheckConstraint("balance_after >= 0", name="balance_after_nonneg"),
        Index("ix_redemptions_household_id", "household_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    receipt_number: Mapped[int] = mapped_column(Integer)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    idempotency_key: Mapped[str] = mapped_column(String(100))
    #: SHA-256 of the request's canonical body: a key reused for another body is refused
    request_sha256: Mapped[str] = mapped_column(String(64))
    points: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    #: the ledger entry that debited the points (kind ``redemption``)
    entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RedemptionItem(Base):
    """One line of a redemption: a reward, how many, and the price paid for one."""

    __tablename__ = "redemption_items"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("points_each > 0", name="points_each_positive"),
    )

    redemption_id: Mapped[int] = mapped_column(ForeignKey("redemptions.id"), primary_key=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"), primary_key=True)
    quantity: Mapped[int] = mapped_column(Integer)
    points_each: Mapped[int] = mapped_column(Integer)
    #: whether the stock was decremented (a void restores exactly that)
    counted_stock: Mapped[bool] = mapped_column(default=False)


class RedemptionVoid(Base):
    """The void of a redemption (at most one): who, why, when, and the reversing entry."""

    __tablename__ = "redemption_voids"

    redemption_id: Mapped[int] = mapped_column(ForeignKey("redemptions.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(200))
    reversal_entry_id: Mapped[int] = mapped_column(ForeignKey("ledger_entries.id"), unique=True)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
