"""Issue 2's commands, in the order it lists them, make a community the kiosk API credits."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest

from backend import create_app
from backend.core.db import db
from protocol.signing import signed_headers
from tests.clitools import run, run_json

DEPOSITS_PATH = "/api/v1/deposits"


@pytest.fixture
def fresh_app(database_url):
    """An app on an empty database: the flow starts with `db upgrade`."""
    application = create_app({"DATABASE_URL": database_url, "TESTING": True})
    yield application
    db.engine.dispose()


def _post(client, kiosk: dict, items: list[dict], secret: str | None = None):
    body = json.dumps({"deposits": items}).encode()
    headers = signed_headers(
        kiosk["kiosk_id"], secret or kiosk["secret"], "POST", DEPOSITS_PATH, body
    )
    return client.post(
        DEPOSITS_PATH, data=body, headers=headers | {"Content-Type": "application/json"}
    )


def _deposit(label: str, net_g: int, door: int = 1, category: str = "plastic") -> dict:
    return {
        "id": str(uuid.uuid4()),
        "label": label,
        "door": door,
        "category": category,
        "net_g": net_g,
        "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
    }


def _setup_by_cli(runner, tmp_path) -> tuple[dict, list[str]]:
    run(runner, "db", "upgrade")
    run(runner, "community", "create", "oak", "--name", "Oak Gardens")
    run(runner, "building", "add", "oak", "B1", "--name", "Building 1")
    run(runner, "household", "add", "oak", "B1-101", "--building", "B1", "--unit", "101")
    csv_file = tmp_path / "households.csv"
    csv_file.write_text("code,building,unit\nB1-102,B1,102\nB1-201,B1,201\n", encoding="utf-8")
    run(runner, "household", "import", "oak", str(csv_file))
    run(runner, "rules", "set", "oak", "--category", "plastic", "--points-per-kg", "30",
        "--min-g", "50", "--daily-cap", "200")  # fmt: skip
    kiosk = run_json(runner, "kiosk", "register", "oak", "Gate", "--door", "1=plastic:40000",
                     "--door", "2=paper")  # fmt: skip
    payloads = run(runner, "labels", "issue", "oak", "B1-102", "--count", "3").stdout.split()
    return kiosk, payloads


def test_cli_made_community_is_credited_through_the_api(fresh_app, tmp_path):
    runner, client = fresh_app.test_cli_runner(), fresh_app.test_client()
    kiosk, payloads = _setup_by_cli(runner, tmp_path)

    item = _deposit(payloads[0], net_g=1234)
    answer = _post(client, kiosk, [item])
    assert answer.status_code == 200, answer.get_data(as_text=True)
    result = answer.get_json()["results"][0]
    # 1234 g * 30 points/kg // 1000 = 37 points
    assert (result["status"], result["points"], result["balance"]) == ("accepted", 37, 37)

    replay = _post(client, kiosk, [item]).get_json()["results"][0]
    assert (replay["status"], replay["points"]) == ("duplicate", 37)

    shown = run_json(runner, "ledger", "show", "B1-102", "--community", "oak")
    assert (shown["balance"], shown["entry_count"]) == (37, 1)
    assert run_json(runner, "ledger", "verify")["ok"] is True


def test_revoked_label_and_disabled_kiosk(fresh_app, tmp_path):
    runner, client = fresh_app.test_cli_runner(), fresh_app.test_client()
    kiosk, payloads = _setup_by_cli(runner, tmp_path)
    serial = payloads[1].split(".")[3]
    run(runner, "labels", "revoke", serial, "--reason", "lost")
    result = _post(client, kiosk, [_deposit(payloads[1], net_g=500)]).get_json()["results"][0]
    assert result["status"] == "rejected" and result["error"]["code"] == "label_revoked"

    assert _post(client, kiosk, [_deposit(payloads[2], 500)], secret="x" * 43).status_code == 401
    run(runner, "kiosk", "disable", kiosk["kiosk_id"])
    assert _post(client, kiosk, [_deposit(payloads[2], net_g=500)]).status_code == 401
    assert run_json(runner, "ledger", "show", "B1-102", "--community", "oak")["balance"] == 0
