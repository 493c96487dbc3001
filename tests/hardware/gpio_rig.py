"""Shared set-up for the GPIO driver tests: a virtual clock, a fake header, ``Pins`` on it."""

from __future__ import annotations

from dataclasses import dataclass

from hardware.clock import VirtualClock
from hardware.gpio import Pins
from hardware.sim.fake_rpi_gpio import FakeGPIO


@dataclass
class Rig:
    """One simulated Pi: every test gets its own, so nothing leaks between tests."""

    clock: VirtualClock
    board: FakeGPIO
    pins: Pins

    def elapsed_since(self, start_s: float) -> float:
        """Return virtual seconds since ``start_s``."""
        return self.clock.monotonic() - start_s


def make_rig() -> Rig:
    """Return a fresh clock, header and ``Pins``."""
    clock = VirtualClock()
    board = FakeGPIO(clock)
    return Rig(clock=clock, board=board, pins=Pins(board, "sim"))
