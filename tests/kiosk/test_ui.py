"""The touch-screen page: its JSON API and input checks, its snapshot, and a real browser on it.

The browser tests drive Debian's Chromium (``/usr/bin/chromium``, installed by
scripts/apt-deps.sh) through Playwright's Python API; they fail, never skip, when it is
missing, so CI cannot pass without them.  Screenshots at 800x480 (the official 7" display) go
to ``$SORTPOINT_UI_SHOTS`` when it is set, for a person to look at.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import threading
from pathlib import Path

import msgspec
import pytest

from kiosk.station import Station
from kiosk.texts import REASONS, REJECTIONS
from kiosk.ui import CANCELLABLE, UiServer, parse_choice
from tests.kiosk.commands import ROOT, install_dry_run, run_kiosk
from tests.kiosk.stations import (
    Keys,
    Session,
    free_port,
    offline_config,
    refused_port,
    threaded_station,
    wait_for,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOORS = {1: "plastic", 2: "paper"}


@pytest.fixture
def keys():
    return Keys()


# -- the HTTP API on a stub station ------------------------------------------------------------


class StubStation:
    """What the server sees of a station: a snapshot to read and a queue to post to."""

    def __init__(self):
        self.view = {"state": "choosing", "prompt": "choose a bin", "seq": 3}
        self.posted: list[tuple[str, dict]] = []
        self.accept = True

    def post(self, name: str, **kwargs) -> bool:
        if self.accept:
            self.posted.append((name, kwargs))
        return self.accept


@pytest.fixture
def served():
    stub = StubStation()
    server = UiServer(lambda: stub.view, stub.post, DOORS, host="127.0.0.1", port=0)
    server.start()
    yield stub, server
    server.stop()


def request(server, method, path, body=None, headers=None):
    """Send one request; return (status, headers, decoded body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = dict(headers or {})
    data = body
    if isinstance(body, (dict, list)):
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        content_type = response.getheader("Content-Type", "")
        decoded = json.loads(raw) if content_type == "application/json" else raw.decode()
        return response.status, dict(response.getheaders()), decoded
    finally:
        conn.close()


def test_serves_the_page_and_its_files_with_strict_headers(served):
    _, server = served
    status, headers, body = request(server, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert '<script src="/app.js"' in body and "http" not in body.replace("http-equiv", "")
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    status, headers, body = request(server, "GET", "/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert "/api/choose" in body
    status, headers, _ = request(server, "GET", "/style.css")
    assert status == 200 and headers["Content-Type"].startswith("text/css")
    status, _, body = request(server, "GET", "/../kiosk/config.py")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_state_is_the_station_snapshot(served):
    stub, server = served
    status, _, body = request(server, "GET", "/api/state")
    assert (status, body) == (200, stub.view)


def test_a_known_category_is_posted_to_the_station(served):
    stub, server = served
    status, _, body = request(server, "POST", "/api/choose", {"category": "paper", "door": 2})
    assert status == 202 and body["queued"] == "choose"
    status, _, _ = request(server, "POST", "/api/choose", {"category": "plastic"})
    assert status == 202
    status, _, _ = request(server, "POST", "/api/cancel", {})
    assert status == 202
    assert stub.posted == [
        ("choose", {"choice": "2 paper"}),
        ("choose", {"choice": "plastic"}),
        ("cancel", {}),
    ]


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ({"category": "glass"}, {}, 400, "unknown_category"),
        ({"category": "Plastic"}, {}, 400, "unknown_category"),
        ({"category": 1}, {}, 400, "bad_category"),
        ({}, {}, 400, "bad_category"),
        ({"category": "paper", "door": 1}, {}, 400, "wrong_door"),
        ({"category": "paper", "door": 9}, {}, 400, "unknown_door"),
        ({"category": "paper", "door": "2"}, {}, 400, "bad_door"),
        ({"category": "paper", "door": True}, {}, 400, "bad_door"),
        ({"category": "paper", "why": 1}, {}, 400, "bad_request"),
        (["paper"], {}, 400, "bad_request"),
        (b"{not json", {"Content-Type": "application/json"}, 400, "bad_json"),
        (b"\xff\xfe", {"Content-Type": "application/json"}, 400, "bad_json"),
        (
            b'{"category": "paper"}',
            {"Content-Type": "text/plain"},
            415,
            "bad_content_type",
        ),
        (
            b"category=paper",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "bad_content_type",
        ),
        (
            b'{"category": "' + b"x" * 2000 + b'"}',
            {"Content-Type": "application/json"},
            413,
            "too_large",
        ),
    ],
)
def test_bad_input_gets_a_json_400_and_nothing_is_posted(served, body, headers, status, code):
    stub, server = served
    got_status, got_headers, answer = request(server, "POST", "/api/choose", body, headers)
    assert (got_status, answer["error"]["code"]) == (status, code)
    assert got_headers["Content-Type"] == "application/json"
    assert answer["error"]["message"]
    assert stub.posted == []


def test_other_sites_and_rebinding_hosts_are_refused(served):
    stub, server = served
    body = {"category": "paper"}
    status, _, answer = request(
        server, "POST", "/api/choose", body, {"Origin": "http://evil.example"}
    )
    assert (status, answer["error"]["code"]) == (403, "bad_origin")
    status, _, answer = request(server, "GET", "/api/state", headers={"Host": "evil.example:80"})
    assert (status, answer["error"]["code"]) == (403, "bad_host")
    status, _, _ = request(
        server,
        "POST",
        "/api/choose",
        body,
        {"Origin": f"http://127.0.0.1:{server.port}"},
    )
    assert status == 202
    assert stub.posted == [("choose", {"choice": "paper"})]


def test_cancel_takes_only_an_empty_object_and_unknown_actions_404(served):
    stub, server = served
    status, _, answer = request(server, "POST", "/api/cancel", {"now": True})
    assert (status, answer["error"]["code"]) == (400, "bad_request")
    status, _, answer = request(server, "POST", "/api/reset", {})
    assert (status, answer["error"]["code"]) == (404, "not_found")
    assert stub.posted == []


def test_a_full_event_queue_answers_503(served):
    stub, server = served
    stub.accept = False
    status, _, answer = request(server, "POST", "/api/choose", {"category": "paper"})
    assert (status, answer["error"]["code"]) == (503, "busy")


def test_parse_choice_keeps_a_door_shared_by_two_bins_exact():
    doors = {1: "plastic", 2: "plastic"}
    assert parse_choice({"category": "plastic", "door": 2}, doors) == "2 plastic"


def test_cancel_is_offered_exactly_where_the_chart_allows_it():
    assert CANCELLABLE == {
        "choosing",
        "weighing_before",
        "door_unlocked",
        "showing_result",
    }


# -- the snapshot and the station wiring ---------------------------------------------------------


def ui_config(state_dir, keys, port: int, **kw):
    config = offline_config(
        state_dir,
        keys.public,
        **kw,
    )
    return msgspec.structs.replace(
        config, ui=msgspec.structs.replace(config.ui, enabled=True, port=port)
    )


def test_the_snapshot_follows_the_flow(tmp_path, keys):
    s = Session(ui_config(tmp_path / "s", keys, port=0))
    try:
        ui = s.station.ui
        view = ui.view.current()
        assert view["state"] == "idle" and view["prompt"] == "Scan the label on your bag"
        assert view["doors"] == [
            {"number": 1, "category": "plastic", "name": "Plastic", "button": False},
            {"number": 2, "category": "paper", "name": "Paper", "button": False},
        ]
        assert not view["can_cancel"] and not view["choosing"]
        s.run(f"{keys.label(household='H042')}\nexpect-state choosing")
        view = ui.view.current()
        assert view["choosing"] and view["can_cancel"]
        assert view["deposit"]["household"] == "H042" and view["deposit"]["status"] == "in_progress"
        assert view["limit_s"] == 20 and 0 < view["remaining_s"] <= 20
        s.run("paper\ndrop 700\nclose\nexpect-state showing_result")
        s.station.step()
        view = ui.view.current()
        deposit = view["deposit"]
        assert (deposit["door"], deposit["category"], deposit["net_g"]) == (
            2,
            "paper",
            700,
        )
        assert deposit["status"] in ("waiting", "pending")  # the backend is unreachable
        assert deposit["points"] is None and deposit["balance"] is None
        assert "700 g of paper" in view["prompt"]
        s.run("block 1\nscan " + keys.label(serial="SER0000002"))
        s.flow.send("fail", kind="door_jammed", reason="door 1 did not lock")
        s.station.step()
        view = ui.view.current()
        assert view["state"] == "fault" and view["fault"]["kind"] == "door_jammed"
        assert view["prompt"].startswith("Out of order")
    finally:
        s.close()


def test_the_snapshot_names_categories_from_the_backend_config(tmp_path, keys):
    s = Session(ui_config(tmp_path / "s", keys, port=0))
    try:
        s.journal.set_meta(
            "backend_config",
            {
                "categories": [{"code": "plastic", "name": "Plastic & cans"}],
                "rules": [],
            },
        )
        s.station._load_backend_config()
        s.station.step()
        names = [d["name"] for d in s.station.ui.view.current()["doors"]]
        assert names == ["Plastic & cans", "Paper"]
    finally:
        s.close()


def answered_session(tmp_path, keys, **result) -> Session:
    """Return a session showing a 700 g paper deposit with the backend's ``result`` injected."""
    s = Session(ui_config(tmp_path / "s", keys, port=0))
    s.run(f"{keys.label(household='H042')}\npaper\ndrop 700\nclose\nexpect-state showing_result")
    s.flow.send("answer", result={"id": "x", "balance": 40, "error": None, **result})
    s.station.step()
    return s


FLAGGED_REUSE = {"status": "flagged", "points": 0, "reason": "label_reused"}


@pytest.mark.parametrize(
    ("result", "status", "points", "reason"),
    [
        # a retried upload answers duplicate: the page shows the first outcome, not "+0 points"
        (
            {**FLAGGED_REUSE, "status": "duplicate", "original_status": "flagged"},
            "flagged",
            0,
            REASONS["label_reused"],
        ),
        (
            {"status": "duplicate", "original_status": "accepted", "points": 7, "reason": None},
            "accepted",
            7,
            None,
        ),
        (FLAGGED_REUSE, "flagged", 0, REASONS["label_reused"]),
        ({"status": "flagged", "points": 0, "reason": None}, "flagged", 0, "it needs a check"),
        (
            {
                "status": "rejected",
                "points": 0,
                "error": {"code": "label_revoked", "message": "label SER1 was revoked"},
            },
            "rejected",
            0,
            REJECTIONS["label_revoked"],
        ),
    ],
)
def test_the_page_gets_the_outcome_and_words_the_station_shows(
    tmp_path, keys, result, status, points, reason
):
    s = answered_session(tmp_path, keys, **result)
    try:
        code, _, view = request(s.station.ui.server, "GET", "/api/state")
        assert code == 200 and view["state"] == "showing_result"
        deposit = view["deposit"]
        assert (deposit["status"], deposit["points"], deposit["reason"]) == (
            status,
            points,
            reason,
        )
        assert deposit["duplicate"] == (result["status"] == "duplicate")
        assert (reason or "+7 points") in view["prompt"]  # the same words as the screen
        assert "_" not in (deposit["reason"] or "")  # no raw codes for a resident
    finally:
        s.close()


def test_seq_moves_only_when_the_page_must_redraw(tmp_path, keys):
    s = Session(ui_config(tmp_path / "s", keys, port=0))
    try:
        s.run(f"{keys.label()}\nexpect-state choosing")
        first = s.station.ui.view.current()
        s.run("wait 2")  # only the countdown moved
        second = s.station.ui.view.current()
        assert second["seq"] == first["seq"] and second["remaining_s"] < first["remaining_s"]
        s.run("cancel")
        assert s.station.ui.view.current()["seq"] > first["seq"]
    finally:
        s.close()


def test_the_ui_port_is_taken_at_construction_and_released_at_shutdown(tmp_path, keys):
    port = free_port()
    s = Session(ui_config(tmp_path / "s", keys, port=port))
    assert s.station.ui.url == f"http://127.0.0.1:{port}/"
    with pytest.raises(OSError):
        Station(ui_config(tmp_path / "t", keys, port=port))
    s.close()
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))  # free again


