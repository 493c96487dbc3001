"""The pages (``/account/``: log in, who am I, log out, language) and the token API (``/api/v1/``).

Each view reads the request, calls one use case (``use_cases``, which owns its
transaction and checks the actor's scope) and renders or encodes the answer.
"""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required, login_user, logout_user

from backend.core.errors import SortpointError
from backend.people import LANGUAGE_COOKIE, errors, use_cases
from backend.people.forms import LanguageForm, LoginForm, LogoutForm
from backend.people.services import LoginLimits, SessionUser

pages = Blueprint(
    "people",
    __name__,
    url_prefix="/account",
    template_folder="templates",
    static_folder="static",
)
errors.install_pages(pages)

ROLE_NAMES = {
    "admin": _l("Administrator"),
    "manager": _l("Manager"),
    "staff": _l("Staff"),
    "resident": _l("Resident"),
}

api = Blueprint("people_api", __name__, url_prefix="/api/v1")
errors.install_api(api)


class PageUser:
    """The Flask-Login user of a page session: its actor, and the id its cookie keeps."""

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def __init__(self, found: SessionUser):
        self.found = found
        self.actor = found.actor

    def get_id(self) -> str:
        return self.found.session_id


def _safe_next(target: str | None) -> str:
    """Only a path of this site (never ``//host`` or a URL) is followed after a form."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("people.me")


def _limits() -> LoginLimits:
    config = current_app.config
    return LoginLimits(
        per_user=config["LOGIN_MAX_FAILURES"],
        per_address=config["LOGIN_MAX_FAILURES_PER_ADDRESS"],
        window=dt.timedelta(seconds=config["LOGIN_WINDOW_S"]),
    )


@pages.get("/")
def index():
    return redirect(url_for("people.me"))


@pages.route("/login", methods=["GET", "POST"])
def login():
    """The login form; a good password starts a session, a bad one is counted (the limit)."""
    form = LoginForm()
    error, status = None, 200
    if form.validate_on_submit():
        try:
            found = use_cases.login(
                form.username.data, form.password.data, request.remote_addr or "", _limits()
            )
        except SortpointError as exc:
            error, status = exc, exc.http_status
        else:
            login_user(PageUser(found))
            return redirect(_safe_next(request.args.get("next")))
    elif request.method == "POST":
        status = 400
    return render_template(
        "people/login.html", form=form, error=error, language=LanguageForm()
    ), status


@pages.post("/logout")
def logout():
    LogoutForm()  # CSRFProtect has checked the token before this view runs
    logout_user()
    return redirect(url_for("people.login"))


@pages.get("/me")
@login_required
def me():
    """Who am I: user name, role, scopes and, for a resident, their household."""
    info = use_cases.whoami(current_user.actor)
    return render_template(
        "people/me.html", info=info, roles=ROLE_NAMES, logout=LogoutForm(), language=LanguageForm()
    )


@pages.post("/language")
def language():
    """Keep the user's language choice in a cookie (the browser's is used until then)."""
    form = LanguageForm()
    target = _safe_next(form.next.data)
    response = redirect(target)
    if form.validate():
        response.set_cookie(
            LANGUAGE_COOKIE,
            form.language.data,
            max_age=365 * 24 * 3600,
            httponly=True,
            samesite="Lax",
            secure=current_app.config["COOKIE_SECURE"],
        )
    return response


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@api.get("/me")
def api_me():
    """The token's user: role, scopes and, for a resident, their household and balance."""
    return jsonify(use_cases.me_by_token(_bearer()))


@api.get("/communities/<slug>/households/<code>")
def api_household(slug: str, code: str):
    """A household's code, building, balance and latest entries, for a user in scope."""
    return jsonify(use_cases.household_by_token(_bearer(), slug, code))
