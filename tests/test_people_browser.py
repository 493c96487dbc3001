"""The pages in a real browser: Debian's Chromium driven by Playwright, on a served app.

A manager logs in, sees the who-am-I page in English and in Chinese, and logs out; a
form posted without its CSRF token is refused.  Like tests/kiosk/test_ui.py these fail,
never skip, when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from backend import create_app
from backend.core.db import db
from tests.kiosk.test_ui import CHROMIUM, CHROMIUM_ARGS
from tests.people_world import make_world


@pytest.fixture
def served(database_url):
    """The app on http://127.0.0.1 (Secure cookies off, as scripts/demo serves it)."""
    from backend.schema import create_schema

    app = create_app({"DATABASE_URL": database_url, "COOKIE_SECURE": False})
    create_schema(db.engine)
    world = make_world(app)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", world
    httpd.shutdown()
    thread.join(timeout=10)
    db.engine.dispose()


@pytest.fixture
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


def test_a_manager_logs_in_sees_who_they_are_in_both_languages_and_logs_out(served, browser):
    base, world = served
    context = browser.new_context(locale="en-US", viewport={"width": 1024, "height": 768})
    page = context.new_page()
    blocked = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security" in m.text else None)
    page.goto(base + "/account/me")
    assert page.url.startswith(base + "/account/login")  # sent to log in first
    assert page.locator("h1").inner_text() == "Log in"
    page.fill("#username", "mgr-oak")
    page.fill("#password", world.passwords["mgr-oak"])
    page.click("button.primary")
    page.wait_for_url(base + "/account/me")
    assert page.locator("h1").inner_text() == "Who am I"
    assert page.locator("#username").inner_text() == "mgr-oak"
    assert page.locator("#role").inner_text() == "Manager"
    assert page.locator("#communities").inner_text() == "oak"
    # the stylesheet loaded under the page's content security policy
    assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex"

    page.click("button[value=zh_CN]")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "我的账户"
    assert page.locator("#role").inner_text() == "物业经理"
    assert page.locator("html").get_attribute("lang") == "zh-CN"

    page.click("#logout")
    page.wait_for_url("**/account/login")
    assert page.locator("h1").inner_text() == "登录"  # the choice outlives the session
    page.goto(base + "/account/me")
    assert page.url.startswith(base + "/account/login")
    assert blocked == []
    context.close()


def test_chinese_from_the_browsers_language(served, browser):
    base, world = served
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.goto(base + "/account/login")
    assert page.locator("h1").inner_text() == "登录"
    page.fill("#username", "mgr-oak")
    page.fill("#password", world.passwords["mgr-oak"])
    page.click("button.primary")
    page.wait_for_url(base + "/account/me")
    assert page.locator("h1").inner_text() == "我的账户"
    context.close()


def test_a_form_posted_without_its_csrf_token_is_refused(served, browser):
    base, world = served
    context = browser.new_context(locale="en-US")
    page = context.new_page()
    page.goto(base + "/account/login")
    # the page's own form, with its CSRF token taken out, as a forged form would be
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.fill("#username", "mgr-oak")
    page.fill("#password", world.passwords["mgr-oak"])
    with page.expect_navigation() as navigation:
        page.click("button.primary")
    assert navigation.value.status == 400
    assert "not sent from this site" in page.locator(".error").inner_text()
    page.goto(base + "/account/me")
    assert page.url.startswith(base + "/account/login")  # no session was made
    context.close()
