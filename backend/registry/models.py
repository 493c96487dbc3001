"""The registry's tables: communities, their categories and buildings, households, kiosks, labels."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from backend.core.models import Base, UTCDateTime, utcnow

# Sealed values (backend.core.secrets) are about 111 characters.  SQLite ignores a VARCHAR's
# length, so its tables keep the lengths they were created with: widening a column there means
# rebuilding the table, which cannot run while every other table's foreign keys point at it
# (migration 0003).
SEALED_LABEL_KEY = String(255).with_variant(String(64), "sqlite")
SEALED_SECRET = String(255).with_variant(String(128), "sqlite")


class Community(Base):
    """A community (小区) that runs one or more stations."""

    __tablename__ = "communities"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    #: the Ed25519 label-signing key (base64url raw bytes), sealed (``backend.registry.sealed``):
    #: only the backend holds it, and a database dump alone cannot open it
    label_private_key_sealed: Mapped[str] = mapped_column("label_private_key", SEALED_LABEL_KEY)
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
    #: the secret printed at registration, sealed (``backend.registry.sealed``); requests are
    #: checked against it opened, and kept kiosk copies are compared with it as stored
    secret_sealed: Mapped[str] = mapped_column("secret", SEALED_SECRET)
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
