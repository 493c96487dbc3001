"""The kiosk API's own table: nonces seen inside the signature window."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.models import Base, UTCDateTime


class RequestNonce(Base):
    """A nonce seen inside the signature window; a second use is a replay."""

    __tablename__ = "request_nonces"

    kiosk_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
