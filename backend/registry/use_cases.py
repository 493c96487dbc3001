"""The registry's use cases: one function each, and each owns its transaction.

The service layer in the cosmicpython sense.  A CLI command (or, later, a
view) parses its input, calls exactly one of these and prints what it
returns; it never opens, commits or rolls back a transaction itself
(tests/test_transactions_owned.py holds that).  Each function here opens one
transaction (``db.begin()`` to write, ``db.read()`` to read), composes the
session-taking functions of ``backend.registry.services`` and
``backend.registry.labels`` inside it, and returns plain data: dicts shaped
as the commands' JSON, or frozen dataclasses.  A domain error raised inside
rolls the whole use case back.

``backend.registry.labels`` (PDF and QR libraries, slow to import) is
imported by the label use cases only, when they run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.db import db
from backend.registry import services
from backend.registry.models import Community, Label
from backend.registry.services import DEFAULT_TIMEZONE, DoorSpec, HouseholdRow

if TYPE_CHECKING:
    from backend.registry.labels import IssuedLabel

# ----------------------------------------------------------------- communities


def community_info(session: Session, community: Community) -> dict:
    """Return a JSON-ready description of ``community`` with its categories."""
    return {
        "slug": community.slug,
        "name": community.name,
        "timezone": community.timezone,
        "label_public_key": community.label_public_key,
        "categories": [
            {"code": c.code, "name": c.name, "max_plausible_g": c.max_plausible_g}
            for c in services.list_categories(session, community)
        ],
    }


def create_community(
    slug: str,
    name: str,
    timezone: str = DEFAULT_TIMEZONE,
    categories: Iterable[str] | None = None,
) -> dict:
    """Create a community with its label-signing key and categories; return its description."""
    with db.begin() as s:
        return community_info(s, services.create_community(s, slug, name, timezone, categories))


def list_communities() -> list[dict]:
    """Return every community's description, by slug."""
    with db.read() as s:
        return [community_info(s, c) for c in services.list_communities(s)]


def set_timezone(slug: str, timezone: str) -> dict:
    """Change a community's time zone; return its description."""
    with db.begin() as s:
        return community_info(s, services.set_timezone(s, slug, timezone))


# ------------------------------------------------------ buildings, households


def add_building(community: str, code: str, name: str) -> dict:
    """Add a building to a community."""
    with db.begin() as s:
        building = services.add_building(s, community, code, name)
        return {"community": community, "code": building.code, "name": building.name}


def add_household(community: str, code: str, building: str, unit: str = "") -> dict:
    """Register a household (its balance reads 0 until its first entry)."""
    with db.begin() as s:
        household = services.add_household(s, community, code, building, unit)
        return {
            "community": community,
            "code": household.code,
            "building": building,
            "unit": household.unit,
            "balance": 0,
        }


def import_households(
    community: str,
    rows: list[HouseholdRow],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Add every parsed row's household, or none of them; return how many were added.

    ``rows`` come from ``services.parse_household_csv`` (the command's input,
    checked before any database work); ``progress(n)`` as rows are written.
    """
    with db.begin() as s:
        return services.import_households(s, community, rows, progress=progress)


# ---------------------------------------------------------------------- kiosks


def register_kiosk(community: str, name: str, doors: Iterable[DoorSpec | str]) -> dict:
    """Register a kiosk; return its description with its secret and the label key."""
    with db.begin() as s:
        kiosk = services.register_kiosk(s, community, name, doors)
        return services.kiosk_info(s, kiosk, with_secret=True)


def disable_kiosk(kiosk_id: str) -> dict:
    """Disable a kiosk; return its description and ``changed`` (False if it was already)."""
    with db.begin() as s:
        kiosk, changed = services.disable_kiosk(s, kiosk_id)
        return services.kiosk_info(s, kiosk) | {"changed": changed}


def list_kiosks(community: str | None = None) -> list[dict]:
    """Return the description of every kiosk (of one community, or all); no secrets."""
    with db.read() as s:
        return [services.kiosk_info(s, k) for k in services.list_kiosks(s, community)]


# ---------------------------------------------------------------------- labels


@dataclass(frozen=True)
class ListedLabel:
    """A stored label as listed: printable like an issued one, with its revocation if any."""

    household: str
    serial: str
    payload: str
    revoked_at: dt.datetime | None = None
    revoked_reason: str | None = None

    def as_dict(self) -> dict:
        """Return household, serial and payload, as ``IssuedLabel.as_dict`` does."""
        return {"household": self.household, "serial": self.serial, "payload": self.payload}


def issue_labels(
    community: str,
    household: str,
    count: int,
    before_commit: Callable[[list[IssuedLabel]], None] | None = None,
) -> list[IssuedLabel]:
    """Issue ``count`` labels for a household and return them.

    ``before_commit(issued)`` runs inside the transaction (the command writes
    its PDF sheet there): if it raises, no label is issued.
    """
    from backend.registry import labels

    with db.begin() as s:
        issued = labels.issue_labels(s, community, household, count)
        if before_commit is not None:
            before_commit(issued)
        return issued


def list_labels(
    community: str, household: str | None = None, include_revoked: bool = False
) -> list[ListedLabel]:
    """Return a community's (or one household's) labels; revoked ones only if asked, marked."""
    from backend.registry import labels

    with db.read() as s:
        found = labels.household_labels(s, community, household, include_revoked)
        revoked: dict[str, tuple[dt.datetime, str | None]] = {}
        if include_revoked and found:
            community_id = services.get_community(s, community).id
            revoked = {
                serial: (at, reason)
                for serial, at, reason in s.execute(
                    select(Label.serial, Label.revoked_at, Label.revoked_reason).where(
                        Label.community_id == community_id, Label.revoked_at.is_not(None)
                    )
                )
            }
    return [
        ListedLabel(i.household, i.serial, i.payload, *revoked.get(i.serial, (None, None)))
        for i in found
    ]


def revoke_label(serial: str, reason: str = "revoked by staff") -> dict:
    """Revoke a label; return its serial, revocation time, reason and ``changed``."""
    from backend.registry import labels

    with db.begin() as s:
        label, changed = labels.revoke_label(s, serial, reason)
        return {
            "serial": label.serial,
            "revoked_at": label.revoked_at.isoformat(),
            "reason": label.revoked_reason,
            "changed": changed,
        }
