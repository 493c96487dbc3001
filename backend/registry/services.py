"""The registry: communities, categories, buildings, households and kiosks.

Every function takes the session of a transaction the caller opened with
``db.begin()``; a domain error raised here rolls the whole transaction back,
so a failed command leaves nothing half-made.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import string
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, selectinload

from backend.core.errors import AlreadyExists, InvalidInput, NotFound
from backend.core.models import utcnow
from backend.registry import sealed
from backend.registry.models import Building, Category, Community, Household, Kiosk, KioskDoor
from protocol.labels import (
    COMMUNITY_RE,
    HOUSEHOLD_RE,
    generate_private_key,
    private_key_to_text,
    public_key_to_text,
)

DEFAULT_TIMEZONE = "Asia/Shanghai"

#: code -> (name, heaviest plausible single bag in grams).  A bag heavier than
#: this is still recorded but flagged for staff instead of earning points.
DEFAULT_CATEGORIES: dict[str, tuple[str, int]] = {
    "paper": ("Paper and cardboard", 20_000),
    "plastic": ("Plastic", 10_000),
    "metal": ("Metal", 15_000),
    "glass": ("Glass", 25_000),
    "textiles": ("Textiles", 20_000),
    "kitchen": ("Kitchen waste", 15_000),
    "hazardous": ("Hazardous (batteries, lamps, medicine)", 5_000),
}

CATEGORY_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
BUILDING_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,31}")
DOOR_SPEC_RE = re.compile(r"(\d{1,3})=([a-z][a-z0-9_-]{0,31})(?::(\d{1,9}))?")
KIOSK_ID_PREFIX = "k_"
_KIOSK_ID_CHARS = string.ascii_lowercase + string.digits
DEFAULT_DOOR_CAPACITY_G = 50_000
MAX_DOORS = 16
MAX_PLAUSIBLE_G_LIMIT = 1_000_000


@dataclass(frozen=True)
class DoorSpec:
    """One ``--door N=category[:capacity_g]`` argument, parsed."""

    door: int
    category: str
    capacity_g: int = DEFAULT_DOOR_CAPACITY_G


@dataclass(frozen=True)
class HouseholdRow:
    """One data row of a household CSV file, with its line number."""

    line: int
    code: str
    building: str
    unit: str


def _check(pattern: re.Pattern, value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInput(f"invalid {what} {value!r} (allowed: {pattern.pattern})")
    return value


def check_timezone(name: str) -> str:
    """Return ``name`` if it is a known IANA time zone, else raise InvalidInput."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidInput(
            f"unknown time zone {name!r} (use an IANA name like Asia/Shanghai)"
        ) from None
    return name


def parse_category_spec(spec: str) -> tuple[str, int | None]:
    """Parse ``CODE`` or ``CODE:max_plausible_g`` into (code, grams or None)."""
    code, sep, grams = spec.partition(":")
    _check(CATEGORY_RE, code, "category code")
    if not sep:
        return code, None
    if not grams.isdigit() or not 0 < int(grams) <= MAX_PLAUSIBLE_G_LIMIT:
        raise InvalidInput(f"invalid maximum grams in {spec!r} (1..{MAX_PLAUSIBLE_G_LIMIT})")
    return code, int(grams)


# --------------------------------------------------------------------- lookups


def get_community(session: Session, slug: str) -> Community:
    """Return the community ``slug`` or raise NotFound."""
    community = session.scalar(select(Community).where(Community.slug == slug))
    if community is None:
        raise NotFound(f"no community {slug!r}")
    return community


def list_communities(session: Session) -> list[Community]:
    """Return every community, by slug."""
    return list(session.scalars(select(Community).order_by(Community.slug)))


def get_category(session: Session, community: Community, code: str) -> Category:
    """Return the category ``code`` of ``community`` or raise NotFound."""
    category = session.scalar(
        select(Category).where(Category.community_id == community.id, Category.code == code)
    )
    if category is None:
        known = ", ".join(c.code for c in list_categories(session, community))
        raise NotFound(f"community {community.slug!r} has no category {code!r} (known: {known})")
    return category


