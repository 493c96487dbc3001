"""Test data built directly with the models: communities, kiosks, rules, labels.

Independent of the registry/labels/rules services so any test can seed a
world in one call.  ``build_world(session)`` gives a community ``green`` with
categories, a building, households (each with an account), a kiosk with doors
and a secret, one points rule per category and a label per household::

    with db.begin() as s:
        world = build_world(s)
    payload = world.labels["H001"][0]

``signed(...)`` returns the headers of a signed kiosk request (protocol.signing).
"""

from __future__ import annotations

import datetime as dt
import json as jsonlib
import secrets
import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.ledger.models import Account, PointsRule
from backend.registry import sealed
from backend.registry.models import (
    Building,
    Category,
    Community,
    Household,
    Kiosk,
    KioskDoor,
    Label,
)
from protocol import labels as plabels

#: an instant well before any test's "now", so default rules are in force
EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)

DEFAULT_CATEGORIES = {
    "plastic": 10_000,
    "paper": 25_000,
    "metal": 15_000,
    "glass": 20_000,
}


@dataclass
class World:
    """Everything ``build_world`` created, by natural key."""

    community: Community
    private_key: object
    categories: dict[str, Category]
    building: Building
    households: dict[str, Household]
    kiosk: Kiosk
    secret: str
    rules: dict[str, PointsRule]
    labels: dict[str, list[str]] = field(default_factory=dict)

    @property
    def public_key_text(self) -> str:
        """Return the community's public label key as text."""
        return self.community.label_public_key


def make_community(
    session: Session,
    slug: str = "green",
    *,
    timezone: str = "Asia/Shanghai",
    categories: dict[str, int] | None = None,
) -> tuple[Community, object, dict[str, Category]]:
    """Create a community with an Ed25519 keypair and categories (code -> max_plausible_g)."""
    key = plabels.generate_private_key()
    community = Community(
        slug=slug,
        name=slug.title(),
        timezone=timezone,
        label_private_key_sealed=sealed.seal_label_key(slug, plabels.private_key_to_text(key)),
        label_public_key=plabels.public_key_to_text(key),
    )
    session.add(community)
    session.flush()
    cats = {}
    for code, max_g in (categories or DEFAULT_CATEGORIES).items():
        cats[code] = Category(
            community_id=community.id,
            code=code,
            name=code.title(),
            max_plausible_g=max_g,
        )
        session.add(cats[code])
    session.flush()
    return community, key, cats


def make_building(session: Session, community: Community, code: str = "B1") -> Building:
    """Create a building."""
    building = Building(community_id=community.id, code=code, name=f"Building {code}")
    session.add(building)
    session.flush()
    return building


def make_household(
    session: Session,
    community: Community,
    building: Building,
    code: str,
    unit: str = "",
) -> Household:
    """Create a household and its (empty) account."""
    household = Household(community_id=community.id, building_id=building.id, code=code, unit=unit)
    session.add(household)
    session.flush()
    session.add(Account(household_id=household.id, balance=0, entry_count=0))
    session.flush()
    return household


def make_kiosk(
    session: Session,
    community: Community,
    categories: dict[str, Category],
    doors: dict[int, str],
    *,
    capacity_g: int = 50_000,
    kiosk_id: str | None = None,
    secret: str | None = None,
) -> tuple[Kiosk, str]:
    """Create an enabled kiosk with ``doors`` (door number -> category code)."""
    secret = secret or secrets.token_urlsafe(32)
    kiosk_id = kiosk_id or "k_" + secrets.token_hex(6)
    kiosk = Kiosk(
        id=kiosk_id,
        community_id=community.id,
        name="Test kiosk",
        secret_sealed=sealed.seal_kiosk_secret(kiosk_id, secret),
        enabled=True,
    )
    session.add(kiosk)
    session.flush()
    for door, code in doors.items():
        session.add(
            KioskDoor(
                kiosk_id=kiosk.id,
                door=door,
                category_id=categories[code].id,
                capacity_g=capacity_g,
            )
        )
    session.flush()
    return kiosk, secret


