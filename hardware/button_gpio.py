"""Push buttons on GPIO inputs: one per bin door (and an optional cancel button).

``GpioButton`` is one button, debounced in software by polling: a press counts once the
input has read "pressed" on every sample for at least ``debounce_s`` (a release likewise),
so contact bounce and short spikes never count and a held button counts once.  Polling
instead of edge detection because RPi.GPIO's edge detection is broken on kernel 6.6
(``add_event_detect`` fails), and a 10 ms poll of a few pins costs next to nothing.

``ButtonPoller`` polls a set of buttons, inline (``poll_once()``, for virtual time) or on a
daemon thread (``start()``), and calls ``on_press(key)`` for each debounced press.  It only
calls back: the kiosk decides what a press means.  Buttons take an injectable clock, so
tests step through bounce in virtual time.

Wiring: a momentary switch between the pin and GND with the internal pull-up
(``active_low = True``, the default), or to 3V3 with the pull-down (``active_low = False``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Mapping

from hardware import HardwareConfigError
from hardware.clock import SYSTEM_CLOCK, Clock
from hardware.gpio import Pins, resolve_pins

log = logging.getLogger(__name__)

#: a press shorter than this is contact bounce or interference
DEFAULT_DEBOUNCE_S = 0.03
DEFAULT_POLL_S = 0.01
#: after a read error, wait this long before polling again (no log flood, no busy loop)
ERROR_BACKOFF_S = 1.0


class GpioButton:
    """One momentary push button on a GPIO input, debounced by sampling."""

    def __init__(
        self,
        *,
        pin: int,
        gpio: str = "rpi",
        active_low: bool = True,
        pull: str | None = None,
        debounce_s: float = DEFAULT_DEBOUNCE_S,
        name: str | None = None,
        pins: Pins | None = None,
        clock: Clock | None = None,
    ):
        if not debounce_s > 0:
            raise HardwareConfigError(f"button debounce_s must be > 0, not {debounce_s!r}")
        self.pins = resolve_pins(gpio, pins)
        self.clock = clock if clock is not None else SYSTEM_CLOCK
        self.pin = pin
        self.name = name or f"button on GPIO {pin}"
        self.active_low = bool(active_low)
        self.debounce_s = float(debounce_s)
        self.pins.setup_input(pin, pull or ("up" if self.active_low else "down"))
        self.presses = 0
        raw = self._raw_pressed()
        # a button already down at start counts only after it is released and pressed again
        self._stable = raw
        self._candidate, self._since_s = raw, self.clock.monotonic()
        if raw:
            log.warning(
                "%s reads pressed at start: check its wiring and buttons.active_low",
                self.name,
            )

    def _raw_pressed(self) -> bool:
        level = self.pins.read(self.pin)
        return not level if self.active_low else level

    @property
    def pressed(self) -> bool:
        """Return the debounced state (True while held down)."""
        return self._stable

    def poll(self) -> bool:
        """Sample the input once; return True exactly once per debounced press."""
        now_s = self.clock.monotonic()
        raw = self._raw_pressed()
        if raw != self._candidate:
            # the level changed: it must now hold for debounce_s before it counts
            self._candidate, self._since_s = raw, now_s
            return False
        # (a microsecond of slack: float seconds must not turn 30 ms into 29.999...)
        if raw == self._stable or now_s - self._since_s < self.debounce_s - 1e-6:
            return False
        self._stable = raw
        if raw:
            self.presses += 1
            return True
        return False

    def close(self) -> None:
        """Release the pin."""
        self.pins.cleanup([self.pin])


class ButtonPoller:
    """Polls buttons and calls ``on_press(key)`` for each debounced press."""

    def __init__(
        self,
        buttons: Mapping[Hashable, GpioButton],
        on_press: Callable[[Hashable], object],
        *,
        poll_s: float = DEFAULT_POLL_S,
    ):
        if not poll_s > 0:
            raise HardwareConfigError(f"button poll_s must be > 0, not {poll_s!r}")
        self.buttons = dict(buttons)
        self.on_press = on_press
        self.poll_s = float(poll_s)
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> list[Hashable]:
        """Sample every button once; call back for (and return) the keys pressed."""
        pressed = [key for key, button in self.buttons.items() if button.poll()]
        for key in pressed:
            log.info("%s pressed", self.buttons[key].name)
            self.on_press(key)
        return pressed

    def start(self) -> None:
        """Poll on a daemon thread until ``stop()``."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="buttons", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
                self.error = None
            except Exception as exc:  # never let the thread die silently
                if self.error is None:
                    log.exception("button polling failed")
                self.error = str(exc)
                self._stop.wait(ERROR_BACKOFF_S)
            self._stop.wait(self.poll_s)

    def stop(self) -> None:
        """Stop the polling thread (if any) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=ERROR_BACKOFF_S + 1)
            self._thread = None

    def close(self) -> None:
        """Stop polling and release every button's pin."""
        self.stop()
        for button in self.buttons.values():
            try:
                button.close()
            except Exception:
                log.exception("closing %s failed", button.name)


def build_button_poller(
    pins_by_key: Mapping[Hashable, tuple[int, str]],
    on_press: Callable[[Hashable], object],
    *,
    gpio: str | Pins = "rpi",
    active_low: bool = True,
    debounce_s: float = DEFAULT_DEBOUNCE_S,
    poll_s: float = DEFAULT_POLL_S,
    clock: Clock | None = None,
) -> ButtonPoller:
    """Return a poller over one button per ``key -> (pin, name)``; release all on a failure."""
    buttons: dict[Hashable, GpioButton] = {}
    try:
        for key, (pin, name) in pins_by_key.items():
            buttons[key] = GpioButton(
                pin=pin,
                gpio=gpio,
                active_low=active_low,
                debounce_s=debounce_s,
                name=name,
                clock=clock,
            )
    except Exception:
        for button in buttons.values():
            button.close()
        raise
    return ButtonPoller(buttons, on_press, poll_s=poll_s)


__all__ = ["ButtonPoller", "GpioButton", "build_button_poller"]
