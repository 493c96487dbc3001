"""The touch-screen page: a tiny HTTP server on the kiosk, shown by Chromium in kiosk mode.

The server (stdlib ``http.server``, one daemon thread per request) serves one static page
(``kiosk/ui_static``: HTML, JS and CSS, no build step, nothing from the network) and a small
JSON API:

* ``GET /api/state``: the snapshot the page draws: state, the prompt the station shows, the
  doors with their category names, the deposit in progress and its result (points, balance,
  pending or held), the fault, and how long the current state still waits.
* ``POST /api/choose`` ``{"category": "plastic", "door": 1}`` (``door`` optional): a bin.
* ``POST /api/cancel`` ``{}``: back to idle where the flow allows it.

It never touches hardware or the flow: the snapshot is built by the station's own loop
(``StationView.refresh()``, called every step) and read here as an immutable dict; a choice
is checked (only the configured categories and doors, strict JSON) and then only *posted*
to the station's event queue, where the flow accepts or refuses it and says why on the
screen, which the page shows.  Bad input gets a JSON 400 naming the problem.

Bound to 127.0.0.1 by default: anyone who can reach the page can choose a bin.  Requests
whose ``Host`` is not this server's loopback address (DNS rebinding) or whose ``Origin`` is
another site are refused, and POSTs must be ``application/json`` (a plain cross-site form
cannot send that).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kiosk.flow import BUSY_STATES, DepositFlow, answer_outcome

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("ui_static")
#: URL path -> (file in STATIC_DIR, content type); nothing else is served from disk
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
MAX_BODY_BYTES = 1024
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
#: states the resident may cancel from (read off the chart, so it follows the flow)
CANCELLABLE = frozenset(
    state.id
    for state in DepositFlow.states
    if any("cancel" in t.event.split() for t in state.transitions)
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
}


class BadRequest(Exception):
    """A request the UI refuses: HTTP status, error code and message for the JSON body."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# -- the snapshot the page draws (built in the station loop's thread) ---------------------


def deposit_view(deposit, outcome: tuple[str, str | None] | None = None) -> dict | None:
    """Return what the page shows about the deposit in progress (or just finished).

    ``outcome`` is the flow's (status, why) for the backend's answer (``DepositFlow.outcome``):
    a duplicate shows as its first outcome, and the reason is the text the station shows.
    """
    if deposit is None:
        return None
    slot, answer = deposit.slot, deposit.answer or {}
    status, reason = "answered", None
    if deposit.net_g is None:
        status = "in_progress"
    elif deposit.net_g <= 0:
        status = "empty"
    elif deposit.answer is not None:
        status, reason = outcome or answer_outcome(answer)
    else:
        status = "pending" if deposit.answered else "waiting"
    return {
        "household": deposit.claims.household,
        "door": slot.number if slot else None,
        "category": slot.category if slot else None,
        "net_g": deposit.net_g,
        "estimate": deposit.estimate,
        "label_used": deposit.label_used,
        "status": status,
        "points": answer.get("points"),
        "balance": answer.get("balance"),
        "reason": reason,
        "duplicate": answer.get("status") == "duplicate",
    }


def build_view(station) -> dict:
    """Return the page's snapshot of ``station`` (call from the station loop's thread)."""
    flow, config, screen = station.flow, station.config, station.screen
    state = flow.state
    names = getattr(station, "category_names", {}) or {}
    limit_s = flow.timeout_s()
    remaining_s = None
    if limit_s is not None:
        elapsed_s = station.clock.monotonic() - flow.entered_at_s
        remaining_s = round(max(0.0, limit_s - elapsed_s), 1)
    return {
        "kiosk": config.kiosk.name,
        "state": state,
        "prompt": getattr(screen, "text", ""),
        "tone": getattr(screen, "tone", "info"),
        "busy": state in BUSY_STATES,
        "choosing": state == "choosing",
        "can_cancel": state in CANCELLABLE,
        "doors": [
            {
                "number": d.number,
                "category": d.category,
                "name": names.get(d.category) or d.category.replace("_", " ").capitalize(),
                "button": d.button_pin is not None,
            }
            for d in sorted(config.doors, key=lambda d: d.number)
        ],
        "deposit": deposit_view(flow.current, flow.outcome()),
        "fault": {"kind": flow.fault_kind, "reason": flow.fault_reason}
        if state == "fault"
        else None,
        "limit_s": limit_s,
        "remaining_s": remaining_s,
    }


class StationView:
    """The latest snapshot: rebuilt by the loop, read by the HTTP threads."""

    def __init__(self, station):
        self.station = station
        self._lock = threading.Lock()
        self._seq = 0
        self._content: dict | None = None
        self._view: dict = {"state": "starting", "prompt": "", "doors": [], "seq": 0}

    def refresh(self) -> None:
        """Rebuild the snapshot; ``seq`` moves only when something but the countdown changed."""
        view = build_view(self.station)
        content = {k: v for k, v in view.items() if k != "remaining_s"}
        with self._lock:
            if content != self._content:
                self._seq += 1
                self._content = content
            view["seq"] = self._seq
            view["updated_at"] = time.time()
            self._view = view  # a new dict each time: readers never see one half-built

    def current(self) -> dict:
        """Return the latest snapshot (never modified after it is published)."""
        with self._lock:
            return self._view


# -- input checking -------------------------------------------------------------------------