def list_categories(session: Session, community: Community) -> list[Category]:
    """Return the categories of ``community``, by code."""
    return list(
        session.scalars(
            select(Category).where(Category.community_id == community.id).order_by(Category.code)
        )
    )


def get_building(session: Session, community: Community, code: str) -> Building:
    """Return the building ``code`` of ``community`` or raise NotFound."""
    building = session.scalar(
        select(Building).where(Building.community_id == community.id, Building.code == code)
    )
    if building is None:
        raise NotFound(f"community {community.slug!r} has no building {code!r}")
    return building


def get_household(session: Session, community: Community, code: str) -> Household:
    """Return the household ``code`` of ``community`` or raise NotFound."""
    household = session.scalar(
        select(Household).where(Household.community_id == community.id, Household.code == code)
    )
    if household is None:
        raise NotFound(f"community {community.slug!r} has no household {code!r}")
    return household


def find_household(session: Session, code: str, community_slug: str | None = None) -> Household:
    """Return the household ``code``, in ``community_slug`` or the only one that has it."""
    if community_slug is not None:
        return get_household(session, get_community(session, community_slug), code)
    matches = list(session.scalars(select(Household).where(Household.code == code).limit(2)))
    if not matches:
        raise NotFound(f"no household {code!r}")
    if len(matches) > 1:
        raise InvalidInput(f"household code {code!r} exists in several communities; name one")
    return matches[0]


# ----------------------------------------------------------------- communities


def create_community(
    session: Session,
    slug: str,
    name: str,
    timezone: str = DEFAULT_TIMEZONE,
    categories: Iterable[str] | None = None,
) -> Community:
    """Create a community with a new Ed25519 label key (stored sealed) and its categories.

    ``categories`` holds ``CODE`` or ``CODE:max_plausible_g`` specs that add
    to, or override the maximum of, the default categories.
    """
    _check(COMMUNITY_RE, slug, "community slug")
    if not name or not name.strip():
        raise InvalidInput("a community needs a name")
    check_timezone(timezone)
    wanted = {code: grams for code, (_, grams) in DEFAULT_CATEGORIES.items()}
    for spec in categories or ():
        code, grams = parse_category_spec(spec)
        wanted[code] = grams if grams is not None else wanted.get(code, 25_000)
    if session.scalar(select(Community.id).where(Community.slug == slug)) is not None:
        raise AlreadyExists(f"community {slug!r} exists already")
    key = generate_private_key()
    community = Community(
        slug=slug,
        name=name.strip(),
        timezone=timezone,
        label_private_key_sealed=sealed.seal_label_key(slug, private_key_to_text(key)),
        label_public_key=public_key_to_text(key),
    )
    session.add(community)
    session.flush()
    for code, grams in wanted.items():
        label = DEFAULT_CATEGORIES.get(code, (code.replace("_", " ").capitalize(), 0))[0]
        session.add(
            Category(community_id=community.id, code=code, name=label, max_plausible_g=grams)
        )
    session.flush()
    return community


def set_timezone(session: Session, slug: str, timezone: str) -> Community:
    """Change the IANA time zone that decides a community's local days."""
    community = get_community(session, slug)
    community.timezone = check_timezone(timezone)
    return community


# ------------------------------------------------------ buildings, households


def add_building(session: Session, community_slug: str, code: str, name: str) -> Building:
    """Add a building (a staff member's grid cell) to a community."""
    community = get_community(session, community_slug)
    _check(BUILDING_RE, code, "building code")
    if session.scalar(
        select(Building.id).where(Building.community_id == community.id, Building.code == code)
    ):
        raise AlreadyExists(f"building {code!r} exists already in {community_slug!r}")
    building = Building(community_id=community.id, code=code, name=(name or code).strip())
    session.add(building)
    session.flush()
    return building


