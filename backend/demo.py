"""Seed the demo community, once: re-running finds what exists and adds only what is missing.

``sortpoint demo seed`` (called by ``scripts/demo``) makes community ``demo``
with buildings, households, a rule per category, a three-door kiosk and some
labels, then writes the files the kiosk simulator reads:

* ``demo-kiosk.json``: backend URL, kiosk id and secret, community, label
  public key, doors;
* ``demo-labels.txt``: ``HOUSEHOLD<TAB>SERIAL<TAB>PAYLOAD`` per label;
* ``demo-labels.pdf``: the same labels as a printable A4 sheet;
* ``demo-users.json``: one user per role and their passwords, to log in at
  ``/account/login`` (``{"users": [{"username", "role", "password"}]}``, readable by
  its owner only).  A user whose password there no longer works gets a new one.

It also fills the desk: a few rewards (``REWARDS``) and, once, welcome points for
``B4-301`` (a household without labels), so a redemption can be tried at once with
the demo manager's token (README, "Try the desk").

The files are rewritten from the database on every run (label payloads are
deterministic Ed25519 signatures), so they always match it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.db import db
from backend.core.errors import NotFound
from backend.desk import services as desk
from backend.desk.models import Reward
from backend.ledger import rules
from backend.ledger import services as ledger
from backend.people import credentials
from backend.people import services as people
from backend.people.models import User
from backend.registry import labels
from backend.registry import services as registry
from backend.registry.models import Building, Community, Household, Kiosk, Label

SLUG = "demo"
NAME = "Demo Community"
TIMEZONE = "Asia/Shanghai"
BUILDINGS = {"B1": "Building 1", "B2": "Building 2", "B3": "Building 3", "B4": "Building 4"}
UNITS_PER_BUILDING = ("101", "102", "201", "202", "301")  # 4 x 5 = 20 households
#: category -> (points per kg, minimum net grams, daily cap)
RULES = {
    "paper": (20, 100, 200),
    "plastic": (30, 50, 200),
    "metal": (40, 50, 300),
    "glass": (10, 200, 100),
    "textiles": (15, 200, 150),
    "kitchen": (5, 200, 50),
    "hazardous": (50, 10, 100),
}
KIOSK_NAME = "demo-kiosk-1"
KIOSK_DOORS = ("1=plastic:40000", "2=paper:40000", "3=metal:30000")
LABELED_HOUSEHOLDS = 5
LABELS_PER_HOUSEHOLD = 3
KIOSK_FILE, LABELS_FILE, PDF_FILE = "demo-kiosk.json", "demo-labels.txt", "demo-labels.pdf"
USERS_FILE = "demo-users.json"
#: the desk's catalog: name -> (kind, points, stock or None for unlimited, fen per point for cash)
REWARDS = {
    "Hand soap": ("goods", 50, 30, None),
    "Bin bags, roll of 30": ("goods", 20, None, None),
    "Phone top-up 10 CNY": ("topup", 1000, 10, None),
    "Cash 10 CNY": ("cash", 1000, None, 1),
}
#: points one household without labels starts with, to try a redemption before any deposit
#: (not a labelled one: the simulator's documented script shows those starting from 0)
WELCOME_HOUSEHOLD, WELCOME_POINTS = "B4-301", 200
#: username -> (role, communities, households): one user per role
DEMO_USERS = {
    "demo-admin": ("admin", (), ()),
    "demo-manager": ("manager", (SLUG,), ()),
    "demo-staff": ("staff", (SLUG,), ()),
    "demo-resident": ("resident", (), (f"{SLUG}/B1-101",)),
}


def _ensure_community(session: Session) -> tuple[Community, bool]:
    try:
        return registry.get_community(session, SLUG), False
    except NotFound:
        return registry.create_community(session, SLUG, NAME, TIMEZONE), True


def _ensure_households(session: Session, community: Community) -> int:
    """Add the buildings and households that are missing; return how many households were added."""
    have_buildings = set(
        session.scalars(select(Building.code).where(Building.community_id == community.id))
    )
    have_households = set(
        session.scalars(select(Household.code).where(Household.community_id == community.id))
    )
    added = 0
    for code, name in BUILDINGS.items():
        if code not in have_buildings:
            registry.add_building(session, SLUG, code, name)
        for unit in UNITS_PER_BUILDING:
            household = f"{code}-{unit}"
            if household not in have_households:
                registry.add_household(session, SLUG, household, code, unit)
                added += 1
    return added


def _ensure_rules(session: Session, community: Community) -> int:
    added = 0
    for category in registry.list_categories(session, community):
        if category.code in RULES and rules.latest_rule(session, category.id) is None:
            points_per_kg, min_net_g, daily_cap = RULES[category.code]
            rules.set_rule(session, SLUG, category.code, points_per_kg, min_net_g, daily_cap)
            added += 1
    return added


def _ensure_kiosk(session: Session, community: Community) -> Kiosk:
    kiosk = session.scalar(
        select(Kiosk).where(Kiosk.community_id == community.id, Kiosk.name == KIOSK_NAME)
    )
    if kiosk is None:
        kiosk = registry.register_kiosk(session, SLUG, KIOSK_NAME, KIOSK_DOORS)
    return kiosk


def _ensure_labels(session: Session, community: Community) -> int:
    issued = 0
    codes = sorted(
        session.scalars(select(Household.code).where(Household.community_id == community.id))
    )[:LABELED_HOUSEHOLDS]
    for code in codes:
        have = session.scalar(
            select(func.count())
            .select_from(Label)
            .join(Household, Household.id == Label.household_id)
            .where(Household.community_id == community.id, Household.code == code)
        )
        if have < LABELS_PER_HOUSEHOLD:
            issued += len(labels.issue_labels(session, SLUG, code, LABELS_PER_HOUSEHOLD - have))
    return issued


def _ensure_rewards(session: Session, community: Community) -> int:
    """Add the demo rewards that are missing (by name); return how many were added."""
    have = set(session.scalars(select(Reward.name).where(Reward.community_id == community.id)))
    added = 0
    for name, (kind, points, stock, fen_per_point) in REWARDS.items():
        if name not in have:
            desk.add_reward(
                session,
                None,
                SLUG,
                name=name,
                kind=kind,
                points=points,
                stock=stock,
                fen_per_point=fen_per_point,
            )
            added += 1
    return added


def _ensure_welcome_points(session: Session, community: Community) -> None:
    """Credit the welcome household once (its idempotency key makes a re-run a no-op)."""
    household = registry.get_household(session, community, WELCOME_HOUSEHOLD)
    ledger.adjust(
        session,
        household.id,
        WELCOME_POINTS,
        "demo: welcome points, to try the desk",
        source_type="demo",
        source_id="seed",
        idempotency_key=f"demo:welcome:{WELCOME_HOUSEHOLD}",
    )


def _known_passwords(path: Path) -> dict[str, str]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {u["username"]: u["password"] for u in doc["users"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _ensure_users(session: Session, users_file: Path) -> tuple[list[dict], int]:
    """Create the demo users that are missing; keep a known password that still works.

    Returns (the users with their passwords, how many were created or given a new password).
    """
    known = _known_passwords(users_file)
    users, changed = [], 0
    for username, (role, communities, households) in DEMO_USERS.items():
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            _, password = people.create_user(
                session, username, role, communities, households=households
            )
            changed += 1
        elif credentials.check_password(user.password_hash, known.get(username, ""))[0]:
            password = known[username]
        else:
            password = people.reset_password(session, username)
            changed += 1
        users.append({"username": username, "role": role, "password": password})
    return users, changed


def _write_atomically(path: Path, data: bytes, private: bool = False) -> None:
    # a reader (the kiosk simulator) never sees a half-written file
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def seed(out_dir: Path, backend_url: str) -> dict:
    """Create whatever of the demo is missing, write its files, and return a summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with db.begin() as s:
        community, created = _ensure_community(s)
        added = {
            "households": _ensure_households(s, community),
            "rules": _ensure_rules(s, community),
            "labels": _ensure_labels(s, community),
        }
        kiosk = _ensure_kiosk(s, community)
        users, added["users"] = _ensure_users(s, out_dir / USERS_FILE)
        added["rewards"] = _ensure_rewards(s, community)
        _ensure_welcome_points(s, community)
        kiosk_doc = {"backend_url": backend_url} | {
            k: v
            for k, v in registry.kiosk_info(s, kiosk, with_secret=True).items()
            if k in ("kiosk_id", "secret", "community", "label_public_key", "doors")
        }
        printed = labels.household_labels(s, SLUG)
        households = s.scalar(
            select(func.count())
            .select_from(Household)
            .where(Household.community_id == community.id)
        )
        # the files are written before commit: if writing fails, nothing is seeded
        paths = _write_files(out_dir, kiosk_doc, printed, users)
    return {
        "community": SLUG,
        "created": created,
        "added": added,
        "households": households,
        "labels": len(printed),
        "kiosk_id": kiosk_doc["kiosk_id"],
        "backend_url": backend_url,
        "files": {k: str(v) for k, v in paths.items()},
    }


