"""Who is acting, and where they may: the ``Actor`` every scoped service takes.

Scoping is enforced here and in the services that call it, never in templates:
a service given an ``Actor`` calls ``require_community`` or ``require_household``
before it reads or writes, and a refusal is ``Forbidden`` (403) raised before
anything changed.

* ``admin``: everything.
* ``manager``: the communities in their scopes (the desk and the catalog, later).
* ``staff``: the communities or buildings in their scopes (the audit, later).
* ``resident``: their one household, read only.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.core.errors import Forbidden


@dataclass(frozen=True)
class Place:
    """A household's place: its id, its community's and its building's."""

    household_id: int
    community_id: int
    building_id: int


@dataclass(frozen=True)
class Actor:
    """A signed-in user (or a token's user): id, role and scope ids."""

    user_id: int
    username: str
    role: str
    communities: frozenset[int] = frozenset()
    buildings: frozenset[int] = frozenset()
    households: frozenset[int] = frozenset()

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def sees_community(self, community_id: int) -> bool:
        """True if the actor may see every household of the community."""
        return self.is_admin or (
            self.role in ("manager", "staff") and community_id in self.communities
        )

    def require_community(self, community_id: int) -> None:
        """Raise Forbidden unless the actor may act on the whole community."""
        if not self.sees_community(community_id):
            raise Forbidden(f"user {self.username!r} may not act on this community")

    def sees_household(self, place: Place) -> bool:
        """True if the actor may see the household at ``place``."""
        if self.sees_community(place.community_id):
            return True
        if self.role == "staff":
            return place.building_id in self.buildings
        if self.role == "resident":
            return place.household_id in self.households
        return False

    def require_household(self, place: Place) -> None:
        """Raise Forbidden unless the actor may see the household at ``place``."""
        if not self.sees_household(place):
            raise Forbidden(f"user {self.username!r} may not see this household")

    def require_role(self, *roles: str) -> None:
        """Raise Forbidden unless the actor's role is one of ``roles`` (admin always passes)."""
        if not self.is_admin and self.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}")
