"""The production server (README "Production"): granian serving the app as a kiosk meets it.

Runs the README's granian command in a subprocess on this test's database and
talks to it over one kept-alive HTTP/1.1 connection, as a kiosk's
requests.Session does: health, a signed deposit credited, its retry a
duplicate, a replayed request refused, an oversized body refused as JSON,
and a clean exit on SIGTERM (systemd's stop).  And as a hostile client meets
it (tests/test_api_hostile.py in-process): the signed path is the decoded
path, a chunked body over the limit is 413, a body not declared JSON is 415,
deep nesting is 400, and a 405 says what is allowed.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from backend.core.db import db
from tests.factories import build_world, deposit_item, signed

ROOT = Path(__file__).resolve().parents[1]
GRANIAN = Path(sys.executable).with_name("granian")
START_S = 60  # generous: a busy CI machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(database_url: str, tmp_path) -> tuple[subprocess.Popen, int]:
    """Start granian as README "Production" does; return the process and its port."""
    env = dict(
        os.environ,
        SORTPOINT_DATABASE_URL=database_url,
        SORTPOINT_INSTANCE_PATH=str(tmp_path / "instance"),
        # granian starts every WSGI environ from its own environment: these are
        # not the request's target, and the signature check must not read them
        RAW_URI="/not-the-request",
        REQUEST_URI="/not-the-request",
    )
    for _ in range(3):  # a probed port can be taken by another process before granian binds it
        port = _free_port()
        proc = subprocess.Popen(
            [
                str(GRANIAN),
                "--interface",
                "wsgi",
                "--factory",
                "backend:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--blocking-threads",
                "2",
                "--runtime-mode",
                "mt",
                "--no-ws",
            ],  # fmt: skip
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its workers are killed with it (_kill)
        )
        deadline = time.monotonic() + START_S
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/v1/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    return proc, port
            except OSError:
                time.sleep(0.2)  # not listening yet
        output = _kill(proc)
    pytest.fail(f"granian did not come up:\n{output[-3000:]}")


def _kill(proc: subprocess.Popen) -> str:
    """Kill granian and its worker processes (which hold its output open); return its output."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # already gone, workers too
    return proc.communicate(timeout=30)[0].decode(errors="replace")


@pytest.fixture
def served(app, database_url, tmp_path):
    with db.begin() as s:
        world = build_world(s)
    proc, port = _start(database_url, tmp_path)
    yield world, proc, port
    _kill(proc)


def _send(conn, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    conn.request(method, path, body=body or None, headers=headers or {})
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_granian_serves_a_kiosk_over_one_kept_alive_connection(served):
    world, proc, port = served
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    status, health = _send(conn, "GET", "/api/v1/health")
    assert status == 200 and health["status"] == "ok"
    kept = conn.sock
    assert kept is not None

    label = world.labels["H001"][0]
    body = json.dumps({"deposits": [deposit_item(label, net_g=1_500)]}).encode()
    path = "/api/v1/deposits"
    headers = signed(world.kiosk.id, world.secret, "POST", path, body)
    status, answer = _send(conn, "POST", path, body, headers)
    assert status == 200
    [result] = answer["results"]
    assert (result["status"], result["points"], result["balance"]) == ("accepted", 15, 15)

    # the kiosk's retry of the same deposit, signed afresh: recorded once
    status, answer = _send(
        conn, "POST", path, body, signed(world.kiosk.id, world.secret, "POST", path, body)
    )
    assert status == 200
    assert [(r["status"], r["points"], r["balance"]) for r in answer["results"]] == [
        ("duplicate", 15, 15)
    ]

    # the same signed request again: its nonce was seen
    status, answer = _send(conn, "POST", path, body, headers)
    assert status == 401 and answer["error"]["code"]

    # every answer came over the first connection
    assert conn.sock is kept
    conn.close()


def test_granian_refuses_an_oversized_body_as_json(served):
    """Over 4 MiB: a JSON 413, read by the kiosk's client (requests) as it sends.

    granian answers without reading the body and closes the connection; urllib3
    reads the answer after the broken pipe, as it does for any server that
    refuses a request early.
    """
    world, _proc, port = served
    body = b'{"deposits": [' + b" " * (4 * 1024 * 1024) + b"]}"
    path = "/api/v1/deposits"
    with requests.Session() as session:
        response = session.post(
            f"http://127.0.0.1:{port}{path}",
            data=body,
            headers=signed(world.kiosk.id, world.secret, "POST", path, body),
            timeout=60,
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        # the next request of the same session is served (on a new connection)
        assert session.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=30).ok


def test_granian_stops_cleanly_on_sigterm(served):
    _world, proc, _port = served
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0].decode(errors="replace")
    assert proc.returncode == 0, output[-3000:]


