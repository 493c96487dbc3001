"""The station's status file, ``<state_dir>/status.json``, and the technician's reset request.

The running station rewrites the status file (atomically: a temporary file renamed over
it) on every state change and every few seconds; ``kiosk status`` reads it together with
the journal, so it works while the kiosk runs.  ``kiosk reset`` drops a request file the
station picks up on its next loop.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

STATUS_FILE = "status.json"
RESET_FILE = "reset-request"
#: a status older than this (seconds) means the station is not running
STALE_AFTER_S = 30.0


def write_status(state_dir: str | Path, status: dict) -> None:
    """Replace the status file atomically."""
    path = Path(state_dir) / STATUS_FILE
    tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status, sort_keys=True, default=str), encoding="utf-8")
    os.replace(tmp, path)


def read_status(state_dir: str | Path, *, now: float | None = None) -> dict | None:
    """Return the last status written, with ``running`` set from its age; None if none."""
    path = Path(state_dir) / STATUS_FILE
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    now = time.time() if now is None else now
    updated = status.get("updated_at") or 0
    status["running"] = (
        bool(status.get("pid")) and not status.get("stopped") and (now - updated <= STALE_AFTER_S)
    )
    return status


def request_reset(state_dir: str | Path, by: str = "technician") -> Path:
    """Ask the running station to reset its fault; return the request file."""
    path = Path(state_dir) / RESET_FILE
    path.write_text(json.dumps({"by": by, "at": time.time()}), encoding="utf-8")
    return path


def take_reset_request(state_dir: str | Path) -> dict | None:
    """Return and remove a pending reset request, if any."""
    path = Path(state_dir) / RESET_FILE
    try:
        request = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        request = {} if path.exists() else None
    if request is None:
        return None
    path.unlink(missing_ok=True)
    return request
