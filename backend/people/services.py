"""People's services: users and scopes, passwords, tokens, logins, and scoped reads.

Every function takes the session of a transaction the caller opened (the use
cases in ``use_cases``); a domain error raised here rolls it back.  Scoped reads
take an ``Actor`` and check it (``access``) before reading anything of the place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from backend.core.errors import (
    AlreadyExists,
    Forbidden,
    InvalidInput,
    NotFound,
    SortpointError,
    TooManyAttempts,
    Unauthorized,
)
from backend.core.models import utcnow
from backend.ledger import services as ledger
from backend.ledger import statements
from backend.people import credentials
from backend.people.access import Actor, Place
from backend.people.models import ROLES, ApiToken, LoginFailure, User, UserScope
from backend.registry import services as registry
from backend.registry.models import Building, Community, Household

USERNAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
#: how many entries a household read returns (the latest, oldest first)
HOUSEHOLD_ENTRIES = 50
#: failed logins older than this are deleted when a new failure is recorded
FAILURE_KEEP = dt.timedelta(days=1)


class InvalidCredentials(Unauthorized):
    """Wrong user name or password, or a disabled user (the answer does not say which)."""

    code = "invalid_credentials"


@dataclass(frozen=True)
class LoginLimits:
    """The login limit: at most ``per_user`` failures for one user name and ``per_address``
    from one address within ``window``; then logins for it are refused until the window passes."""

    per_user: int = 5
    per_address: int = 50
    window: dt.timedelta = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class SessionUser:
    """What a login session keeps: the actor and the stamp its session cookie carries."""

    actor: Actor
    stamp: str

    @property
    def session_id(self) -> str:
        return f"{self.actor.user_id}:{self.stamp}"


# ----------------------------------------------------------------- users


def _check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise InvalidInput(
            f"invalid user name {username!r} (allowed: {USERNAME_RE.pattern}, lower case)"
        )
    return username


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user {username!r}")
    return user


def _split_ref(ref: str, what: str) -> tuple[str, str]:
    slug, sep, code = ref.partition("/")
    if not sep or not slug or not code:
        raise InvalidInput(f"give the {what} as COMMUNITY/CODE, not {ref!r}")
    return slug, code


def create_user(
    session: Session,
    username: str,
    role: str,
    communities: Sequence[str] = (),
    buildings: Sequence[str] = (),
    households: Sequence[str] = (),
) -> tuple[User, str]:
    """Create a user with a generated password and their scopes; return (user, password).

    ``admin``: no scope; ``manager``: one or more communities; ``staff``:
    communities and/or buildings (``SLUG/CODE``); ``resident``: exactly one
    household (``SLUG/CODE``).
    """
    _check_username(username)
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    allowed = {
        "admin": (False, False, False),
        "manager": (True, False, False),
        "staff": (True, True, False),
        "resident": (False, False, True),
    }[role]
    for given, ok, option in zip(
        (communities, buildings, households),
        allowed,
        ("--community", "--building", "--household"),
        strict=True,
    ):
        if given and not ok:
            raise InvalidInput(f"a {role} takes no {option}")
    if role == "manager" and not communities:
        raise InvalidInput("a manager needs at least one --community")
    if role == "staff" and not (communities or buildings):
        raise InvalidInput("staff need at least one --community or --building")
    if role == "resident" and len(households) != 1:
        raise InvalidInput("a resident needs exactly one --household COMMUNITY/CODE")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise AlreadyExists(f"user {username!r} exists already")
    scopes: list[UserScope] = []
    for slug in dict.fromkeys(communities):
        scopes.append(UserScope(community_id=registry.get_community(session, slug).id))
    for ref in dict.fromkeys(buildings):
        slug, code = _split_ref(ref, "building")
        community = registry.get_community(session, slug)
        scopes.append(UserScope(building_id=registry.get_building(session, community, code).id))
    for ref in households:
        slug, code = _split_ref(ref, "household")
        community = registry.get_community(session, slug)
        scopes.append(UserScope(household_id=registry.get_household(session, community, code).id))
    password = credentials.new_password()
    user = User(username=username, role=role, password_hash=credentials.hash_password(password))
    session.add(user)
    session.flush()
    for scope in scopes:
        scope.user_id = user.id
        session.add(scope)
    session.flush()
    return user, password


def reset_password(session: Session, username: str) -> str:
    """Give the user a new generated password (their login sessions end); return it."""
    user = get_user(session, username)
    password = credentials.new_password()
    user.password_hash = credentials.hash_password(password)
    return password


def disable_user(session: Session, username: str) -> tuple[User, bool]:
    """Disable a user: no login, no session, no token works any more; (user, changed)."""
    user = get_user(session, username)
    if user.disabled_at is not None:
        return user, False
    user.disabled_at = utcnow()
    return user, True


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.username)))


def scope_names(session: Session, user_ids: Iterable[int]) -> dict[int, dict[str, list[str]]]:
    """Return, per user id, their scopes by name: community slugs, SLUG/CODE of buildings and
    households."""
    wanted = list(user_ids)
    names = {u: {"communities": [], "buildings": [], "households": []} for u in wanted}
    if not wanted:
        return names
    in_scope = UserScope.user_id.in_(wanted)
    for user_id, slug in session.execute(
        select(UserScope.user_id, Community.slug)
        .join(Community, Community.id == UserScope.community_id)
        .where(in_scope)
        .order_by(UserScope.id)
    ):
        names[user_id]["communities"].append(slug)
    for kind, model in (("buildings", Building), ("households", Household)):
        column = UserScope.building_id if model is Building else UserScope.household_id
        for user_id, slug, code in session.execute(
            select(UserScope.user_id, Community.slug, model.code)
            .join(model, model.id == column)
            .join(Community, Community.id == model.community_id)
            .where(in_scope)
            .order_by(UserScope.id)
        ):
            names[user_id][kind].append(f"{slug}/{code}")
    return names


def user_info(user: User, scopes: dict[str, list[str]]) -> dict:
    return {
        "username": user.username,
        "role": user.role,
        "disabled": user.disabled_at is not None,
        "created_at": user.created_at,
        "scopes": scopes,
    }


def actor_for(session: Session, user: User) -> Actor:
    """Return the actor of ``user``: role and scope ids."""
    communities, buildings, households = set(), set(), set()
    for scope in session.scalars(select(UserScope).where(UserScope.user_id == user.id)):
        if scope.community_id is not None:
            communities.add(scope.community_id)
        elif scope.building_id is not None:
            buildings.add(scope.building_id)
        else:
            households.add(scope.household_id)
    return Actor(
        user.id,
        user.username,
        user.role,
        frozenset(communities),
        frozenset(buildings),
        frozenset(households),
    )


# ---------------------------------------------------------- login sessions


def session_stamp(user: User) -> str:
    """A stamp of the password hash: a new password ends every session made with the old one."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:16]


