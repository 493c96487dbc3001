"""Pure code shared by the kiosk and the backend: the wire contract.

Nothing here imports Flask, SQLAlchemy or a hardware library, so the kiosk can
use it on a Raspberry Pi.  ``protocol.labels`` is the signed bag-label codec,
``protocol.signing`` the HMAC request-signature scheme of docs/protocol.md.
"""


class ProtocolError(Exception):
    """Root of every error raised by the protocol package."""