def _write_files(
    out_dir: Path, kiosk_doc: dict, printed: list[labels.IssuedLabel], users: list[dict]
) -> dict:
    paths = {
        "kiosk": out_dir / KIOSK_FILE,
        "labels": out_dir / LABELS_FILE,
        "pdf": out_dir / PDF_FILE,
        "users": out_dir / USERS_FILE,
    }
    ordered = {
        k: kiosk_doc[k]
        for k in ("backend_url", "kiosk_id", "secret", "community", "label_public_key", "doors")
    }
    _write_atomically(paths["kiosk"], (json.dumps(ordered, indent=2) + "\n").encode())
    lines = "".join(f"{lab.household}\t{lab.serial}\t{lab.payload}\n" for lab in printed)
    _write_atomically(paths["labels"], lines.encode("ascii"))
    _write_atomically(paths["pdf"], labels.label_sheet_pdf(printed, "sortpoint demo labels"))
    users_doc = (json.dumps({"users": users}, indent=2) + "\n").encode()
    _write_atomically(paths["users"], users_doc, private=True)
    return paths


def describe(result: dict) -> list[str]:
    """Return the lines that tell a person what was seeded and what to try."""
    state = "created" if result["created"] else "already there"
    added = ", ".join(f"{n} {what}" for what, n in result["added"].items() if n) or "nothing new"
    files = result["files"]
    return [
        f"demo community {state}; added {added}",
        f"{result['households']} households, {result['labels']} labels, kiosk {result['kiosk_id']}",
        f"kiosk config:  {files['kiosk']}",
        f"label payloads: {files['labels']}",
        f"label sheet:   {files['pdf']}",
        f"demo users (one per role) and their passwords: {files['users']}",
        f"the desk: {len(REWARDS)} rewards (`sortpoint reward list {SLUG}`); household "
        f"{WELCOME_HOUSEHOLD} has {WELCOME_POINTS} welcome points to spend; a token for the "
        'manager: `sortpoint user token demo-manager` (README, "Try the desk")',
    ]