def make_rule(
    session: Session,
    category: Category,
    points_per_kg: int,
    *,
    min_net_g: int = 0,
    daily_cap: int | None = None,
    effective_at: dt.datetime = EPOCH,
) -> PointsRule:
    """Append a points-rule version for ``category``."""
    latest = session.scalar(
        select(func.max(PointsRule.version)).where(PointsRule.category_id == category.id)
    )
    rule = PointsRule(
        community_id=category.community_id,
        category_id=category.id,
        version=(latest or 0) + 1,
        points_per_kg=points_per_kg,
        min_net_g=min_net_g,
        daily_cap=daily_cap,
        effective_at=effective_at,
    )
    session.add(rule)
    session.flush()
    return rule


def make_label(
    session: Session,
    community: Community,
    household: Household,
    private_key,
    *,
    serial: str | None = None,
    revoked_at: dt.datetime | None = None,
) -> str:
    """Store a label for ``household`` and return its signed payload."""
    serial = serial or plabels.new_serial()
    session.add(
        Label(
            serial=serial,
            community_id=community.id,
            household_id=household.id,
            revoked_at=revoked_at,
            revoked_reason="test" if revoked_at else None,
        )
    )
    session.flush()
    claims = plabels.LabelClaims(community.slug, household.code, serial)
    return plabels.encode_label(private_key, claims)


def build_world(
    session: Session,
    *,
    slug: str = "green",
    households: int = 3,
    labels_per_household: int = 3,
    doors: dict[int, str] | None = None,
    points_per_kg: int = 10,
    min_net_g: int = 0,
    daily_cap: int | None = None,
    capacity_g: int = 50_000,
) -> World:
    """Create a complete community ready for deposits (see module docstring)."""
    community, key, cats = make_community(session, slug)
    building = make_building(session, community)
    homes = {
        f"H{i:03d}": make_household(session, community, building, f"H{i:03d}")
        for i in range(1, households + 1)
    }
    kiosk, secret = make_kiosk(
        session,
        community,
        cats,
        doors or {1: "plastic", 2: "paper"},
        capacity_g=capacity_g,
    )
    rules = {
        code: make_rule(session, cat, points_per_kg, min_net_g=min_net_g, daily_cap=daily_cap)
        for code, cat in cats.items()
    }
    world = World(community, key, cats, building, homes, kiosk, secret, rules)
    for code, household in homes.items():
        world.labels[code] = [
            make_label(session, community, household, key) for _ in range(labels_per_household)
        ]
    return world


def deposit_item(
    label: str,
    *,
    door: int = 1,
    category: str = "plastic",
    net_g: int = 1_000,
    occurred_at: dt.datetime | None = None,
    deposit_id: str | None = None,
) -> dict:
    """Return one JSON deposit item as a kiosk would send it."""
    at = occurred_at or dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
    return {
        "id": deposit_id or str(uuid.uuid4()),
        "label": label,
        "door": door,
        "category": category,
        "net_g": net_g,
        "occurred_at": at.isoformat(),
    }


def as_deposits(items: list[dict]) -> list:
    """Return ingest.DepositIn objects for JSON items (as the API would decode them)."""
    from backend.deposits.ingest import DepositIn

    return [
        DepositIn(
            uuid.UUID(i["id"]),
            i["label"],
            i["door"],
            i["category"],
            i["net_g"],
            dt.datetime.fromisoformat(i["occurred_at"]),
        )
        for i in items
    ]


def signed(
    kiosk_id: str,
    secret: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """Return the signed X- headers (plus Content-Type for a body)."""
    from protocol import (
        signing,  # imported here: the contract test must not load it via us
    )

    headers = signing.signed_headers(kiosk_id, secret, method, path, body, now=now, nonce=nonce)
    if body:
        headers["Content-Type"] = "application/json"
    return headers


def post_deposits(client, world: World, items: list[dict], **sign_kwargs):
    """POST a signed batch with a Flask test client; return the response."""
    body = jsonlib.dumps({"deposits": items}).encode()
    headers = signed(world.kiosk.id, world.secret, "POST", "/api/v1/deposits", body, **sign_kwargs)
    return client.post("/api/v1/deposits", data=body, headers=headers)
