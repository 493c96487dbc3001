"""The deposits table: one row per bag, keyed by the UUID the kiosk chose.

The flow of a deposit through the tables (docs/architecture.md):

    Kiosk --POST /api/v1/deposits--> Deposit (one row per kiosk-chosen UUID)
        -> Label.first_deposit_id claimed (a label credits once)
        -> PointsRule version in force at occurred_at -> points
        -> DailyTotal (cap per household, category and local day)
        -> LedgerEntry (append-only; kind "deposit") and Account.balance
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models import Base, UTCDateTime, utcnow

DEPOSIT_STATUSES = ("accepted", "flagged")


class Deposit(Base):
    """A bag weighed at a kiosk, keyed by the UUID the kiosk chose."""

    __tablename__ = "deposits"
    __table_args__ = (
        CheckConstraint("net_g > 0", name="net_g_positive"),
        CheckConstraint("points >= 0", name="points_nonneg"),
        CheckConstraint("status IN ('accepted', 'flagged')", name="status_known"),
        Index("ix_deposits_household_occurred", "household_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid(), primary_key=True)
    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"))
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    label_serial: Mapped[str] = mapped_column(ForeignKey("labels.serial"), index=True)
    door: Mapped[int] = mapped_column(Integer)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    net_g: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    #: the community-local calendar day of occurred_at (daily caps, reports)
    local_day: Mapped[dt.date] = mapped_column(Date)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(Integer, default=0)
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("points_rules.id"))
    #: why the deposit was flagged or earned less than its weight's worth
    reason: Mapped[str | None] = mapped_column(String(64))
    #: SHA-256 of the canonical submitted content, to tell duplicate from conflict
    content_hash: Mapped[str] = mapped_column(String(64))
