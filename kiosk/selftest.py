"""``kiosk selftest``: exercise each part once and report a PASS/FAIL line per check.

Doors are unlocked and locked again one at a time (and never left unlocked: the lock is in a
``finally``); the closed sensor must read shut after the lock.  The scanner is read once (a
timeout with no label is a pass: the device answered), the scale must give a sample, the
backend must answer a signed config request, and the journal must be in WAL with
``synchronous=FULL``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from hardware import HardwareError

#: PRAGMA synchronous value of FULL
SYNCHRONOUS_FULL = 2


@dataclass
class Check:
    """One line of the self-test."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        """Return ``PASS name: detail`` (or FAIL)."""
        return f"{'PASS' if self.ok else 'FAIL'} {self.name}: {self.detail}"

    def to_dict(self) -> dict:
        """Return the check for ``--json``."""
        return asdict(self)


def _run(name: str, action: Callable[[], str]) -> Check:
    try:
        return Check(name, True, action())
    except (HardwareError, OSError, ValueError, RuntimeError) as exc:
        return Check(name, False, str(exc) or type(exc).__name__)
    except Exception as exc:  # noqa: BLE001 - a check must report, whatever the driver raises
        return Check(name, False, f"{type(exc).__name__}: {exc}")


def check_door(slot) -> str:
    """Unlock and relock one door; fail if it does not end locked and shut."""
    door = slot.door
    if not door.is_closed():
        raise RuntimeError("the door stands open: close it and run the self-test again")
    try:
        door.unlock()
    finally:
        door.lock()
    if not door.is_closed():
        raise RuntimeError("the closed sensor reads open after locking")
    return "unlock + lock ok, sensor reads closed"


def check_scanner(scanner, timeout_s: float = 0.5) -> str:
    """Read the scanner once."""
    payload = scanner.read(timeout_s)
    return f"read {payload!r}" if payload else f"answered (no label within {timeout_s:g} s)"


def check_scale(scale, timeout_s: float = 5.0) -> str:
    """Read one sample."""
    sample = scale.read(timeout_s)
    return f"{sample.grams} g"


def check_backend(client) -> str:
    """Fetch the kiosk config with a signed request."""
    config = client.fetch_config()
    doors = config.get("doors") or []
    return f"signed config request answered ({len(doors)} doors)"


def check_journal(journal) -> str:
    """Verify the journal's durability settings."""
    settings = journal.settings()
    if (
        str(settings["journal_mode"]).lower() != "wal"
        or settings["synchronous"] != SYNCHRONOUS_FULL
    ):
        raise RuntimeError(f"journal not durable: {settings}")
    return f"WAL, synchronous=FULL, schema v{settings['schema_version']}"


def run_selftest(hardware, client, journal) -> list[Check]:
    """Run every check and return them in order."""
    checks = [
        _run(f"door {n} ({slot.category})", lambda slot=slot: check_door(slot))
        for n, slot in sorted(hardware.doors.items())
    ]
    checks.append(_run("scanner", lambda: check_scanner(hardware.scanner)))
    for name, scale in hardware.scales.items():
        checks.append(_run(f"scale {name}", lambda scale=scale: check_scale(scale)))
    checks.append(_run("backend", lambda: check_backend(client)))
    checks.append(_run("journal", lambda: check_journal(journal)))
    return checks
