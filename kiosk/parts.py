"""The station's parts built from its config, and what the flow needs from the backend config.

``build_parts(config)`` returns the typed ``StationParts`` a ``kiosk.station.Station`` runs
on: hardware, journal, syncer, screen, systemd notifier, clocks and crash hook; a test or the
simulator gives its own clock, screen, hardware, journal or backend client.
``build_hardware(config)`` constructs every driver the config names through the registry
(``kiosk.config.build_driver``), passing the station clock to the drivers that take one, so an
all-fake station runs in virtual time.  ``rules_from_backend_config`` reads the points rules
out of the cached ``GET /api/v1/kiosk/config`` answer for the offline estimate.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hardware.clock import SYSTEM_CLOCK, Clock, WallClock
from hardware.interfaces import Indicator, QrReader, Scale
from kiosk.config import KioskConfig, build_driver
from kiosk.crash import CRASH_ENV, CrashHook, CrashingClient
from kiosk.doors import DoorLocker
from kiosk.flow import DoorSlot, Screen
from kiosk.journal import Journal
from kiosk.systemd import Notifier

if TYPE_CHECKING:  # kiosk.sync pulls in requests: imported when a syncer is built
    from kiosk.sync import BackendClient, Syncer

log = logging.getLogger(__name__)

MAIN_SCALE = "main"


@dataclass
class Hardware:
    """Every driver the station uses, built from the config."""

    scanner: QrReader
    scales: dict[str, Scale]
    doors: dict[int, DoorSlot]
    indicator: Indicator

    def lock_all(self, locker: DoorLocker | None = None) -> list[str]:
        """Lock every door; return the problems with shut doors (never raise)."""
        return (locker or DoorLocker(background=False)).lock_all(self.doors.values())

    def close(self) -> None:
        """Release every device (each door secures its output as it closes), best effort."""
        parts = [slot.door for slot in self.doors.values()]
        parts += [self.scanner, *self.scales.values(), self.indicator]
        for part in parts:
            try:
                part.close()
            except Exception:
                log.exception("closing %r failed", part)


@dataclass
class StationParts:
    """What a station runs on; ``clock`` drives the flow and the drivers, ``wall_clock`` dates."""

    hardware: Hardware
    journal: Journal
    syncer: Syncer
    screen: Screen
    notifier: Notifier
    clock: Clock
    wall_clock: WallClock
    crash: CrashHook


def build_parts(
    config: KioskConfig,
    *,
    clock: Clock = SYSTEM_CLOCK,
    wall_clock: WallClock = SYSTEM_CLOCK,
    screen: Screen | None = None,
    hardware: Hardware | None = None,
    journal: Journal | None = None,
    client: BackendClient | None = None,
) -> StationParts:
    """Build the parts the config names; the ones given are used as they are."""
    config.state_path.mkdir(parents=True, exist_ok=True)
    journal = journal or Journal(
        config.journal_path,
        outbox_limit=config.journal.outbox_limit,
        outbox_warn_ratio=config.journal.outbox_warn_ratio,
    )
    crash = CrashHook(os.environ.get(CRASH_ENV))
    return StationParts(
        hardware=hardware or build_hardware(config, clock),
        journal=journal,
        syncer=build_syncer(config, journal, client, crash, clock=clock, wall_clock=wall_clock),
        screen=screen or LogScreen(),
        notifier=Notifier(),
        clock=clock,
        wall_clock=wall_clock,
        crash=crash,
    )


def build_syncer(
    config: KioskConfig,
    journal: Journal,
    client: BackendClient | None,
    crash: CrashHook,
    *,
    clock: Clock,
    wall_clock: WallClock,
) -> Syncer:
    """Return the syncer uploading ``journal`` to the config's backend (through ``client``)."""
    from kiosk.sync import BackendClient, Syncer

    backend = config.backend
    if client is None:
        # signatures carry real time whatever clock the flow runs on: the server checks it
        client = BackendClient(backend.url, backend.kiosk_id, backend.secret, backend.timeout_s)
    if crash.point == "upload":
        client = CrashingClient(client, crash)
    return Syncer(
        journal,
        client,
        batch_size=backend.batch_size,
        base_delay_s=backend.retry_base_s,
        max_delay_s=backend.retry_max_s,
        interval_s=backend.sync_interval_s,
        config_refresh_s=backend.config_refresh_s,
        clock=clock,
        wall_clock=wall_clock,
        rng=random.Random(),
    )


def build_hardware(config: KioskConfig, clock: Clock = SYSTEM_CLOCK) -> Hardware:
    """Construct the scanner, scales, doors and indicator the config names."""
    runtime = {"clock": clock}
    scales: dict[str, Scale] = {}
    if config.scale is not None:
        scales[MAIN_SCALE] = build_driver("scale", config.scale, **runtime)
    for name, spec in config.scales.items():
        scales[name] = build_driver("scale", spec, **runtime)
    doors = {
        door.number: DoorSlot(
            number=door.number,
            category=door.category,
            capacity_g=door.capacity_g,
            door=build_driver("door", door, **runtime),
            scale=door.scale or MAIN_SCALE,
        )
        for door in config.doors
    }
    return Hardware(
        scanner=build_driver("scanner", config.scanner, **runtime),
        scales=scales,
        doors=doors,
        indicator=build_driver("indicator", config.indicator, **runtime),
    )


def rules_from_backend_config(
    backend_config: dict | None,
) -> dict[str, tuple[int, int]]:
    """Return category -> (points_per_kg, min_net_g) from the cached backend config."""
    rules: dict[str, tuple[int, int]] = {}
    for rule in (backend_config or {}).get("rules") or []:
        try:
            rules[str(rule["category"])] = (
                int(rule["points_per_kg"]),
                int(rule.get("min_net_g", rule.get("min_g", 0)) or 0),
            )
        except (KeyError, TypeError, ValueError):
            log.warning("ignoring a malformed points rule in the backend config: %r", rule)
    return rules


class LogScreen:
    """A screen for a headless station: remember the text and log it."""

    def __init__(self):
        self.text = ""
        self.tone = "info"
        self.history: list[str] = []

    def show(self, text: str, *, tone: str = "info") -> None:
        """Record and log what the resident would read (a repeat of the same text is dropped)."""
        if text == self.text:
            return
        self.text, self.tone = text, tone
        self.history.append(text)
        del self.history[:-200]  # bounded: only the recent screens matter
        log.info("screen: %s", text)