def add_household(
    session: Session, community_slug: str, code: str, building_code: str, unit: str = ""
) -> Household:
    """Register a household; the ledger opens its points account at its first entry (balance 0 till then)."""
    community = get_community(session, community_slug)
    _check(HOUSEHOLD_RE, code, "household code")
    building = get_building(session, community, building_code)
    if session.scalar(
        select(Household.id).where(Household.community_id == community.id, Household.code == code)
    ):
        raise AlreadyExists(f"household {code!r} exists already in {community_slug!r}")
    household = Household(
        community_id=community.id, building_id=building.id, code=code, unit=_unit(unit)
    )
    session.add(household)
    session.flush()
    return household


def _unit(unit: str | None) -> str:
    unit = (unit or "").strip()
    if len(unit) > 32:
        raise InvalidInput(f"unit {unit!r} is longer than 32 characters")
    return unit


def parse_household_csv(text: str) -> list[HouseholdRow]:
    """Parse a ``code,building,unit`` CSV; a bad row raises InvalidInput naming its line."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "code" not in header or "building" not in header:
        raise InvalidInput("line 1: the header must name the columns code,building,unit")
    reader.fieldnames = header
    rows: list[HouseholdRow] = []
    seen: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        if None in record:
            raise InvalidInput(f"line {line}: more fields than the header names")
        code = (record.get("code") or "").strip()
        building = (record.get("building") or "").strip()
        if not code and not building and not (record.get("unit") or "").strip():
            continue  # a blank line at the end of a spreadsheet export
        for column in ("code", "building"):  # a short row: `unit`, last, may be left out
            if record.get(column) is None:
                fields = sum(value is not None for value in record.values())
                raise InvalidInput(
                    f"line {line}: the {column!r} column is missing (the row has {fields} of"
                    f" the header's {len(header)} fields: {','.join(header)})"
                )
        try:
            _check(HOUSEHOLD_RE, code, "household code")
            _check(BUILDING_RE, building, "building code")
            unit = _unit(record.get("unit"))
        except InvalidInput as exc:
            raise InvalidInput(f"line {line}: {exc.message}") from None
        if code in seen:
            raise InvalidInput(f"line {line}: household {code!r} repeats line {seen[code]}")
        seen[code] = line
        rows.append(HouseholdRow(line, code, building, unit))
    if not rows:
        raise InvalidInput("the file has no household rows")
    return rows


def import_households(
    session: Session,
    community_slug: str,
    rows: list[HouseholdRow],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Add every row's household in the caller's transaction, or none of them.

    ``progress(n)`` is called as rows are checked and written.  Returns the
    number of households added.
    """
    community = get_community(session, community_slug)
    buildings = {
        code: building_id
        for code, building_id in session.execute(
            select(Building.code, Building.id).where(Building.community_id == community.id)
        )
    }
    _check_rows_against(session, community, buildings, rows)
    now = utcnow()
    chunk = 500
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        session.execute(
            insert(Household),
            [
                {
                    "community_id": community.id,
                    "building_id": buildings[r.building],
                    "code": r.code,
                    "unit": r.unit,
                    "created_at": now,
                }
                for r in part
            ],
        )
        if progress:
            progress(len(part))
    return len(rows)


def _check_rows_against(
    session: Session, community: Community, buildings: dict[str, int], rows: list[HouseholdRow]
) -> None:
    existing = set(
        session.scalars(select(Household.code).where(Household.community_id == community.id))
    )
    for row in rows:
        if row.building not in buildings:
            raise InvalidInput(
                f"line {row.line}: no building {row.building!r} in {community.slug!r}"
            )
        if row.code in existing:
            raise InvalidInput(f"line {row.line}: household {row.code!r} exists already")


# ---------------------------------------------------------------------- kiosks


def parse_door_spec(spec: str) -> DoorSpec:
    """Parse ``N=category`` or ``N=category:capacity_g`` (e.g. ``1=plastic:40000``)."""
    match = DOOR_SPEC_RE.fullmatch(spec.strip())
    if not match:
        raise InvalidInput(f"invalid door {spec!r}: use N=category or N=category:capacity_g")
    door, category, capacity = match.groups()
    capacity_g = int(capacity) if capacity else DEFAULT_DOOR_CAPACITY_G
    if int(door) < 1 or capacity_g < 1:
        raise InvalidInput(f"invalid door {spec!r}: door and capacity must be positive")
    return DoorSpec(int(door), category, capacity_g)


