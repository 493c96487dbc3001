"""The registry's sealed columns: kiosk secrets and label-signing keys (``backend.core.secrets``).

Each value is sealed for its place and owner (``kiosks.secret:<kiosk id>``,
``communities.label_private_key:<slug>``): a sealed value copied into another
row does not open.  Migration 0003 spells out the same contexts.

``rotate_secrets`` re-seals every stored value under the newest key (and seals
any value found in clear); it is idempotent and safe to re-run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from backend.core import secrets
from backend.core.db import db
from backend.registry.models import Community, Kiosk
from protocol.labels import private_key_from_text

KIOSKS = Kiosk.__table__
COMMUNITIES = Community.__table__


def kiosk_secret_context(kiosk_id: str) -> str:
    """The associated data a kiosk's secret is sealed with."""
    return f"kiosks.secret:{kiosk_id}"


def label_key_context(slug: str) -> str:
    """The associated data a community's label-signing key is sealed with."""
    return f"communities.label_private_key:{slug}"


def seal_kiosk_secret(kiosk_id: str, secret: str) -> str:
    """Return a kiosk's secret sealed for storage."""
    return secrets.seal(secret, kiosk_secret_context(kiosk_id))


def open_kiosk_secret(kiosk_id: str, stored: str) -> str:
    """Return a kiosk's secret in clear from its stored (sealed) form."""
    return secrets.open_sealed(stored, kiosk_secret_context(kiosk_id))


def kiosk_secret(kiosk: Kiosk) -> str:
    """Return the secret of a kiosk row in clear (to print it once, or to sign with it)."""
    return open_kiosk_secret(kiosk.id, kiosk.secret_sealed)


def seal_label_key(slug: str, private_key_text: str) -> str:
    """Return a community's label-signing key (base64url text) sealed for storage."""
    return secrets.seal(private_key_text, label_key_context(slug))


def label_signing_key(community: Community) -> Ed25519PrivateKey:
    """Open a community's label-signing key: only to sign labels."""
    text = secrets.open_sealed(
        community.label_private_key_sealed, label_key_context(community.slug)
    )
    return private_key_from_text(text)


@dataclass
class Rotation:
    """What ``rotate_secrets`` found and did."""

    key_id: str
    keys: list[str]
    kiosk_secrets: int = 0
    label_keys: int = 0
    resealed: int = 0
    was_clear: int = 0
    #: key id -> how many stored values were sealed under it before
    sealed_under: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """Return the report as a JSON-ready dict."""
        return asdict(self)


def reseal(session: Session) -> Rotation:
    """Re-seal every kiosk secret and label key not sealed under the newest key, in ``session``.

    Every stored value is opened (a value that does not open stops the whole
    rotation, naming its row); values already under the newest key are left as
    they are, so a second run changes nothing.
    """
    keyring = secrets.current()
    report = Rotation(keyring.primary_id, keyring.ids)
    kiosks = session.execute(
        select(KIOSKS.c.id, KIOSKS.c.secret).order_by(KIOSKS.c.id).with_for_update()
    ).all()
    communities = session.execute(
        select(COMMUNITIES.c.id, COMMUNITIES.c.slug, COMMUNITIES.c.label_private_key)
        .order_by(COMMUNITIES.c.id)
        .with_for_update()
    ).all()
    kiosk_updates = []
    for kiosk_id, stored in kiosks:
        report.kiosk_secrets += 1
        new = _resealed(keyring, report, stored, kiosk_secret_context(kiosk_id))
        if new is not None:
            kiosk_updates.append({"b_id": kiosk_id, "b_value": new})
    community_updates = []
    for community_id, slug, stored in communities:
        report.label_keys += 1
        new = _resealed(keyring, report, stored, label_key_context(slug))
        if new is not None:
            private_key_from_text(keyring.open(new, label_key_context(slug)))  # a usable key
            community_updates.append({"b_id": community_id, "b_value": new})
    if kiosk_updates:
        session.execute(
            update(KIOSKS)
            .where(KIOSKS.c.id == bindparam("b_id"))
            .values(secret=bindparam("b_value")),
            kiosk_updates,
        )
    if community_updates:
        session.execute(
            update(COMMUNITIES)
            .where(COMMUNITIES.c.id == bindparam("b_id"))
            .values(label_private_key=bindparam("b_value")),
            community_updates,
        )
    report.resealed = len(kiosk_updates) + len(community_updates)
    return report


def _resealed(keyring: secrets.Keyring, report: Rotation, stored: str, context: str) -> str | None:
    """Return ``stored`` sealed under the newest key, or None if it already is."""
    kid = secrets.sealed_key_id(stored)
    if kid is None:
        report.was_clear += 1
        return keyring.seal(stored, context)
    report.sealed_under[kid] = report.sealed_under.get(kid, 0) + 1
    plain = keyring.open(stored, context)
    return None if keyring.is_current(stored) else keyring.seal(plain, context)


def rotate_secrets() -> Rotation:
    """``sortpoint secrets rotate``: re-seal every stored secret under the newest key, in one transaction."""
    with db.begin() as session:
        return reseal(session)
