"""Status LEDs and a buzzer on GPIO.

Registry name ``gpio`` (``[indicator] driver = "gpio"``).  Config keys:
``gpio`` (``"rpi"``/``"sim"``), ``green_pin``, ``red_pin``, ``buzzer_pin``
(optional), ``active_low`` (LED/buzzer on at LOW).

States (a two-colour LED, or two LEDs): ``idle`` green, ``busy`` green+red
(amber on a bi-colour LED), ``ok`` green, ``error`` red, ``off`` dark.
Beeps run on the clock's timers, so ``beep()`` never blocks the kiosk loop;
a new beep cancels the rest of the previous pattern.
"""

from __future__ import annotations

import threading

from hardware import HardwareConfigError
from hardware.clock import SYSTEM_CLOCK, Clock, call_later
from hardware.gpio import Pins, resolve_pins

#: state -> (green, red)
STATES = {
    "idle": (True, False),
    "busy": (True, True),
    "ok": (True, False),
    "error": (False, True),
    "off": (False, False),
}
#: pattern -> alternating on/off durations in seconds, starting with "on"
PATTERNS = {
    "short": (0.1,),
    "long": (0.6,),
    "error": (0.1, 0.1, 0.1, 0.1, 0.1),
}


class GpioIndicator:
    """An ``Indicator`` driving two LED pins and an optional buzzer pin."""

    def __init__(
        self,
        *,
        gpio: str = "rpi",
        green_pin: int,
        red_pin: int,
        buzzer_pin: int | None = None,
        active_low: bool = False,
        pins: Pins | None = None,
        clock: Clock | None = None,
    ):
        self.pins = resolve_pins(gpio, pins)
        self.clock = clock if clock is not None else SYSTEM_CLOCK
        self.green_pin, self.red_pin, self.buzzer_pin = green_pin, red_pin, buzzer_pin
        self.active_low = bool(active_low)
        self.state = "off"
        self._lock = threading.Lock()
        self._beep_generation = 0
        self._closed = False
        done: list[int] = []
        try:
            for pin in (green_pin, red_pin, buzzer_pin):
                if pin is not None:
                    self.pins.setup_output(pin, initial=self._level(False))
                    done.append(pin)
        except BaseException:
            self.pins.cleanup(done)
            raise

    def _level(self, on: bool) -> bool:
        return on != self.active_low

    def show(self, state: str) -> None:
        """Show one of: "idle", "busy", "ok", "error", "off"."""
        if state not in STATES:
            raise HardwareConfigError(
                f"indicator state {state!r} is not one of {', '.join(STATES)}"
            )
        if self._closed:
            return
        green, red = STATES[state]
        self.pins.write(self.green_pin, self._level(green))
        self.pins.write(self.red_pin, self._level(red))
        self.state = state

    def beep(self, pattern: str = "short") -> None:
        """Sound "short", "long" or "error" without blocking (no-op without a buzzer)."""
        if pattern not in PATTERNS:
            raise HardwareConfigError(
                f"beep pattern {pattern!r} is not one of {', '.join(PATTERNS)}"
            )
        if self.buzzer_pin is None or self._closed:
            return
        with self._lock:
            self._beep_generation += 1
            generation = self._beep_generation
        self._step(generation, PATTERNS[pattern], 0)

    def _step(self, generation: int, durations: tuple[float, ...], index: int) -> None:
        with self._lock:
            if generation != self._beep_generation or self._closed:
                return
            on = index < len(durations) and index % 2 == 0
            self.pins.write(self.buzzer_pin, self._level(on))
        if index < len(durations):
            call_later(
                self.clock, durations[index], lambda: self._step(generation, durations, index + 1)
            )

    def close(self) -> None:
        """Turn everything off and release the pins."""
        if self._closed:
            return
        self.show("off")
        with self._lock:
            self._closed = True
            self._beep_generation += 1
            if self.buzzer_pin is not None:
                self.pins.write(self.buzzer_pin, self._level(False))
        self.pins.cleanup([self.green_pin, self.red_pin, self.buzzer_pin])
