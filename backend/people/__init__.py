"""People and access: users, roles and scopes, login sessions, API tokens, the who-am-I page.

``init_app`` sets up, on the app:

* the session's signing key, derived from the secret keys (``backend.core.secrets``),
  so every worker and app server given the same keys accepts the same cookies;
* cookies ``HttpOnly``, ``SameSite=Lax`` and ``Secure`` unless ``SORTPOINT_COOKIE_SECURE=0``
  (the demo on http://127.0.0.1);
* Flask-Login (the page sessions), Flask-WTF's ``CSRFProtect`` (every form), Flask-Babel
  (zh-CN and English, by the user's choice or the browser's Accept-Language);
* a Content-Security-Policy on every HTML answer;
* the pages under ``/account/`` (errors as HTML) and the token API under ``/api/v1/``
  (errors as JSON, like the kiosk API).

The composition root exempts the kiosk API's blueprint from CSRF (``csrf``): it is
authenticated by request signatures, never by a cookie.
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, request
from flask_wtf.csrf import CSRFProtect

from backend.core.web import claim_path_prefix

HERE = Path(__file__).resolve().parent
LANGUAGES = ("en", "zh_CN")
LANGUAGE_COOKIE = "sortpoint_lang"
#: pages load only what the app serves: no CDN, no inline script or style
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)

csrf = CSRFProtect()


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def select_locale() -> str:
    """The user's choice (a cookie set by the language form), else the browser's, else English."""
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES, default="en") or "en"


def html_lang() -> str:
    """The page's ``lang`` attribute: ``zh-CN`` or ``en``."""
    from flask_babel import get_locale

    locale = get_locale()
    return "zh-CN" if locale is not None and locale.language == "zh" else "en"


def _security_headers(response):
    if response.mimetype == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def _session_keys(app: Flask) -> None:
    """Derive SECRET_KEY (and fallbacks, for rotation) from the secret keys, unless given."""
    if app.config.get("SECRET_KEY"):
        return
    from backend.core import secrets

    keyring = app.extensions.get("sortpoint.secrets")
    if not isinstance(keyring, secrets.Keyring):
        return  # a CLI process without keys: it serves no page
    derived = keyring.derived_keys("flask session")
    app.config["SECRET_KEY"] = derived[0]
    app.config["SECRET_KEY_FALLBACKS"] = derived[1:]


def init_app(app: Flask) -> None:
    """Register login sessions, CSRF, translations, the pages and the token API on ``app``."""
    from flask_babel import Babel
    from flask_login import LoginManager

    from backend.people import errors, use_cases, views

    secure = app.config.get("COOKIE_SECURE")
    if secure is None:
        secure = _flag("SORTPOINT_COOKIE_SECURE", True)
    # Flask's own defaults (cookie "session", no SameSite, not Secure) are replaced, not kept
    app.config.update(
        COOKIE_SECURE=secure,
        SESSION_COOKIE_NAME="sortpoint_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
    )
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # the token lives as long as the session
    app.config.setdefault(
        "LOGIN_MAX_FAILURES", int(os.environ.get("SORTPOINT_LOGIN_MAX_FAILURES", 5))
    )
    app.config.setdefault(
        "LOGIN_MAX_FAILURES_PER_ADDRESS",
        int(os.environ.get("SORTPOINT_LOGIN_MAX_FAILURES_PER_ADDRESS", 50)),
    )
    app.config.setdefault(
        "LOGIN_WINDOW_S", int(os.environ.get("SORTPOINT_LOGIN_WINDOW_S", 15 * 60))
    )
    _session_keys(app)

    csrf.init_app(app)
    Babel(
        app,
        locale_selector=select_locale,
        default_translation_directories=str(HERE / "translations"),
    )
    login_manager = LoginManager(app)
    login_manager.login_view = "people.login"
    login_manager.login_message = None  # the login page says what to do

    @login_manager.user_loader
    def _load(session_id: str):
        found = use_cases.session_user(session_id)
        return views.PageUser(found) if found is not None else None

    csrf.exempt(views.api)  # bearer tokens, never cookies: nothing for a forged form to ride on
    app.register_blueprint(views.pages)
    app.register_blueprint(views.api)
    claim_path_prefix(app, views.pages.url_prefix, errors.page_http_error)
    app.after_request(_security_headers)
    app.jinja_env.globals["html_lang"] = html_lang
