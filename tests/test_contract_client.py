"""A kiosk client written only from docs/protocol.md, against a really served backend.

The community is made with the `sortpoint` commands in the order issue 2
names them; the client below uses nothing but the standard library
(urllib, hmac, hashlib) - it does not import protocol.signing or any sortpoint
code - so it proves the document is enough to write a client.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest
from werkzeug.serving import make_server


class DocClient:
    """Signs every request as docs/protocol.md section 1 says."""

    def __init__(self, base_url: str, kiosk_id: str, secret: str):
        self.base_url, self.kiosk_id, self.secret = base_url, kiosk_id, secret
        self.last_request: tuple | None = None

    def headers(self, method: str, path: str, body: bytes) -> dict:
        timestamp = str(int(time.time()))
        nonce = secrets.token_hex(16)
        message = "\n".join([method, path, timestamp, nonce, hashlib.sha256(body).hexdigest()])
        signature = hmac.new(
            self.secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256
        ).hexdigest()
        return {
            "X-Kiosk-Id": self.kiosk_id,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": signature,
            "Content-Type": "application/json",
        }

    def send(self, method: str, path: str, body: bytes = b"", headers: dict | None = None):
        """Send a request; return (status, decoded JSON body)."""
        headers = headers if headers is not None else self.headers(method, path, body)
        self.last_request = (method, path, body, headers)
        request = urllib.request.Request(
            self.base_url + path, data=body or None, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def replay_last(self):
        method, path, body, headers = self.last_request
        return self.send(method, path, body, headers)

    def config(self):
        return self.send("GET", "/api/v1/kiosk/config")

    def deposit(
        self,
        deposit_id: str,
        label: str,
        door: int,
        category: str,
        net_g: int,
        occurred_at: str,
    ):
        item = {
            "id": deposit_id,
            "label": label,
            "door": door,
            "category": category,
            "net_g": net_g,
            "occurred_at": occurred_at,
        }
        body = json.dumps({"deposits": [item]}, separators=(",", ":")).encode("utf-8")
        return self.send("POST", "/api/v1/deposits", body)


def cli(runner, *args) -> dict:
    result = runner.invoke(args=[*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture
def community(runner):
    """The issue's commands, in order, as an operator would type them."""
    cli(runner, "community", "create", "demo", "--name", "Demo Gardens")
    cli(runner, "building", "add", "demo", "B1", "--name", "Block 1")
    cli(runner, "household", "add", "demo", "A-101", "--building", "B1")
    cli(
        runner,
        "rules",
        "set",
        "demo",
        "--category",
        "plastic",
        "--points-per-kg",
        "10",
        "--min-g",
        "50",
    )
    kiosk = cli(
        runner,
        "kiosk",
        "register",
        "demo",
        "Gate 1",
        "--door",
        "1=plastic",
        "--door",
        "2=paper",
    )
    labels = cli(runner, "labels", "issue", "demo", "A-101", "--count", "3")
    return kiosk, [entry["payload"] for entry in labels["labels"]]


@pytest.fixture
def base_url(app):
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=10)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def test_client_from_the_document(runner, community, base_url):
    kiosk, labels = community
    client = DocClient(base_url, kiosk["kiosk_id"], kiosk["secret"])

    status, config = client.config()
    assert status == 200
    assert [(d["door"], d["category"]) for d in config["doors"]] == [
        (1, "plastic"),
        (2, "paper"),
    ]
    assert config["community"] == "demo"
    plastic = next(r for r in config["rules"] if r["category"] == "plastic")
    assert (plastic["points_per_kg"], plastic["min_net_g"]) == (10, 50)

    # credited with the documented rounding: 1,250 g at 10 points/kg = 12 points
    first_id = str(uuid.uuid4())
    status, body = client.deposit(first_id, labels[0], 1, "plastic", 1250, now_rfc3339())
    assert status == 200
    [result] = body["results"]
    assert (result["id"], result["status"], result["points"], result["balance"]) == (
        first_id,
        "accepted",
        12,
        12,
    )

    # the exact same request again is a replay: 401, and nothing changes
    status, body = client.replay_last()
    assert status == 401 and body["error"]["code"] == "nonce_reused"

    # the same deposit re-signed (a retry after a lost answer) is a duplicate
    method, path, sent, _ = client.last_request
    status, body = client.send(method, path, sent)
    [result] = body["results"]
    assert (status, result["status"], result["original_status"], result["points"]) == (
        200,
        "duplicate",
        "accepted",
        12,
    )

    # forged and tampered labels earn nothing
    genuine = labels[1]
    head, signature = genuine.rsplit(".", 1)
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    other_household = genuine.replace(".A-101.", ".A-102.")
    for bad in (
        f"{head}.{flipped}",
        other_household,
        "SP1.demo.A-101.ABCDEFGHJK." + "A" * 86,
    ):
        status, body = client.deposit(str(uuid.uuid4()), bad, 1, "plastic", 3000, now_rfc3339())
        [result] = body["results"]
        assert (status, result["status"], result["points"]) == (200, "rejected", 0)
        assert result["error"]["code"] in ("label_bad_signature", "label_malformed")

    # the label used once already credits nothing more
    status, body = client.deposit(str(uuid.uuid4()), labels[0], 1, "plastic", 3000, now_rfc3339())
    [result] = body["results"]
    assert (result["status"], result["reason"], result["balance"]) == (
        "flagged",
        "label_reused",
        12,
    )

    # unsigned requests are refused
    request = urllib.request.Request(base_url + "/api/v1/kiosk/config")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    assert json.loads(refused.value.read())["error"]["code"] == "signature_missing"

    # a wrong secret is refused too
    impostor = DocClient(base_url, kiosk["kiosk_id"], kiosk["secret"] + "x")
    status, body = impostor.deposit(str(uuid.uuid4()), labels[2], 1, "plastic", 3000, now_rfc3339())
    assert (status, body["error"]["code"]) == (401, "signature_invalid")

    # the ledger agrees: one credit of 12 points
    shown = cli(runner, "ledger", "verify")
    assert shown["ok"] is True
    result = runner.invoke(args=["ledger", "show", "A-101", "--community", "demo", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["balance"] == 12