def new_kiosk_id() -> str:
    """Return a fresh kiosk id: ``k_`` and 12 random lower-case letters or digits."""
    return KIOSK_ID_PREFIX + "".join(secrets.choice(_KIOSK_ID_CHARS) for _ in range(12))


def register_kiosk(
    session: Session, community_slug: str, name: str, doors: Iterable[DoorSpec | str]
) -> Kiosk:
    """Register a kiosk with its doors and a random secret, stored sealed (``kiosk_info`` opens it)."""
    community = get_community(session, community_slug)
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("a kiosk needs a name of 1..100 characters")
    specs = [d if isinstance(d, DoorSpec) else parse_door_spec(d) for d in doors]
    if not specs:
        raise InvalidInput("a kiosk needs at least one --door N=category")
    if len(specs) > MAX_DOORS:
        raise InvalidInput(f"a kiosk has at most {MAX_DOORS} doors")
    numbers = [s.door for s in specs]
    if len(set(numbers)) != len(numbers):
        raise InvalidInput(f"door numbers repeat: {sorted(numbers)}")
    categories = {s.category: get_category(session, community, s.category) for s in specs}
    kiosk_id = new_kiosk_id()
    kiosk = Kiosk(
        id=kiosk_id,
        community_id=community.id,
        name=name,
        secret_sealed=sealed.seal_kiosk_secret(kiosk_id, secrets.token_urlsafe(32)),
        enabled=True,
    )
    session.add(kiosk)
    session.flush()
    for spec in sorted(specs, key=lambda s: s.door):
        session.add(
            KioskDoor(
                kiosk_id=kiosk.id,
                door=spec.door,
                category_id=categories[spec.category].id,
                capacity_g=spec.capacity_g,
            )
        )
    session.flush()
    session.refresh(kiosk, ["doors"])
    return kiosk


def get_kiosk(session: Session, kiosk_id: str) -> Kiosk:
    """Return the kiosk ``kiosk_id`` (doors loaded) or raise NotFound."""
    kiosk = session.scalar(
        select(Kiosk)
        .where(Kiosk.id == kiosk_id)
        .options(selectinload(Kiosk.doors).selectinload(KioskDoor.category))
    )
    if kiosk is None:
        raise NotFound(f"no kiosk {kiosk_id!r}")
    return kiosk


def disable_kiosk(session: Session, kiosk_id: str) -> tuple[Kiosk, bool]:
    """Disable a kiosk so its requests get 401; returns (kiosk, changed)."""
    kiosk = get_kiosk(session, kiosk_id)
    if not kiosk.enabled:
        return kiosk, False
    kiosk.enabled = False
    kiosk.disabled_at = utcnow()
    return kiosk, True


def list_kiosks(session: Session, community_slug: str | None = None) -> list[Kiosk]:
    """Return kiosks (of one community, or all), doors loaded, by community and name."""
    query = (
        select(Kiosk)
        .join(Community, Community.id == Kiosk.community_id)
        .options(selectinload(Kiosk.doors).selectinload(KioskDoor.category))
        .order_by(Community.slug, Kiosk.name, Kiosk.id)
    )
    if community_slug is not None:
        query = query.where(Kiosk.community_id == get_community(session, community_slug).id)
    return list(session.scalars(query))


def kiosk_info(session: Session, kiosk: Kiosk, with_secret: bool = False) -> dict:
    """Return a JSON-ready description of ``kiosk`` (the secret only if asked)."""
    community = session.get(Community, kiosk.community_id)
    info = {
        "kiosk_id": kiosk.id,
        "name": kiosk.name,
        "community": community.slug,
        "enabled": kiosk.enabled,
        "doors": [
            {"door": d.door, "category": d.category.code, "capacity_g": d.capacity_g}
            for d in kiosk.doors
        ],
        "last_seen_at": kiosk.last_seen_at.isoformat() if kiosk.last_seen_at else None,
    }
    if with_secret:
        info["secret"] = sealed.kiosk_secret(kiosk)
        info["label_public_key"] = community.label_public_key
    return info
