"""A world for the desk tests: the people world (communities oak and elm, one user per role)
plus points for households and a few rewards."""

from __future__ import annotations

from sqlalchemy import func, select

from backend.core.db import db
from backend.desk import use_cases as desk
from backend.desk.models import (
    ReceiptCounter,
    Redemption,
    RedemptionItem,
    RedemptionVoid,
    Reward,
    RewardChange,
)
from backend.ledger import services as ledger
from backend.ledger.models import Account, LedgerEntry
from backend.registry.services import find_household


def give_points(code: str, slug: str, points: int, key: str) -> None:
    with db.begin() as s:
        household = find_household(s, code, slug)
        ledger.adjust(s, household.id, points, "test points", idempotency_key=key)


def add_reward(slug: str, name: str, points: int, stock: int | None = None, **extra) -> int:
    return desk.add_reward(
        slug, name=name, kind=extra.pop("kind", "goods"), points=points, stock=stock, **extra
    )["id"]


def snapshot() -> dict:
    """Everything a refused request must leave as it was."""
    with db.session() as s:
        counts = {
            model.__tablename__: s.scalar(select(func.count()).select_from(model))
            for model in (LedgerEntry, Redemption, RedemptionItem, RedemptionVoid, RewardChange)
        }
        return {
            "counts": counts,
            "stock": dict(s.execute(select(Reward.id, Reward.stock)).all()),
            "balances": dict(s.execute(select(Account.household_id, Account.balance)).all()),
            "receipts": dict(
                s.execute(select(ReceiptCounter.community_id, ReceiptCounter.last_number)).all()
            ),
        }