def session_user(session: Session, session_id: str) -> SessionUser | None:
    """Return the user of a session cookie's id, or None (unknown, disabled, password changed)."""
    user_id, _, stamp = (session_id or "").partition(":")
    if not user_id.isdigit():
        return None
    user = session.get(User, int(user_id))
    if user is None or user.disabled_at is not None or session_stamp(user) != stamp:
        return None
    return SessionUser(actor_for(session, user), stamp)


def attempt_login(
    session: Session,
    username: str,
    password: str,
    remote_addr: str,
    limits: LoginLimits,
    now: dt.datetime | None = None,
) -> SessionUser | SortpointError:
    """Check a login against the shared limit and the password; record a failure.

    Returns the error instead of raising it, so the caller's transaction
    commits the failure it recorded.  The user's row is locked first
    (``FOR UPDATE`` on PostgreSQL; SQLite's write transaction is exclusive
    anyway), so concurrent attempts at one user name from several workers
    count one after another.
    """
    now = now or utcnow()
    username = (username or "").strip().lower()[:64]
    remote_addr = (remote_addr or "unknown")[:64]
    user = session.scalar(select(User).where(User.username == username).with_for_update())
    since = now - limits.window
    by_user, by_address = session.execute(
        select(
            func.count().filter(LoginFailure.username == username),
            func.count().filter(LoginFailure.remote_addr == remote_addr),
        ).where(
            LoginFailure.occurred_at >= since,
            or_(LoginFailure.username == username, LoginFailure.remote_addr == remote_addr),
        )
    ).one()
    if by_user >= limits.per_user or by_address >= limits.per_address:
        minutes = max(1, int(limits.window.total_seconds() // 60))
        return TooManyAttempts(f"too many failed logins; try again in up to {minutes} minutes")
    ok, new_hash = credentials.check_password(
        user.password_hash if user is not None else None, password or ""
    )
    if not ok or user is None or user.disabled_at is not None:
        session.execute(delete(LoginFailure).where(LoginFailure.occurred_at < now - FAILURE_KEEP))
        session.add(LoginFailure(username=username, remote_addr=remote_addr, occurred_at=now))
        return InvalidCredentials("wrong user name or password")
    if new_hash is not None:
        user.password_hash = new_hash  # argon2 parameters changed: rehash now
    session.execute(delete(LoginFailure).where(LoginFailure.username == username))
    return SessionUser(actor_for(session, user), session_stamp(user))


# ------------------------------------------------------------------ tokens


def issue_token(session: Session, username: str) -> tuple[str, ApiToken]:
    """Make a new API token for the user; return (the token, shown once, and its row)."""
    user = get_user(session, username)
    if user.disabled_at is not None:
        raise InvalidInput(f"user {username!r} is disabled")
    token, prefix, digest = credentials.new_token()
    row = ApiToken(user_id=user.id, prefix=prefix, token_sha256=digest)
    session.add(row)
    session.flush()
    return token, row


def revoke_token(session: Session, prefix: str) -> tuple[ApiToken, bool]:
    """Revoke the token with that public prefix; (row, changed)."""
    row = session.scalar(select(ApiToken).where(ApiToken.prefix == prefix))
    if row is None:
        raise NotFound(f"no token with prefix {prefix!r}")
    if row.revoked_at is not None:
        return row, False
    row.revoked_at = utcnow()
    return row, True


def actor_by_token(session: Session, token: str | None) -> Actor:
    """Return the actor of a bearer token; Unauthorized for a missing, unknown or revoked one."""
    if not token:
        raise Unauthorized("send Authorization: Bearer TOKEN")
    prefix = credentials.token_prefix(token)
    row = (
        session.scalar(select(ApiToken).where(ApiToken.prefix == prefix))
        if prefix is not None
        else None
    )
    if row is None or not credentials.same_digest(
        row.token_sha256, credentials.token_sha256(token)
    ):
        raise Unauthorized("unknown token")
    if row.revoked_at is not None:
        raise Unauthorized("the token was revoked")
    user = session.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        raise Unauthorized("the token's user is disabled")
    return actor_for(session, user)


# ------------------------------------------------------------ scoped reads


def household_view(session: Session, actor: Actor, slug: str, code: str) -> dict:
    """Return a household's code, building, balance and latest entries, if the actor may see it.

    Forbidden (not NotFound) where the actor may not see the whole community,
    so its households' existence is not told to those who may not see them.
    """
    community = session.scalar(select(Community).where(Community.slug == slug))
    if community is None:
        if actor.is_admin:
            raise NotFound(f"no community {slug!r}")
        raise Forbidden(f"user {actor.username!r} may not act on this community")
    household = session.scalar(
        select(Household).where(Household.community_id == community.id, Household.code == code)
    )
    if household is None:
        if actor.sees_community(community.id):
            raise NotFound(f"community {slug!r} has no household {code!r}")
        raise Forbidden(f"user {actor.username!r} may not see this household")
    actor.require_household(Place(household.id, community.id, household.building_id))
    statement = statements.household_statement(session, code, slug, HOUSEHOLD_ENTRIES)
    return {
        "community": slug,
        "code": household.code,
        "building": session.get(Building, household.building_id).code,
        "unit": household.unit,
        "balance": statement["balance"],
        "entries": statement["entries"],
    }


def me(session: Session, actor: Actor) -> dict:
    """Return who the actor is: user name, role, scopes, and a resident's household."""
    info = {
        "username": actor.username,
        "role": actor.role,
        "scopes": scope_names(session, [actor.user_id])[actor.user_id],
        "household": None,
    }
    if actor.role == "resident" and actor.households:
        household = session.get(Household, min(actor.households))
        info["household"] = {
            "community": session.get(Community, household.community_id).slug,
            "code": household.code,
            "building": session.get(Building, household.building_id).code,
            "unit": household.unit,
            "balance": ledger.balance(session, household.id),
        }
    return info
