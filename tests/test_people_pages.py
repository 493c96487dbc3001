"""The pages: CSRF on every form, cookie flags, the content security policy, HTML errors,
zh-CN and English by the browser or the user, and translations that ship compiled."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from backend import create_app
from backend.core.db import db
from tests.people_world import make_world
from tests.test_people import csrf_token, log_in

TRANSLATIONS = Path(__file__).resolve().parent.parent / "backend" / "people" / "translations"


@pytest.fixture
def secure_app(database_url, monkeypatch):
    """The app as production starts it: SORTPOINT_COOKIE_SECURE unset means Secure cookies."""
    from backend.schema import create_schema

    monkeypatch.delenv("SORTPOINT_COOKIE_SECURE", raising=False)
    application = create_app({"DATABASE_URL": database_url, "TESTING": True})
    create_schema(db.engine)
    yield application
    db.engine.dispose()


@pytest.fixture
def world(secure_app):
    return make_world(secure_app)


def _client(app):
    # the test client sends Secure cookies over http://localhost, as a browser does on https
    return app.test_client()


def test_session_cookie_is_httponly_samesite_lax_and_secure(secure_app, world):
    client = _client(secure_app)
    response = log_in(client, "mgr-oak", world.passwords["mgr-oak"])
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("sortpoint_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie


def test_the_demo_setting_turns_secure_off(database_url, monkeypatch):
    monkeypatch.setenv("SORTPOINT_COOKIE_SECURE", "0")
    app = create_app({"DATABASE_URL": database_url, "TESTING": True})
    assert app.config["SESSION_COOKIE_SECURE"] is False
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_a_form_post_without_its_csrf_token_is_refused(secure_app, world):
    client = _client(secure_app)
    refused = client.post(
        "/account/login", data={"username": "mgr-oak", "password": world.passwords["mgr-oak"]}
    )
    assert refused.status_code == 400 and refused.mimetype == "text/html"
    assert "not sent from this site" in refused.text
    assert client.get("/account/me").status_code == 302  # not logged in
    # logged in, a logout without the token leaves the session as it was
    assert log_in(client, "mgr-oak", world.passwords["mgr-oak"]).status_code == 302
    assert client.post("/account/logout").status_code == 400
    assert client.get("/account/me").status_code == 200
    wrong = client.post("/account/logout", data={"csrf_token": "forged"})
    assert wrong.status_code == 400
    token = csrf_token(client.get("/account/me").text)
    assert client.post("/account/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/account/me").status_code == 302


def test_the_signed_kiosk_api_needs_no_csrf_token(secure_app):
    # a POST to the kiosk API is judged by its signature (401), never refused for CSRF (400)
    response = _client(secure_app).post(
        "/api/v1/deposits", data=b'{"deposits": []}', content_type="application/json"
    )
    assert response.status_code == 401 and response.json["error"]["code"] != "bad_request"


def test_pages_carry_a_content_security_policy_and_load_nothing_from_elsewhere(secure_app, world):
    client = _client(secure_app)
    pages = [client.get("/account/login")]
    log_in(client, "res-h1", world.passwords["res-h1"])
    pages.append(client.get("/account/me"))
    pages.append(client.get("/account/nothing-here"))
    for page in pages:
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert not re.search(r'(src|href|action)="(https?:)?//', page.text), page.text
        assert "<script" not in page.text and "style=" not in page.text
    css = client.get("/account/static/people.css")
    assert css.status_code == 200 and css.mimetype == "text/css"


def test_errors_under_account_are_html_and_under_api_json(secure_app):
    client = _client(secure_app)
    page = client.get("/account/nothing-here")
    assert page.status_code == 404 and page.mimetype == "text/html" and "<h1>404</h1>" in page.text
    wrong_method = client.delete("/account/me")
    assert wrong_method.status_code == 405 and wrong_method.mimetype == "text/html"
    assert "GET" in wrong_method.headers["Allow"]
    api = client.get("/api/v1/nothing-here")
    assert api.status_code == 404 and api.json["error"]["code"] == "not_found"


def test_the_browser_language_picks_chinese_or_english(secure_app):
    client = _client(secure_app)
    chinese = client.get("/account/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert '<html lang="zh-CN">' in chinese.text and "<h1>登录</h1>" in chinese.text
    bare_zh = client.get("/account/login", headers={"Accept-Language": "zh"})
    assert "<h1>登录</h1>" in bare_zh.text
    english = client.get("/account/login", headers={"Accept-Language": "en-GB,en;q=0.8"})
    assert '<html lang="en">' in english.text and "<h1>Log in</h1>" in english.text
    other = client.get("/account/login", headers={"Accept-Language": "fr"})
    assert "<h1>Log in</h1>" in other.text


def test_the_users_choice_beats_the_browsers(secure_app, world):
    client = _client(secure_app)
    log_in(client, "res-h1", world.passwords["res-h1"])
    me = client.get("/account/me", headers={"Accept-Language": "en"})
    assert "Who am I" in me.text
    chosen = client.post(
        "/account/language",
        data={"language": "zh_CN", "next": "/account/me", "csrf_token": csrf_token(me.text)},
    )
    assert chosen.status_code == 302 and chosen.headers["Location"] == "/account/me"
    cookie = chosen.headers["Set-Cookie"]
    assert cookie.startswith("sortpoint_lang=zh_CN") and "HttpOnly" in cookie
    me = client.get("/account/me", headers={"Accept-Language": "en"})
    assert "我的账户" in me.text and "居民" in me.text and "积分" in me.text
    back = client.post(
        "/account/language",
        data={"language": "en", "next": "https://evil.example/", "csrf_token": csrf_token(me.text)},
    )
    assert back.headers["Location"] == "/account/me"  # never off the site
    assert "Who am I" in client.get("/account/me", headers={"Accept-Language": "zh-CN"}).text


def test_the_committed_translations_are_compiled_from_the_po_file():
    """A fresh clone serves Chinese with no build step: the .mo is committed and current."""
    po_path = TRANSLATIONS / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"
    with po_path.open("rb") as f:
        po = {m.id: m.string for m in read_po(f) if m.id}
    with (po_path.with_suffix(".mo")).open("rb") as f:
        mo = {m.id: m.string for m in read_mo(f) if m.id}
    assert po and all(po.values()), "every message has a Chinese translation"
    assert mo == po, "run: .venv/bin/pybabel compile -d backend/people/translations"


def test_every_page_string_is_in_the_catalog():
    templates = Path(__file__).resolve().parent.parent / "backend" / "people"
    po_path = TRANSLATIONS / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"
    with po_path.open("rb") as f:
        known = {m.id for m in read_po(f) if m.id}
    used = set()
    for path in [*templates.glob("templates/people/*.html"), *templates.glob("*.py")]:
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r'(?:_|_l|gettext)\("([^"]+)"\)', text))
    assert used and used <= known, sorted(used - known)
