"""The small pin interface every GPIO device talks to (gpiozero's pin factory, cut down).

Devices (HX711, doors, indicator) never import a GPIO library: they get a
``Pins`` from ``get_pins(backend)``.  This is the ONLY module of the project
that imports ``RPi.GPIO``, and only when the ``"rpi"`` backend is first asked
for, so ``import hardware.gpio`` works on any machine.  ``rpi-lgpio`` (needed
on a Pi 5, and for edge detection on kernel 6.6) installs under the same module
name, so the same code serves both.  ``"sim"`` uses the bit-level simulator
``hardware.sim.fake_rpi_gpio`` in its place; it is used only when named,
never as a fallback for a missing RPi.GPIO.

Pins are BCM numbers; levels are ``bool`` (True = high).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from hardware import HardwareConfigError

#: BCM GPIO numbers usable on a 40-pin header
VALID_PINS = range(28)

_PULLS = ("up", "down", "off")
_EDGES = ("falling", "rising", "both")


class Pins:
    """One GPIO library (RPi.GPIO or its simulator) behind a few checked calls.

    It also keeps which pins are in use, so two devices configured on the same
    pin are refused at start-up instead of fighting over it.
    """

    def __init__(self, gpio: Any, backend: str = "custom"):
        self.gpio = gpio
        self.backend = backend
        self._claimed: dict[int, str] = {}
        self._lock = threading.Lock()
        gpio.setwarnings(False)  # a pin left set up by a killed run is expected, not news
        gpio.setmode(gpio.BCM)

    def _claim(self, pin: int, role: str) -> None:
        if not isinstance(pin, int) or isinstance(pin, bool) or pin not in VALID_PINS:
            raise HardwareConfigError(f"GPIO pin {pin!r} is not a BCM pin number 0-27")
        with self._lock:
            if pin in self._claimed:
                raise HardwareConfigError(
                    f"GPIO {pin} is already in use as {self._claimed[pin]}; cannot also be {role}"
                )
            self._claimed[pin] = role

    def in_use(self) -> dict[int, str]:
        """Return the pins set up through this object, with their role."""
        with self._lock:
            return dict(self._claimed)

    def setup_output(self, pin: int, initial: bool) -> None:
        """Make ``pin`` an output already at level ``initial`` (no glitch at set-up)."""
        self._claim(pin, "output")
        g = self.gpio
        g.setup(pin, g.OUT, initial=g.HIGH if initial else g.LOW)

    def setup_input(self, pin: int, pull: str = "up") -> None:
        """Make ``pin`` an input with pull ``"up"``, ``"down"`` or ``"off"``."""
        if pull not in _PULLS:
            raise HardwareConfigError(f"GPIO pull {pull!r} is not one of {', '.join(_PULLS)}")
        self._claim(pin, "input")
        g = self.gpio
        code = {"up": g.PUD_UP, "down": g.PUD_DOWN, "off": g.PUD_OFF}[pull]
        g.setup(pin, g.IN, pull_up_down=code)

    def write(self, pin: int, value: bool) -> None:
        """Drive output ``pin`` high (True) or low (False)."""
        self.gpio.output(pin, self.gpio.HIGH if value else self.gpio.LOW)

    def read(self, pin: int) -> bool:
        """Return the level of ``pin`` (True = high)."""
        return bool(self.gpio.input(pin))

    def add_edge_callback(
        self,
        pin: int,
        edge: str,
        callback: Callable[[int], object],
        bouncetime_ms: int | None = None,
    ) -> None:
        """Call ``callback(pin)`` on each ``"falling"``/``"rising"``/``"both"`` edge of an input."""
        if edge not in _EDGES:
            raise HardwareConfigError(f"GPIO edge {edge!r} is not one of {', '.join(_EDGES)}")
        g = self.gpio
        code = {"falling": g.FALLING, "rising": g.RISING, "both": g.BOTH}[edge]
        if bouncetime_ms:  # RPi.GPIO rejects bouncetime <= 0, so only pass a real one
            g.add_event_detect(pin, code, callback=callback, bouncetime=int(bouncetime_ms))
        else:
            g.add_event_detect(pin, code, callback=callback)

    def remove_edge_callback(self, pin: int) -> None:
        """Stop edge detection on ``pin``."""
        self.gpio.remove_event_detect(pin)

    def cleanup(self, pins: Iterable[int]) -> None:
        """Return ``pins`` to inputs and release them (never the whole header)."""
        wanted = [p for p in pins if p is not None]
        with self._lock:
            mine = [p for p in wanted if p in self._claimed]
            for pin in mine:
                del self._claimed[pin]
        if mine:  # RPi.GPIO.cleanup([]) would be read as "clean every pin"
            self.gpio.cleanup(mine)


_shared: dict[str, Pins] = {}
_shared_lock = threading.Lock()


def _load_module(backend: str) -> Any:
    if backend == "rpi":
        try:
            return importlib.import_module("RPi.GPIO")
        # RPi.GPIO raises RuntimeError on a machine that is not a Pi (and on a Pi 5)
        except (ImportError, RuntimeError) as exc:
            raise HardwareConfigError(
                "gpio backend 'rpi' needs RPi.GPIO (or rpi-lgpio on a Pi 5 / kernel 6.6): "
                f'{exc}; install sortpoint[pi] on the Pi, or name gpio = "sim" to simulate'
            ) from exc
    if backend == "sim":
        return importlib.import_module("hardware.sim.fake_rpi_gpio")
    raise HardwareConfigError(f"unknown gpio backend {backend!r} (known: rpi, sim)")


def get_pins(backend: str = "rpi") -> Pins:
    """Return this process's shared ``Pins`` for ``backend`` (``"rpi"`` or ``"sim"``)."""
    with _shared_lock:
        pins = _shared.get(backend)
        if pins is None:
            pins = Pins(_load_module(backend), backend)
            _shared[backend] = pins
        return pins


def reset_pins(backend: str | None = None) -> None:
    """Forget the shared ``Pins`` (all, or one backend) so the next ``get_pins`` starts fresh."""
    with _shared_lock:
        if backend is None:
            _shared.clear()
        else:
            _shared.pop(backend, None)


def resolve_pins(gpio: str | Pins | None, pins: Pins | None = None) -> Pins:
    """Return ``pins`` if given, else the shared ``Pins`` named by ``gpio`` (a device helper)."""
    if pins is not None:
        return pins
    if isinstance(gpio, Pins):
        return gpio
    if not isinstance(gpio, str):
        raise HardwareConfigError(f"gpio must be 'rpi' or 'sim', not {gpio!r}")
    return get_pins(gpio)
