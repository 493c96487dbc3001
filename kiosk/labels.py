"""Offline label verification at the kiosk.

The kiosk holds only its community's public label key and the list of revoked
serials (both from the cached ``/api/v1/kiosk/config``), so it can refuse a
forged, foreign or revoked label at the scanner even while the network is
down.  The backend checks every label again on upload; this check is what
keeps a door shut for a bad label.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocol import ProtocolError
from protocol.labels import (
    LabelClaims,
    LabelError,
    parse_label,
    public_key_from_text,
    verify_label,
)

__all__ = ["LabelVerifier", "LabelRevoked", "LabelWrongCommunity", "LabelError", "label_text"]


class LabelRevoked(LabelError):
    """The label verifies but staff revoked its serial."""

    code = "label_revoked"


class LabelWrongCommunity(LabelError):
    """The label names another community than this kiosk's."""

    code = "label_wrong_community"


def label_text(payload: str) -> str:
    """Return the label in a scanned payload: without the whitespace a reader may add around it."""
    return payload.strip()


class LabelVerifier:
    """Verify label payloads with a community's public key and its revoked serials."""

    def __init__(self, public_key_text: str, community: str, revoked_serials: Iterable[str] = ()):
        try:
            self._public_key = public_key_from_text(public_key_text)
        except ProtocolError as exc:
            raise ValueError(f"label public key: {exc}") from None
        self.public_key_text = public_key_text
        self.community = community
        self.revoked_serials = frozenset(revoked_serials)

    def verify(self, payload: str) -> LabelClaims:
        """Return the claims of a genuine, current label of this community, else raise.

        Raises LabelFormatError (not a label), LabelWrongCommunity,
        LabelSignatureError (forged or damaged) or LabelRevoked.  Whitespace
        around ``payload`` (a scanner's line end) is not part of the label:
        ``label_text`` is what the kiosk records and uploads.
        """
        payload = label_text(payload)
        claims, _ = parse_label(payload)
        # community before signature: a neighbour's label would otherwise be
        # reported as forged, which misleads the resident
        if claims.community != self.community:
            raise LabelWrongCommunity(
                f"label of community {claims.community!r}, this kiosk serves {self.community!r}"
            )
        verify_label(payload, self._public_key)  # raises LabelSignatureError
        if claims.serial in self.revoked_serials:
            raise LabelRevoked(f"label {claims.serial} has been revoked")
        return claims

    @classmethod
    def from_backend_config(
        cls, backend_config: dict | None, *, community: str, fallback_public_key: str | None
    ) -> LabelVerifier:
        """Build a verifier from the cached ``/api/v1/kiosk/config`` answer.

        Before the first successful fetch there is no cached config; the
        bootstrap key from the kiosk config is used then, with no revocations.
        """
        config = backend_config or {}
        key = config.get("label_public_key") or fallback_public_key
        if not key:
            raise ValueError(
                "no label public key: the backend config was never fetched and"
                " backend.label_public_key is not set"
            )
        revoked = config.get("revoked_serials") or []
        return cls(key, config.get("community") or community, revoked)
