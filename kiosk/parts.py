"""The station's parts built from its config, and what the flow needs from the backend config.

``build_hardware(config)`` constructs every driver the config names through the registry
(``kiosk.config.build_driver``), passing the station clock to the drivers that take one, so an
all-fake station runs in virtual time.  ``flow_settings`` turns the config's timeouts into the
flow's; ``rules_from_backend_config`` reads the points rules out of the cached
``GET /api/v1/kiosk/config`` answer for the offline estimate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from hardware.clock import SYSTEM_CLOCK
from kiosk.config import KioskConfig, build_driver
from kiosk.doors import DoorLocker
from kiosk.flow import DoorSlot, FlowSettings

log = logging.getLogger(__name__)

MAIN_SCALE = "main"


@dataclass
class Hardware:
    """Every driver the station uses, built from the config."""

    scanner: Any
    scales: dict[str, Any]
    doors: dict[int, DoorSlot]
    indicator: Any

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


def build_hardware(config: KioskConfig, clock=SYSTEM_CLOCK) -> Hardware:
    """Construct the scanner, scales, doors and indicator the config names."""
    runtime = {"clock": clock}
    scales: dict[str, Any] = {}
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


def flow_settings(config: KioskConfig) -> FlowSettings:
    """Return the flow's timeouts and limits from the config."""
    t, w = config.timeouts, config.weighing
    return FlowSettings(
        category_s=t.category_s,
        door_open_s=t.door_open_s,
        door_close_s=t.door_close_s,
        result_display_s=t.result_display_s,
        backend_answer_s=t.backend_answer_s,
        stable_timeout_s=w.stable_timeout_s,
        min_deposit_g=w.min_deposit_g,
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
