"""Helpers for the station tests: an all-fake kiosk config, scripted sessions, a served backend.

``kiosk_config(state_dir, backend_url, public_key)`` is a two-door (or one-door) config on fake
drivers.  ``Session`` runs simulator script lines against an in-process station in virtual time
(the same ``SimDriver`` ``kiosk run --sim --script`` uses) and keeps the screen output.
``ServedBackend`` serves the real backend app on a free port in a thread; it can be stopped
(connection refused) and started again on the same port.  ``offline_config`` is a config whose
backend nobody listens on; ``wait_for`` polls a threaded station in real time.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from contextlib import contextmanager

from werkzeug.serving import make_server

from kiosk.config import config_from_dict
from kiosk.parts import build_parts
from kiosk.sim import ScriptFailed, SimDriver, build_sim_station
from kiosk.station import Station
from protocol.labels import (
    LabelClaims,
    encode_label,
    generate_private_key,
    public_key_to_text,
)

SECRET = "s3cret-s3cret-s3cret"


def free_port() -> int:
    """Return a TCP port nothing listens on (yet): for a server the test starts on it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


#: sockets holding the ports ``refused_port`` handed out, for the whole test session
_REFUSING: list[socket.socket] = []


def refused_port() -> int:
    """Return a TCP port that refuses connections for the rest of the test session.

    An offline backend's address.  A socket bound to the port but never
    listening holds it: a connection gets "refused" at once, and no other
    process can start listening there meanwhile, which a port merely found
    free (``free_port``) cannot promise.
    """
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    _REFUSING.append(holder)
    return holder.getsockname()[1]


def fake_station_toml(
    *,
    name: str,
    state_dir,
    backend: dict[str, str],
    doors: dict[int, tuple[str, int]],
    timeout_s: float,
    backend_answer_s: float,
) -> str:
    """Return a kiosk TOML file on fake scanner, scale, light and doors, as `kiosk run` reads it.

    ``backend`` holds the [backend] strings (url, kiosk_id, secret, community,
    label_public_key); ``doors`` maps a door number to (category, capacity_g).
    """
    backend_lines = "".join(f'{key} = "{value}"\n' for key, value in backend.items())
    door_tables = "".join(
        f'[[doors]]\nnumber = {n}\ncategory = "{category}"\ncapacity_g = {capacity_g}\n'
        'driver = "fake"\n'
        for n, (category, capacity_g) in doors.items()
    )
    return (
        f'[kiosk]\nname = "{name}"\nstate_dir = "{state_dir}"\n'
        f"[backend]\n{backend_lines}timeout_s = {timeout_s}\n"
        f"[timeouts]\nbackend_answer_s = {backend_answer_s}\n"
        '[scanner]\ndriver = "fake"\n[scale]\ndriver = "fake"\n[indicator]\ndriver = "fake"\n'
        + door_tables
    )


def kiosk_config(
    state_dir,
    *,
    backend_url: str,
    public_key: str | None,
    kiosk_id: str = "k_test",
    secret: str = SECRET,
    community: str = "green",
    doors: dict[int, str] | None = None,
    timeouts: dict | None = None,
    weighing: dict | None = None,
    sync_interval_s: float = 30.0,
    backend_timeout_s: float = 5.0,
):
    """Return a checked all-fake KioskConfig."""
    doors = doors or {1: "plastic", 2: "paper"}
    raw = {
        "kiosk": {"name": "test-kiosk", "state_dir": str(state_dir)},
        "backend": {
            "url": backend_url,
            "kiosk_id": kiosk_id,
            "secret": secret,
            "community": community,
            "timeout_s": backend_timeout_s,
            "sync_interval_s": sync_interval_s,
            "retry_base_s": 0.5,
            "retry_max_s": 5.0,
        },
        "scanner": {"driver": "fake"},
        "scale": {"driver": "fake"},
        "indicator": {"driver": "fake"},
        "doors": [
            {"number": n, "category": c, "capacity_g": 40_000, "driver": "fake"}
            for n, c in doors.items()
        ],
        "timeouts": {
            "category_s": 20,
            "door_open_s": 15,
            "door_close_s": 40,
            "result_display_s": 5,
            "backend_answer_s": 2,
            **(timeouts or {}),
        },
        "weighing": {
            "band_g": 10,
            "window_s": 0.8,
            "min_deposit_g": 30,
            "stable_timeout_s": 10,
            **(weighing or {}),
        },
    }
    if public_key:
        raw["backend"]["label_public_key"] = public_key
    return config_from_dict(raw)


def offline_config(state_dir, public_key: str | None, **kw):
    """Return ``kiosk_config`` with a backend address nothing listens on (an offline kiosk)."""
    return kiosk_config(
        state_dir, backend_url=f"http://127.0.0.1:{refused_port()}", public_key=public_key, **kw
    )


def wait_for(predicate, timeout_s: float = 20.0) -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout_s`` (a bound, never a speed claim)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@contextmanager
def threaded_station(config, **parts_kw):
    """Run a Station on its own thread in real time, as on a Pi; stop it on exit.

    ``parts_kw`` go to ``build_parts`` (a backend client, say).  After a body that did not
    raise, the loop thread must have ended and every door be locked.
    """
    station = Station(config, build_parts(config, **parts_kw), threaded=True, tick_s=0.01)
    runner = threading.Thread(target=station.run, kwargs={"install_signals": False})
    runner.start()
    try:
        yield station
    finally:
        station.stop()
        runner.join(timeout=20)
    assert not runner.is_alive()
    assert all(slot.door.locked for slot in station.hardware.doors.values())


class Keys:
    """A community signing key and labels made with it."""

    def __init__(self, community: str = "green"):
        self.community = community
        self.private = generate_private_key()
        self.public = public_key_to_text(self.private)

    def label(
        self,
        household: str = "H001",
        serial: str = "SER0000001",
        community: str | None = None,
    ) -> str:
        """Return a genuine signed payload."""
        return encode_label(
            self.private, LabelClaims(community or self.community, household, serial)
        )


class Session:
    """A station on fakes in virtual time, driven by simulator commands."""

    def __init__(self, config, **parts_kw):
        self.out = io.StringIO()
        self.station, self.screen = build_sim_station(
            config, virtual=True, out=self.out, **parts_kw
        )
        self.driver = SimDriver(self.station, self.screen, virtual=True, out=self.out)
        self.station.start()
        self.driver.settle()

    @property
    def flow(self):
        return self.station.flow

    @property
    def state(self) -> str:
        return self.station.flow.state

    @property
    def journal(self):
        return self.station.journal

    def door(self, number: int):
        return self.station.hardware.doors[number].door

    @property
    def scale(self):
        return self.station.hardware.scales["main"]

    def run(self, script: str) -> None:
        """Run script lines; an ``expect`` that fails raises ScriptFailed with the screen."""
        for line in script.strip().splitlines():
            self.driver.execute(line)

    def expect_fails(self, line: str) -> str:
        """Run one line that must fail; return the message."""
        try:
            self.driver.execute(line)
        except ScriptFailed as exc:
            return str(exc)
        raise AssertionError(f"{line!r} did not fail")

    def close(self) -> None:
        self.station.shutdown()


class ServedBackend:
    """The backend app served on a fixed free port; stop() refuses connections until start()."""

    def __init__(self, app):
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None

    def start(self) -> None:
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


__all__ = [
    "SECRET",
    "Keys",
    "ScriptFailed",
    "ServedBackend",
    "Session",
    "fake_station_toml",
    "free_port",
    "refused_port",
    "kiosk_config",
    "offline_config",
    "threaded_station",
    "wait_for",
]
