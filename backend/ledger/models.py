"""The ledger's tables: points rules, accounts, append-only entries and daily totals.

Ledger entries are never updated or deleted (database triggers refuse it,
``backend.ledger.append_only``); corrections are new entries.  ``Account.balance`` is
kept in the same transaction as each entry, so reading a balance never sums history;
``sortpoint ledger verify`` recomputes it from the entries.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models import Base, BigId, UTCDateTime, utcnow

LEDGER_KINDS = ("deposit", "reversal", "adjustment", "redemption", "expiry")


class PointsRule(Base):
    """A version of the points rule for one community and category."""

    __tablename__ = "points_rules"
    __table_args__ = (
        UniqueConstraint("category_id", "version"),
        CheckConstraint("points_per_kg >= 0", name="points_per_kg_nonneg"),
        CheckConstraint("min_net_g >= 0", name="min_net_g_nonneg"),
        CheckConstraint("daily_cap IS NULL OR daily_cap >= 0", name="daily_cap_nonneg"),
        Index("ix_points_rules_category_effective", "category_id", "effective_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    version: Mapped[int] = mapped_column(Integer)
    points_per_kg: Mapped[int] = mapped_column(Integer)
    min_net_g: Mapped[int] = mapped_column(Integer, default=0)
    #: most points per household, category and local day; None = no cap
    daily_cap: Mapped[int | None] = mapped_column(Integer)
    effective_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Account(Base):
    """A household's points account; ``balance`` moves only with an entry."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("balance >= 0", name="balance_nonneg"),)

    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), primary_key=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    entry_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class LedgerEntry(Base):
    """One immutable movement of points on a household's account."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('deposit', 'reversal', 'adjustment', 'redemption', 'expiry')",
            name="kind_known",
        ),
        CheckConstraint("balance_after >= 0", name="balance_after_nonneg"),
        Index("ix_ledger_entries_household_id", "household_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    kind: Mapped[str] = mapped_column(String(16))
    #: signed: credits are positive, debits negative
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(200))
    #: what caused the entry: ("deposit", uuid), ("entry", id), ("cli", user)...
    source_type: Mapped[str] = mapped_column(String(32))
    source_id: Mapped[str] = mapped_column(String(64))
    #: one entry per idempotency key, ever
    idempotency_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    reverses_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_entries.id"), unique=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DailyTotal(Base):
    """Points credited per household, category and local day (for caps)."""

    __tablename__ = "daily_totals"
    __table_args__ = (CheckConstraint("points >= 0", name="points_nonneg"),)

    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    points: Mapped[int] = mapped_column(Integer, default=0)
