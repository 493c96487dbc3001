#!/usr/bin/env python3
"""Benchmark: decode+validate a 100-item deposits body with msgspec, pydantic and hand checks.

Not a test.  Each contender turns the same JSON bytes into validated,
typed deposits (UUID, aware datetime, ints, bounded strings) or raises; the
per-batch wall time of each call is sampled and the median printed.  All
three are first checked to accept the valid body and to refuse the same
malformed bodies, so the race is between equals.

    .venv/bin/python scripts/bench_validation.py [--rounds 2000] [--write-docs]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated

import msgspec
import pydantic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.kiosk_api.schemas import DepositBatch, decode_batch

LABEL = "SP1.demo.A-101.7K3Q9XW2MD." + "c" * 86


def make_body(n: int = 100) -> bytes:
    base = dt.datetime(2025, 1, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    items = [
        {
            "id": str(uuid.UUID(int=i + 1)),
            "label": LABEL,
            "door": 1 + i % 3,
            "category": ("plastic", "paper", "metal")[i % 3],
            "net_g": 100 + 37 * i,
            "occurred_at": (base + dt.timedelta(seconds=41 * i)).isoformat(),
        }
        for i in range(n)
    ]
    return json.dumps({"deposits": items}).encode()


# ------------------------------------------------------------- pydantic v2


class PItem(pydantic.BaseModel):
    id: uuid.UUID
    label: Annotated[str, pydantic.Field(max_length=1024)]
    door: pydantic.StrictInt
    category: Annotated[str, pydantic.Field(max_length=64)]
    net_g: pydantic.StrictInt
    occurred_at: pydantic.AwareDatetime


class PBatch(pydantic.BaseModel):
    deposits: Annotated[list[PItem], pydantic.Field(min_length=1)]


def with_pydantic(body: bytes):
    return PBatch.model_validate_json(body)


# ------------------------------------------------ jsonschema-style hand checks


class HandError(ValueError):
    """A hand-checked field that is missing or of the wrong type or range."""


def _int(value, where):
    if type(value) is not int:
        raise HandError(f"{where} must be an integer")
    return value


def _str(value, where, max_len):
    if not isinstance(value, str) or len(value) > max_len:
        raise HandError(f"{where} must be a string of at most {max_len}")
    return value


def _item(raw, where):
    if not isinstance(raw, dict):
        raise HandError(f"{where} must be an object")
    try:
        deposit_id = uuid.UUID(_str(raw["id"], where + ".id", 36))
        at = dt.datetime.fromisoformat(_str(raw["occurred_at"], where + ".occurred_at", 40))
    except KeyError as exc:
        raise HandError(f"{where} misses {exc}") from None
    except ValueError as exc:
        raise HandError(f"{where}: {exc}") from None
    if at.tzinfo is None:
        raise HandError(f"{where}.occurred_at needs an offset")
    return (
        deposit_id,
        _str(raw.get("label"), where + ".label", 1024),
        _int(raw.get("door"), where + ".door"),
        _str(raw.get("category"), where + ".category", 64),
        _int(raw.get("net_g"), where + ".net_g"),
        at,
    )


def with_hand_checks(body: bytes):
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise HandError(str(exc)) from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("deposits"), list)
        or not data["deposits"]
    ):
        raise HandError("deposits must be a non-empty list")
    return [_item(raw, f"$.deposits[{i}]") for i, raw in enumerate(data["deposits"])]


# ------------------------------------------------------------------ msgspec


_decoder = msgspec.json.Decoder(DepositBatch)


def with_msgspec(body: bytes):
    return _decoder.decode(body)


CONTENDERS = {
    "msgspec (chosen)": with_msgspec,
    "pydantic v2": with_pydantic,
    "hand checks (json + checks)": with_hand_checks,
}


def check_equivalent(body: bytes) -> None:
    """Every contender accepts the valid body and refuses the same broken ones."""
    good = json.loads(body)
    broken = []
    for field, value in (
        ("net_g", "12"),
        ("occurred_at", "2025-01-01T08:00:00"),
        ("id", "nope"),
        ("door", 1.5),
    ):
        copy = json.loads(body)
        copy["deposits"][57][field] = value
        broken.append(json.dumps(copy).encode())
    broken += [b"{", b'{"deposits": []}']
    for name, fn in CONTENDERS.items():
        assert len(list(getattr(fn(body), "deposits", None) or fn(body))) == len(
            good["deposits"]
        ), name
        for bad in broken:
            try:
                fn(bad)
            except (
                msgspec.ValidationError,
                msgspec.DecodeError,
                pydantic.ValidationError,
                HandError,
            ):
                continue
            raise AssertionError(f"{name} accepted a malformed body")
    decode_batch(body, 500)  # the API's own wrapper agrees


def measure(fn, body: bytes, rounds: int) -> list[float]:
    for _ in range(50):
        fn(body)  # warm-up
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        fn(body)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--items", type=int, default=100)
    parser.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    args = parser.parse_args()
    body = make_body(args.items)
    check_equivalent(body)
    rows = []
    for name, fn in CONTENDERS.items():
        samples = measure(fn, body, args.rounds)
        rows.append((name, statistics.median(samples), statistics.quantiles(samples, n=10)[-1]))
    fastest = rows[0][1]
    print(f"{args.items}-item batch ({len(body)} bytes), {args.rounds} rounds each")
    print(f"{'validator':32} {'median us':>10} {'p90 us':>10} {'vs msgspec':>11}")
    for name, median, p90 in rows:
        print(f"{name:32} {median:10.1f} {p90:10.1f} {median / fastest:10.1f}x")
    if args.write_docs:
        write_docs(rows, args, len(body))


def write_docs(rows, args, size: int) -> None:
    from _perfdoc import update_section

    table = ["| validator | median per batch | p90 | relative |", "|---|---|---|---|"]
    table += [f"| {n} | {m:.0f} µs | {p:.0f} µs | {m / rows[0][1]:.1f}x |" for n, m, p in rows]
    body = (
        f"Measured with `python scripts/bench_validation.py --write-docs` ({args.rounds} rounds, "
        f"Python {platform.python_version()}, msgspec {msgspec.__version__}, pydantic {pydantic.VERSION}).\n\n"
        f"Decode + validate one {args.items}-item `POST /api/v1/deposits` body ({size} bytes) into typed "
        "deposits (UUID, aware datetime, integers, bounded strings). All three were first checked to "
        "accept the same valid body and refuse the same malformed ones.\n\n"
        + "\n".join(table)
        + "\n\nmsgspec Structs validate in one pass while decoding and also generate the OpenAPI "
        "components (`backend/kiosk_api/openapi.py`), so they are what the API uses; validation is a small "
        "share of a batch request either way (see Ingest).\n"
    )
    update_section("Request validation", body)


if __name__ == "__main__":
    main()
