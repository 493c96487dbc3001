"""SQLAlchemy 2.0 typed models: the registry, the points rules and the ledger.

The flow of a deposit through these tables (see docs/architecture.md):

    Kiosk --POST /api/v1/deposits--> Deposit (one row per kiosk-chosen UUID)
        -> Label.first_deposit_id claimed (a label credits once)
        -> PointsRule version in force at occurred_at -> points
        -> DailyTotal (cap per household, category and local day)
        -> LedgerEntry (append-only; kind "deposit") and Account.balance

Ledger entries are never updated or deleted (database triggers refuse it);
corrections are new entries.  ``Account.balance`` is kept in the same
transaction as each entry, so reading a balance never sums history;
``sortpoint ledger verify`` recomputes it from the entries.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")

LEDGER_KINDS = ("deposit", "reversal", "adjustment", "redemption", "expiry")
DEPOSIT_STATUSES = ("accepted", "flagged")


def utcnow() -> dt.datetime:
    """Return the current time, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """A timestamp stored as UTC and always returned timezone-aware.

    SQLite has no time zones; storing naive UTC there and aware values on
    PostgreSQL keeps both dialects comparing the same instants.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; sortpoint stores aware UTC")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Community(Base):
    """A community (小区) that runs one or more stations."""

    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    #: Ed25519 label-signing key, base64url raw bytes.  Only the backend holds it.
    label_private_key: Mapped[str] = mapped_column(String(64))
    label_public_key: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    categories: Mapped[list[Category]] = relationship(back_populates="community")


class Category(Base):
    """A waste category a community accepts (paper, plastic, ...)."""

    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("community_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(100))
    #: heaviest plausible single bag; heavier deposits are flagged for review
    max_plausible_g: Mapped[int] = mapped_column(Integer, default=25_000)

    community: Mapped[Community] = relationship(back_populates="categories")


class Building(Base):
    """A building: the grid cell (网格) a member of staff is responsible for."""

    __tablename__ = "buildings"
    __table_args__ = (UniqueConstraint("community_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    code: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200))


class Household(Base):
    """A registered household, identified by its code within the community."""

    __tablename__ = "households"
    __table_args__ = (UniqueConstraint("community_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id"))
    code: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Kiosk(Base):
    """A registered station; authenticates requests with its HMAC secret."""

    __tablename__ = "kiosks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    name: Mapped[str] = mapped_column(String(100))
    #: the secret exactly as printed at registration; HMAC needs it in the clear
    secret: Mapped[str] = mapped_column(String(128))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    doors: Mapped[list[KioskDoor]] = relationship(order_by="KioskDoor.door")


class KioskDoor(Base):
    """One door of a kiosk and the category its bin takes."""

    __tablename__ = "kiosk_doors"

    kiosk_id: Mapped[str] = mapped_column(ForeignKey("kiosks.id"), primary_key=True)
    door: Mapped[int] = mapped_column(Integer, primary_key=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    capacity_g: Mapped[int] = mapped_column(Integer, default=50_000)

    category: Mapped[Category] = relationship()


class RequestNonce(Base):
    """A nonce seen inside the signature window; a second use is a replay."""

    __tablename__ = "request_nonces"

    kiosk_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class Label(Base):
    """A printed bag label; it credits points to its household once."""

    __tablename__ = "labels"

    serial: Mapped[str] = mapped_column(String(20), primary_key=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id"))
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(200))
    #: the deposit that used this label first (and so was credited)
    first_deposit_id: Mapped[uuid.UUID | None] = mapped_column(Uuid())


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