def _raw_exchange(port: int, request: bytes) -> tuple[int, dict]:
    """Send ``request`` bytes as they are (no client library normalises the target)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def _raw_post(port: int, target: str, body: bytes, headers: dict) -> bytes:
    head = [f"POST {target} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_granian_checks_the_signature_over_the_decoded_path(served):
    """granian hands the app no raw target (PATH_INFO is decoded): the protocol signs that path."""
    world, _proc, port = served
    labels = world.labels["H001"]
    sent = "/api/v1/deposit%73"
    for signed_path, label, expected in (
        (sent, labels[0], 401),  # the target as sent: not what the server can check
        ("/api/v1/deposits", labels[1], 200),  # the path the app routes
    ):
        body = json.dumps({"deposits": [deposit_item(label)]}).encode()
        headers = signed(world.kiosk.id, world.secret, "POST", signed_path, body)
        status, answer = _raw_exchange(port, _raw_post(port, sent, body, headers))
        assert status == expected, answer
        if status == 401:
            assert answer["error"]["code"] == "signature_invalid"
        else:
            assert answer["results"][0]["status"] == "accepted"


def test_granian_refuses_a_chunked_body_over_the_limit_as_413(served):
    world, _proc, port = served
    path = "/api/v1/deposits"
    item = json.dumps(deposit_item(world.labels["H002"][0])).encode()
    small = b'{"deposits": [' + item + b"]}"
    big = b'{"deposits": [' + item + b'], "pad": "' + b"x" * (4 * 1024 * 1024) + b'"}'

    def chunks(body: bytes):
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    with requests.Session() as session:
        for body, status in ((big, 413), (small, 200)):
            headers = signed(world.kiosk.id, world.secret, "POST", path, body)
            response = session.post(
                f"http://127.0.0.1:{port}{path}", data=chunks(body), headers=headers, timeout=60
            )
            assert response.request.headers.get("Transfer-Encoding") == "chunked"
            assert response.status_code == status, response.text
        assert response.json()["results"][0]["status"] == "accepted"


def test_granian_answers_hostile_bodies_with_4xx(served):
    world, _proc, port = served
    path = "/api/v1/deposits"
    item = json.dumps(deposit_item(world.labels["H003"][0])).encode()
    depth = 1_000_000  # 2 MB of brackets: a clean 400, never a crashed worker thread
    # a connection per refused request: a server may close a kept-alive connection
    # after answering before it read the whole body (granian does, now and then),
    # and a client then sees its next request's send fail with a broken pipe
    for body, content_type, status, code in (
        (b'{"deposits": [' + item + b"]}", "text/plain", 415, "unsupported_media_type"),
        (b'{"deposits": [' + item + b'], "x": ' + b"[" * depth + b"]" * depth + b"}",
         "application/json", 400, "bad_request"),
        (b'{"deposits": [' + item + b'], "x\xff": 1}', "application/json", 400, "bad_request"),
    ):  # fmt: skip
        headers = signed(world.kiosk.id, world.secret, "POST", path, body)
        headers["Content-Type"] = content_type
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        answer = _send(conn, "POST", path, body, headers)
        conn.close()
        assert (answer[0], answer[1]["error"]["code"]) == (status, code)
    # and the honest body after them: every worker thread still serves
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = b'{"deposits": [' + item + b"]}"
    status, answer = _send(
        conn, "POST", path, body, signed(world.kiosk.id, world.secret, "POST", path, body)
    )
    assert status == 200 and answer["results"][0]["status"] == "accepted"

    conn.request("GET", path)
    response = conn.getresponse()
    assert response.status == 405
    assert response.getheader("Allow") is not None
    assert "POST" in response.getheader("Allow")
    assert json.loads(response.read())["error"]["code"] == "method_not_allowed"
    conn.close()