def parse_choice(body: Any, doors: dict[int, str]) -> str:
    """Return the ``choose`` event's choice for a request body; raise BadRequest if invalid."""
    if not isinstance(body, dict):
        raise BadRequest(400, "bad_request", "the body must be a JSON object")
    unknown = sorted(set(body) - {"category", "door"})
    if unknown:
        raise BadRequest(400, "bad_request", f"unknown field {unknown[0]!r}")
    category, door = body.get("category"), body.get("door")
    if not isinstance(category, str):
        raise BadRequest(400, "bad_category", "category must be a string")
    known = sorted(set(doors.values()))
    if category not in known:
        raise BadRequest(
            400,
            "unknown_category",
            f"no bin here takes {category[:40]!r} (known: {', '.join(known)})",
        )
    if door is None:
        return category
    if not isinstance(door, int) or isinstance(door, bool):
        raise BadRequest(400, "bad_door", "door must be an integer")
    if door not in doors:
        raise BadRequest(400, "unknown_door", f"there is no door {door}")
    if doors[door] != category:
        raise BadRequest(400, "wrong_door", f"door {door} takes {doors[door]}, not {category}")
    return f"{door} {category}"


# -- the HTTP server -------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "sortpoint-kiosk-ui"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:
        log.debug("ui %s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def _handle(self, action: Callable[[], None]) -> None:
        try:
            self._check_origin()
            action()
        except BadRequest as exc:
            self._json(exc.status, {"error": {"code": exc.code, "message": exc.message}})
        except Exception:  # a bug must not kill the server thread silently
            log.exception("ui request %s %s failed", self.command, self.path)
            self._json(500, {"error": {"code": "internal", "message": "internal error"}})

    def _check_origin(self) -> None:
        ui = self.server.ui
        host = self.headers.get("Host", "")
        if ui.allowed_hosts is not None and host not in ui.allowed_hosts:
            raise BadRequest(403, "bad_host", f"unexpected Host {host[:60]!r}")
        origin = self.headers.get("Origin")
        if origin is not None and origin.removeprefix("http://") != host:
            raise BadRequest(403, "bad_origin", "cross-origin requests are refused")

    def _get(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/api/state":
            self._json(200, self.server.ui.get_view())
            return
        static = self.server.ui.static.get(path)
        if static is None:
            raise BadRequest(404, "not_found", f"no such page {path[:60]!r}")
        body, content_type = static
        self._send(200, body, content_type)

    def _post(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._read_json()
        ui = self.server.ui
        if path == "/api/choose":
            choice = parse_choice(body, ui.doors)
            self._queue("choose", choice=choice)
        elif path == "/api/cancel":
            if body != {}:
                raise BadRequest(400, "bad_request", "cancel takes an empty JSON object")
            self._queue("cancel")
        else:
            raise BadRequest(404, "not_found", f"no such action {path[:60]!r}")

    def _queue(self, event: str, **kwargs) -> None:
        if not self.server.ui.post(event, **kwargs):
            raise BadRequest(503, "busy", "the kiosk is busy: try again")
        log.info("ui: %s %s", event, kwargs or "")
        self._json(202, {"queued": event, **kwargs})

    def _read_json(self) -> Any:
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise BadRequest(415, "bad_content_type", "send application/json")
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise BadRequest(411, "length_required", "Content-Length is required")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise BadRequest(413, "too_large", f"at most {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise BadRequest(400, "bad_json", "the body is not valid JSON") from None

    def _json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload, default=str).encode("utf-8")
        self._send(status, body, "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restarted kiosk must get its port back at once

    def __init__(self, address, ui: UiServer):
        self.ui = ui
        super().__init__(address, _Handler)


class UiServer:
    """The page's HTTP server: bound at construction, served on a thread from ``start()``."""

    def __init__(
        self,
        get_view: Callable[[], dict],
        post: Callable[..., bool],
        doors: dict[int, str],
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        static_dir: Path = STATIC_DIR,
    ):
        self.get_view, self.post, self.doors = get_view, post, dict(doors)
        self.static = {
            path: ((static_dir / name).read_bytes(), content_type)
            for path, (name, content_type) in STATIC_FILES.items()
        }
        self._httpd = _Server((host, port), self)
        self.host, self.port = host, self._httpd.server_address[1]
        #: Host headers accepted: only this server's own loopback names (None: any, when
        #: the operator binds to a non-loopback address on purpose)
        self.allowed_hosts = (
            {f"{name}:{self.port}" for name in (*LOOPBACK_HOSTS, host)}
            if host in LOOPBACK_HOSTS
            else None
        )
        if host not in LOOPBACK_HOSTS:
            log.warning(
                "the kiosk page listens on %s: anyone who reaches it can choose a bin",
                host,
            )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Return the page's address."""
        return f"http://{self.host}:{self.port}/"

    def start(self) -> None:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="kiosk-ui",
            daemon=True,
        )
        self._thread.start()
        log.info("kiosk page at %s", self.url)

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()


class StationUi:
    """The page for one station: its snapshot (``refresh()`` from the loop) and its server."""

    def __init__(self, station, *, host: str = "127.0.0.1", port: int = 8080):
        self.view = StationView(station)
        doors = {d.number: d.category for d in station.config.doors}
        self.server = UiServer(self.view.current, station.post, doors, host=host, port=port)

    @property
    def url(self) -> str:
        """Return the page's address."""
        return self.server.url

    def refresh(self) -> None:
        """Rebuild the snapshot (the station loop calls this every step)."""
        self.view.refresh()

    def start(self) -> None:
        """Start serving the page."""
        self.server.start()

    def stop(self) -> None:
        """Stop serving the page."""
        self.server.stop()


__all__ = [
    "BadRequest",
    "StationUi",
    "StationView",
    "UiServer",
    "build_view",
    "parse_choice",
]
