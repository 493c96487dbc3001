"""The body of GET /api/v1/kiosk/config: what a kiosk needs to work offline."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.deposits.store import KioskContext
from backend.kiosk_api import schemas
from backend.ledger import points
from backend.registry.models import Category, Community, KioskDoor, Label


def build_config(
    session: Session, kiosk: KioskContext, now: dt.datetime, config
) -> schemas.KioskConfig:
    """Collect doors, categories, the label key, rules in force and revoked serials."""
    ref = kiosk.ref
    categories = session.execute(
        select(Category.id, Category.code, Category.name, Category.max_plausible_g)
        .where(Category.community_id == ref.community_id)
        .order_by(Category.code)
    ).all()
    code_of = {c.id: c.code for c in categories}
    doors = session.execute(
        select(KioskDoor.door, KioskDoor.category_id, KioskDoor.capacity_g)
        .where(KioskDoor.kiosk_id == ref.kiosk_id)
        .order_by(KioskDoor.door)
    ).all()
    book = points.load_rules(session, code_of)
    revoked = session.scalars(
        select(Label.serial)
        .where(Label.community_id == ref.community_id, Label.revoked_at.is_not(None))
        .order_by(Label.serial)
    ).all()
    community_name = session.scalar(select(Community.name).where(Community.id == ref.community_id))
    return schemas.KioskConfig(
        kiosk_id=ref.kiosk_id,
        kiosk_name=kiosk.name,
        community=ref.community_slug,
        community_name=community_name,
        timezone=ref.timezone,
        label_public_key=ref.label_public_key,
        doors=[schemas.DoorConfig(d.door, code_of[d.category_id], d.capacity_g) for d in doors],
        categories=[schemas.CategoryConfig(c.code, c.name, c.max_plausible_g) for c in categories],
        rules=[
            schemas.RuleConfig(
                code_of[r.category_id],
                r.version,
                r.points_per_kg,
                r.min_net_g,
                r.daily_cap,
                r.effective_at,
            )
            for r in sorted(book.current(now), key=lambda r: code_of[r.category_id])
        ],
        revoked_serials=list(revoked),
        server_time=now,
        server_time_unix=int(now.timestamp()),
        limits=schemas.Limits(
            max_batch=config["MAX_BATCH"],
            max_skew_s=config["SIGNATURE_MAX_SKEW_S"],
            max_age_s=config["DEPOSIT_MAX_AGE_S"],
            max_ahead_s=config["DEPOSIT_MAX_AHEAD_S"],
        ),
    )
