"""``sortpoint secrets``: the keys that seal kiosk secrets and label keys (``backend.core.secrets``)."""

from __future__ import annotations

from backend.core import secrets
from backend.core.cli import SortpointGroup, emit, json_option
from backend.registry import sealed

secrets_cli = SortpointGroup(
    "secrets", help="The keys that seal kiosk secrets and label keys at rest (README 'Production')."
)


@secrets_cli.command("new-key", needs_database=False)
@json_option
def new_key(as_json: bool) -> None:
    """Print a fresh secret key (32 random bytes, base64url) to put first in SORTPOINT_SECRET_KEYS."""
    key = secrets.new_key()
    emit({"key": key}, as_json, key)


@secrets_cli.command("rotate")
@json_option
def rotate(as_json: bool) -> None:
    """Re-seal every kiosk secret and label key under the newest key (safe to repeat)."""
    report = sealed.rotate_secrets()
    lines = [
        f"{report.kiosk_secrets} kiosk secret(s), {report.label_keys} label key(s): "
        f"{report.resealed} re-sealed under key {report.key_id}"
        + (f" ({report.was_clear} were in clear)" if report.was_clear else ""),
        f"keys, newest first: {', '.join(report.keys)}",
    ]
    if report.keys[1:]:
        lines.append(
            f"every stored value is sealed under {report.key_id}: "
            f"{', '.join(report.keys[1:])} may now be removed from the keys"
        )
    emit(report.as_dict(), as_json, lines)
