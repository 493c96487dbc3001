"""A small world for the people tests: two communities, households, and one user per role."""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.core.db import db
from backend.ledger import services as ledger
from backend.people import use_cases as people
from backend.registry import use_cases as registry


@dataclass
class World:
    passwords: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


USERS = {
    # username: (role, communities, buildings, households)
    "admin": ("admin", (), (), ()),
    "mgr-oak": ("manager", ("oak",), (), ()),
    "mgr-elm": ("manager", ("elm",), (), ()),
    "staff-oak": ("staff", ("oak",), (), ()),
    "staff-b1": ("staff", (), ("oak/B1",), ()),
    "staff-elm": ("staff", ("elm",), (), ()),
    "res-h1": ("resident", (), (), ("oak/H1",)),
    "res-h2": ("resident", (), (), ("oak/H2",)),
}


def make_world(app) -> World:
    world = World()
    with app.app_context():
        for slug in ("oak", "elm"):
            registry.create_community(slug, slug.capitalize())
            registry.add_building(slug, "B1", "Building 1")
            registry.add_building(slug, "B2", "Building 2")
        registry.add_household("oak", "H1", "B1")
        registry.add_household("oak", "H2", "B2")
        registry.add_household("elm", "H1", "B1")
        with db.begin() as s:  # 25 points for oak/H1, so a balance shows
            from backend.registry.services import find_household

            household = find_household(s, "H1", "oak")
            ledger.adjust(s, household.id, 25, "welcome bonus", idempotency_key="test:welcome")
        for name, (role, communities, buildings, households) in USERS.items():
            info = people.create_user(name, role, communities, buildings, households)
            world.passwords[name] = info["password"]
            world.tokens[name] = people.issue_token(name)["token"]
    return world