def test_a_station_without_ui_opens_no_port(tmp_path, keys):
    config = offline_config(tmp_path / "s", keys.public)
    assert config.ui.enabled is False and config.ui.host == "127.0.0.1"
    s = Session(config)
    try:
        assert s.station.ui is None
    finally:
        s.close()


# -- a real browser on the page -------------------------------------------------------------------


class PointsBackend:
    """A backend stand-in for the sync thread: category names, rules, and credited points."""

    def __init__(self, public_key: str, balance: int = 100):
        self.public_key = public_key
        self.balance = balance
        self.lock = threading.Lock()

    def fetch_config(self) -> dict:
        return {
            "label_public_key": self.public_key,
            "community": "green",
            "categories": [
                {"code": "plastic", "name": "Plastic"},
                {"code": "paper", "name": "Paper & card"},
            ],
            "rules": [
                {"category": "plastic", "points_per_kg": 20, "min_net_g": 0},
                {"category": "paper", "points_per_kg": 10, "min_net_g": 0},
            ],
            "revoked_serials": [],
        }

    def post_deposits(self, items: list[dict], **kwargs) -> list[dict]:
        per_kg = {"plastic": 20, "paper": 10}
        results = []
        with self.lock:
            for item in items:
                points = item["net_g"] * per_kg[item["category"]] // 1000
                self.balance += points
                results.append(
                    {
                        "id": item["id"],
                        "status": "accepted",
                        "points": points,
                        "balance": self.balance,
                    }
                )
        return results


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/apt-deps.sh (Debian package chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def running(tmp_path, keys):
    """A threaded station on fakes, with the page on a free port and the stand-in backend."""
    config = ui_config(
        tmp_path / "s",
        keys,
        port=0,
        # the answer comes from the sync thread, which a busy machine may run late: the
        # station waits for it as long as the page test below does (no "no answer" screen)
        timeouts={"category_s": 60, "result_display_s": 120, "backend_answer_s": 20},
        backend_timeout_s=20,
        weighing={"window_s": 0.3},
    )
    with threaded_station(config, client=PointsBackend(keys.public)) as station:
        wait_for(lambda: station.category_names.get("paper") == "Paper & card")
        yield station


def shot(page, name: str) -> None:
    folder = os.environ.get("SORTPOINT_UI_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def open_page(browser, station):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 800, "height": 480})
    page.goto(station.ui.url)
    expect(page.locator("#prompt")).to_have_text("Scan the label on your bag", timeout=15_000)
    return page


def test_a_deposit_through_the_touch_screen(browser, running, keys):
    from playwright.sync_api import expect

    station = running
    page = open_page(browser, station)
    shot(page, "idle")
    station.post("scan", payload=keys.label(household="H007"))
    bins = page.locator("#choices button")
    expect(bins).to_have_count(2, timeout=15_000)
    expect(bins.nth(0)).to_contain_text("Plastic")
    expect(bins.nth(1)).to_contain_text("Paper & card")
    expect(page.locator("#household")).to_have_text("Household H007")
    expect(page.locator("#cancel")).to_be_visible()
    shot(page, "choosing")
    page.get_by_role("button", name=re.compile("^Plastic")).click()
    wait_for(lambda: station.flow.state == "door_unlocked")
    door, other = station.hardware.doors[1].door, station.hardware.doors[2].door
    assert not door.locked and door.unlock_count == 1
    assert other.locked and other.unlock_count == 0
    expect(page.locator("#prompt")).to_contain_text("Door 1 (plastic) is open", timeout=15_000)
    expect(page.locator("#choices")).to_be_hidden()
    shot(page, "door_unlocked")
    assert door.open_by_hand()
    station.hardware.scales["main"].place(450)
    wait_for(lambda: station.flow.state == "door_open")
    door.close_by_hand()
    expect(page.locator("#points")).to_have_text("+9 points", timeout=30_000)
    expect(page.locator("#balance")).to_have_text("Balance: 109 points")
    expect(page.locator("#weighed")).to_have_text("450 g of plastic")
    expect(page.locator("#cancel")).to_have_text("Done")
    shot(page, "result")
    [row] = station.journal.deposits(limit=5)
    assert (row.state, row.door, row.net_g, row.points, row.balance) == (
        "synced",
        1,
        450,
        9,
        109,
    )
    assert door.locked
    page.close()


def test_cancel_on_the_touch_screen_returns_to_idle(browser, running, keys):
    from playwright.sync_api import expect

    station = running
    page = open_page(browser, station)
    expect(page.locator("#cancel")).to_be_hidden()
    station.post("scan", payload=keys.label())
    expect(page.locator("#choices button")).to_have_count(2, timeout=15_000)
    page.locator("#cancel").click()
    wait_for(lambda: station.flow.state == "idle")
    expect(page.locator("#prompt")).to_have_text(
        "Cancelled. Scan the label on your bag", timeout=15_000
    )
    expect(page.locator("#choices")).to_be_hidden()
    assert all(slot.door.unlock_count == 0 for slot in station.hardware.doors.values())
    page.close()


def test_the_page_shows_a_fault_and_a_stopped_kiosk(browser, running, keys):
    from playwright.sync_api import expect

    station = running
    page = open_page(browser, station)
    station.post("fail", kind="door_jammed", reason="door 2 did not lock")
    expect(page.locator("#prompt")).to_contain_text("Out of order", timeout=15_000)
    expect(page.locator("body")).to_have_class(re.compile("state-fault"))
    shot(page, "fault")
    station.ui.stop()  # the kiosk process goes away: the page says so instead of freezing
    expect(page.locator("#prompt")).to_have_text(
        "Please wait: the kiosk is starting", timeout=15_000
    )
    page.close()


def test_a_retried_flagged_deposit_shows_as_held_on_the_page(browser, tmp_path, keys):
    from playwright.sync_api import expect

    s = answered_session(
        tmp_path,
        keys,
        **{**FLAGGED_REUSE, "status": "duplicate", "original_status": "flagged"},
    )
    try:
        page = browser.new_page(viewport={"width": 800, "height": 480})
        page.goto(s.station.ui.url)
        expect(page.locator("#points")).to_have_text("0 points", timeout=15_000)
        expect(page.locator("#balance")).to_have_text(f"Held for review: {REASONS['label_reused']}")
        expect(page.locator("#weighed")).to_have_text("700 g of paper")
        shot(page, "result_duplicate_flagged")
        page.close()
    finally:
        s.close()


# -- the command line -----------------------------------------------------------------------------


def pi_like_config(tmp_path: Path, keys) -> Path:
    """A config as on a Pi (RPi.GPIO, door buttons) whose parts the simulator replaces."""
    path = tmp_path / "kiosk.toml"
    path.write_text(
        f"""
[kiosk]
name = "ui-cli"
state_dir = "state"
[backend]
url = "http://127.0.0.1:{refused_port()}"
kiosk_id = "k_cli"
secret = "s3cret-s3cret-s3cret"
community = "green"
label_public_key = "{keys.public}"
timeout_s = 3.0
[gpio]
backend = "rpi"
[scanner]
driver = "fake"
[scale]
driver = "fake"
[buttons]
debounce_ms = 40
[ui]
enabled = false
[timeouts]
backend_answer_s = 1.0
[[doors]]
number = 1
category = "plastic"
capacity_g = 40000
driver = "fake"
button_pin = 5
[[doors]]
number = 2
category = "paper"
capacity_g = 40000
driver = "fake"
button_pin = 6
"""
    )
    return path


def test_run_sim_serves_the_page_on_ui_port_with_a_pi_config(tmp_path, keys):
    config_path = pi_like_config(tmp_path, keys)
    script = tmp_path / "script.txt"
    script.write_text(f"{keys.label()}\nplastic\ndrop 300\nclose\nexpect 300 g of plastic\n")
    port = free_port()
    result = run_kiosk(
        "run",
        "--sim",
        "--config",
        str(config_path),
        "--ui-port",
        str(port),
        "--script",
        str(script),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"touch-screen page: http://127.0.0.1:{port}/" in result.stdout
    assert "ok: '300 g of plastic'" in result.stdout
    quiet = run_kiosk(
        "run",
        "--sim",
        "--config",
        str(config_path),
        "--script",
        str(script),
        cwd=tmp_path,
    )
    assert quiet.returncode == 0 and "touch-screen page" not in quiet.stdout


def test_run_says_so_when_the_ui_port_is_taken(tmp_path, keys):
    config_path = pi_like_config(tmp_path, keys)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_kiosk(
            "run",
            "--sim",
            "--config",
            str(config_path),
            "--ui-port",
            str(port),
            "--script",
            os.devnull,
            cwd=tmp_path,
        )
    assert result.returncode == 1
    assert "cannot start" in result.stderr and "Address already in use" in result.stderr


# -- on the Pi: the example config, the Chromium unit, the install script ------------------------

PI_4 = "Raspberry Pi 4 Model B Rev 1.5"


def test_the_example_config_shows_the_page_and_has_a_button_per_door():
    from kiosk.config import load_config

    config = load_config(ROOT / "kiosk" / "example.toml")
    assert config.ui.enabled and config.ui.host == "127.0.0.1"
    assert all(d.button_pin is not None for d in config.doors)
    unit = (ROOT / "deploy" / "sortpoint-kiosk-ui.service").read_text()
    assert f"SORTPOINT_UI_PORT={config.ui.port}" in unit


def test_the_ui_unit_runs_chromium_in_kiosk_mode_on_the_local_page():
    unit = (ROOT / "deploy" / "sortpoint-kiosk-ui.service").read_text()
    for flag in ("--kiosk", "--noerrdialogs", "--disable-infobars", "--no-first-run"):
        assert flag in unit
    assert '"http://127.0.0.1:$SORTPOINT_UI_PORT/"' in unit
    assert "WantedBy=graphical-session.target" in unit and "Restart=always" in unit


def test_install_script_installs_the_ui_unit_only_when_asked(tmp_path):
    def dry_run(*args):
        return install_dry_run(tmp_path, PI_4, *args, USER_UNIT_DIR=str(tmp_path / "user"))

    assert "sortpoint-kiosk-ui" not in dry_run()
    out = dry_run("--with-ui")
    assert f"{tmp_path}/user/sortpoint-kiosk-ui.service" in out
    assert "systemctl --global enable sortpoint-kiosk-ui.service" in out
    assert not (tmp_path / "user").exists()  # a dry run changes nothing
