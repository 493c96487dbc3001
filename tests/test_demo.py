"""sortpoint demo seed: makes the demo community once and writes the kiosk's files."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from backend import demo
from backend.core.db import db
from backend.ledger.models import PointsRule
from backend.registry.models import Building, Community, Household, Kiosk, Label
from backend.registry.sealed import kiosk_secret
from protocol.labels import public_key_from_text, verify_label
from tests.clitools import run, run_json

URL = "http://127.0.0.1:5123"


def _counts() -> dict:
    with db.begin() as s:
        return {
            model.__tablename__: s.scalar(select(func.count()).select_from(model))
            for model in (Community, Building, Household, Kiosk, Label, PointsRule)
        }


def test_seed_twice_creates_once_and_rewrites_the_same_files(runner, tmp_path):
    first = run_json(runner, "demo", "seed", "--out-dir", str(tmp_path), "--backend-url", URL)
    assert first["created"] is True
    counts = _counts()
    assert counts == {
        "communities": 1,
        "buildings": len(demo.BUILDINGS),
        "households": 20,
        "kiosks": 1,
        "labels": demo.LABELED_HOUSEHOLDS * demo.LABELS_PER_HOUSEHOLD,
        "points_rules": len(demo.RULES),
    }
    files = {name: (tmp_path / name).read_bytes() for name in (demo.KIOSK_FILE, demo.LABELS_FILE)}

    second = run_json(runner, "demo", "seed", "--out-dir", str(tmp_path), "--backend-url", URL)
    assert second["created"] is False
    assert second["added"] == {
        "households": 0,
        "rules": 0,
        "labels": 0,
        "users": 0,
        "rewards": 0,
    }
    assert second["kiosk_id"] == first["kiosk_id"]
    assert _counts() == counts
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data, name


def test_kiosk_file_has_the_fields_the_simulator_reads(runner, tmp_path):
    run(runner, "demo", "seed", "--out-dir", str(tmp_path), "--backend-url", URL)
    doc = json.loads((tmp_path / demo.KIOSK_FILE).read_text())
    assert list(doc) == [
        "backend_url",
        "kiosk_id",
        "secret",
        "community",
        "label_public_key",
        "doors",
    ]
    assert doc["backend_url"] == URL and doc["community"] == "demo"
    assert doc["kiosk_id"].startswith("k_") and len(doc["secret"]) >= 40
    assert doc["doors"] == [
        {"door": 1, "category": "plastic", "capacity_g": 40000},
        {"door": 2, "category": "paper", "capacity_g": 40000},
        {"door": 3, "category": "metal", "capacity_g": 30000},
    ]
    with db.begin() as s:
        kiosk = s.get(Kiosk, doc["kiosk_id"])
        assert kiosk_secret(kiosk) == doc["secret"] and kiosk.enabled


def test_labels_file_lines_verify_with_the_published_key(runner, tmp_path):
    run(runner, "demo", "seed", "--out-dir", str(tmp_path))
    key = public_key_from_text(
        json.loads((tmp_path / demo.KIOSK_FILE).read_text())["label_public_key"]
    )
    lines = (tmp_path / demo.LABELS_FILE).read_text().splitlines()
    assert len(lines) == demo.LABELED_HOUSEHOLDS * demo.LABELS_PER_HOUSEHOLD
    for line in lines:
        household, serial, payload = line.split("\t")
        claims = verify_label(payload, key)
        assert (claims.community, claims.household, claims.serial) == ("demo", household, serial)
    assert (tmp_path / demo.PDF_FILE).read_bytes().startswith(b"%PDF")


def test_seed_completes_a_partly_seeded_demo(runner, tmp_path):
    run(runner, "community", "create", "demo", "--name", "Made by hand")
    run(runner, "building", "add", "demo", "B1", "--name", "B1")
    run(runner, "household", "add", "demo", "B1-101", "--building", "B1")
    out = run_json(runner, "demo", "seed", "--out-dir", str(tmp_path))
    assert out["created"] is False and out["added"]["households"] == 19
    assert _counts()["households"] == 20


def test_seed_text_output_says_where_the_files_are(runner, tmp_path):
    out = run(runner, "demo", "seed", "--out-dir", str(tmp_path)).stdout
    assert "demo community created" in out
    assert str(tmp_path / demo.KIOSK_FILE) in out


def _log_in(app, username: str, password: str) -> int:
    import re

    client = app.test_client()
    token = re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', client.get("/account/login").text
    ).group(1)
    data = {"username": username, "password": password, "csrf_token": token}
    return client.post("/account/login", data=data).status_code


def test_seed_makes_one_user_per_role_who_can_log_in(app, runner, tmp_path):
    first = run_json(runner, "demo", "seed", "--out-dir", str(tmp_path), "--backend-url", URL)
    assert first["added"]["users"] == 4
    path = tmp_path / demo.USERS_FILE
    assert first["files"]["users"] == str(path)
    assert path.stat().st_mode & 0o077 == 0  # the passwords are for the owner only
    users = json.loads(path.read_text())["users"]
    assert sorted(u["role"] for u in users) == ["admin", "manager", "resident", "staff"]
    for user in users:
        assert _log_in(app, user["username"], user["password"]) == 302, user

    again = run_json(runner, "demo", "seed", "--out-dir", str(tmp_path), "--backend-url", URL)
    assert again["added"]["users"] == 0
    assert json.loads(path.read_text())["users"] == users  # re-running keeps them

    path.unlink()  # the passwords are lost: the next run gives new ones that work
    third = run_json(runner, "demo", "seed", "--out-dir", str(tmp_path), "--backend-url", URL)
    assert third["added"]["users"] == 4
    renewed = json.loads(path.read_text())["users"]
    for old, new in zip(users, renewed, strict=True):
        assert new["password"] != old["password"]
        assert _log_in(app, new["username"], new["password"]) == 302
        assert _log_in(app, old["username"], old["password"]) == 401


def test_seed_fills_the_desk_once_and_the_demo_manager_can_redeem(app, runner, tmp_path):
    first = run_json(runner, "demo", "seed", "--out-dir", str(tmp_path), "--backend-url", URL)
    assert first["added"]["rewards"] == len(demo.REWARDS)
    again = run_json(runner, "demo", "seed", "--out-dir", str(tmp_path), "--backend-url", URL)
    assert again["added"]["rewards"] == 0
    catalog = run_json(runner, "reward", "list", "demo", "--json")["rewards"]
    assert sorted(r["name"] for r in catalog) == sorted(demo.REWARDS)
    soap = next(r["id"] for r in catalog if r["name"] == "Hand soap")
    token = run_json(runner, "user", "token", "demo-manager", "--json")["token"]
    response = app.test_client().post(
        "/api/v1/communities/demo/redemptions",
        json={"household": demo.WELCOME_HOUSEHOLD, "items": [{"reward": soap, "quantity": 2}]},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "demo-try-1"},
    )
    assert response.status_code == 201, response.json
    # the welcome points were credited once, however many times the seed ran, to a household
    # without labels (the simulator's documented script shows labelled ones starting at 0)
    with db.read() as s:
        labelled = s.scalar(
            select(func.count())
            .select_from(Label)
            .join(Household, Household.id == Label.household_id)
            .where(Household.code == demo.WELCOME_HOUSEHOLD)
        )
    assert labelled == 0
    assert response.json["points"] == 100
    assert response.json["balance"] == demo.WELCOME_POINTS - 100
