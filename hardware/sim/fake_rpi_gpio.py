"""A stand-in for the ``RPi.GPIO`` module, with devices attachable to its pins.

It has the RPi.GPIO API surface the drivers use, with RPi.GPIO's constants and
its errors for misuse (no ``setmode``, output to an input, conflicting edge
detection...).  A test drives inputs with ``drive_low(pin)``/``drive_high(pin)``
and asserts recorded outputs with ``output_state(pin)``/``history(pin)``.

Devices attach with ``attach(device)`` (the device's ``attach(board)`` is
called): a device may supply an input's level on demand
(``set_input_source``, used by the HX711 model for DOUT) and watch an output
(``watch_output``, called with the new level, or None when the pin stops being
an output).  Edge callbacks fire synchronously, in the thread that changed the
level, for levels set through ``drive_*``/``notify``; a level computed on
demand by a source has no edges until the device calls ``notify``.

Use a ``FakeGPIO`` instance directly (one per test), or this module as the
``"sim"`` backend: module-level functions act on ``board()``, which
``reset(clock)`` replaces.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hardware.clock import SYSTEM_CLOCK, Clock, perf_counter_ns

# RPi.GPIO's own values, so code that logs or compares them behaves the same
BOARD, BCM = 10, 11
OUT, IN = 0, 1
LOW, HIGH = 0, 1
PUD_OFF, PUD_DOWN, PUD_UP = 20, 21, 22
RISING, FALLING, BOTH = 31, 32, 33
VERSION = "0.7.1-sortpoint-sim"
RPI_INFO = {"P1_REVISION": 3, "TYPE": "simulated", "PROCESSOR": "none", "RAM": "0"}

_BCM_PINS = range(28)


@dataclass
class _Pin:
    direction: int | None = None  # None: never set up, or cleaned up
    pull: int = PUD_OFF
    out_level: int = LOW
    driven: int | None = None  # level forced by a test (drive_low/high), None: released
    edge: int | None = None
    callbacks: list[Callable[[int], object]] = field(default_factory=list)
    bouncetime_ms: int | None = None
    last_edge_ns: int | None = None
    event_flag: bool = False
    last_level: int = LOW


class FakeGPIO:
    """One simulated GPIO header: the RPi.GPIO calls plus the handles a test drives."""

    BOARD, BCM, OUT, IN, LOW, HIGH = BOARD, BCM, OUT, IN, LOW, HIGH
    PUD_OFF, PUD_DOWN, PUD_UP = PUD_OFF, PUD_DOWN, PUD_UP
    RISING, FALLING, BOTH = RISING, FALLING, BOTH
    VERSION, RPI_INFO = VERSION, RPI_INFO

    def __init__(self, clock: Clock | None = None):
        self.clock = clock if clock is not None else SYSTEM_CLOCK
        self._mode: int | None = None
        self._warnings = True
        self._pins: dict[int, _Pin] = {}
        self._sources: dict[int, Callable[[], int | None]] = {}
        self._watchers: dict[int, list[Callable[[int | None], object]]] = {}
        self._history: dict[int, list[tuple[int, int | None]]] = {}
        self._lock = threading.RLock()
        self.devices: list[Any] = []

    # -- RPi.GPIO API ------------------------------------------------------------

    def setmode(self, mode: int) -> None:
        """Set pin numbering (only BCM is simulated)."""
        if mode not in (BOARD, BCM):
            raise ValueError("An invalid mode was passed to setmode()")
        if self._mode is not None and self._mode != mode:
            raise ValueError("A different mode has already been set!")
        if mode != BCM:
            raise ValueError("the simulator models BCM numbering only")
        self._mode = mode

    def getmode(self) -> int | None:
        """Return the numbering mode, or None before ``setmode``."""
        return self._mode

    def setwarnings(self, flag: bool) -> None:
        """Enable or disable warnings (kept for API parity)."""
        self._warnings = bool(flag)

    def setup(
        self, channel, direction: int, pull_up_down: int = PUD_OFF, initial: int | None = None
    ):
        """Configure one channel or a list of channels as IN or OUT."""
        for pin in self._channels(channel):
            self._setup_one(pin, direction, pull_up_down, initial)

    def _setup_one(self, pin: int, direction: int, pull: int, initial: int | None) -> None:
        if direction not in (IN, OUT):
            raise ValueError("An invalid direction was passed to setup()")
        if pull not in (PUD_OFF, PUD_DOWN, PUD_UP):
            raise ValueError(
                "Invalid value for pull_up_down - should be either PUD_OFF, PUD_UP or PUD_DOWN"
            )
        if direction == IN and initial not in (None, -1):
            raise ValueError("initial parameter is not valid for inputs")
        with self._lock:
            state = self._pins.setdefault(pin, _Pin())
            if state.edge is not None:
                raise RuntimeError("cannot set up a channel with edge detection enabled")
            was_output = state.direction == OUT
            state.direction = direction
            state.pull = pull if direction == IN else PUD_OFF
            if direction == OUT:
                state.out_level = HIGH if initial not in (None, -1) and initial else LOW
            state.last_level = self._level_locked(pin)
        if direction == OUT or was_output:
            self._output_changed(pin)

    def output(self, channel, value) -> None:
        """Set one output (or a list of outputs to one value or a list of values)."""
        pins = self._channels(channel)
        values = list(value) if isinstance(value, (list, tuple)) else [value] * len(pins)
        if len(values) != len(pins):
            raise RuntimeError("Number of channels != number of values")
        for pin, level in zip(pins, values, strict=True):
            with self._lock:
                state = self._pins.get(pin)
                if state is None or state.direction != OUT:
                    raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
                new = HIGH if level else LOW
                changed = new != state.out_level
                state.out_level = new
            if changed:
                self._output_changed(pin)

    def input(self, channel: int) -> int:
        """Return the level of a channel set up as input or output."""
        (pin,) = self._channels(channel)
        with self._lock:
            state = self._pins.get(pin)
            if state is None or state.direction is None:
                raise RuntimeError("You must setup() the GPIO channel first")
        return self.level(pin)

    def add_event_detect(
        self, channel: int, edge: int, callback=None, bouncetime: int | None = None
    ):
        """Enable edge detection (and optionally a callback) on an input."""
        (pin,) = self._channels(channel)
        if edge not in (RISING, FALLING, BOTH):
            raise ValueError("The edge must be set to RISING, FALLING or BOTH")
        if bouncetime is not None and bouncetime <= 0:
            raise ValueError("Bouncetime must be greater than 0")
        with self._lock:
            state = self._pins.get(pin)
            if state is None or state.direction != IN:
                raise RuntimeError("You must setup() the GPIO channel as an input first")
            if state.edge is not None:
                raise RuntimeError(
                    "Conflicting edge detection already enabled for this GPIO channel"
                )
            state.edge, state.bouncetime_ms = edge, bouncetime
            state.callbacks = [callback] if callback is not None else []
            state.last_level, state.event_flag, state.last_edge_ns = (
                self._level_locked(pin),
                False,
                None,
            )

    def add_event_callback(self, channel: int, callback: Callable[[int], object]) -> None:
        """Add another callback to a channel with edge detection."""
        (pin,) = self._channels(channel)
        with self._lock:
            state = self._pins.get(pin)
            if state is None or state.edge is None:
                raise RuntimeError(
                    "Add event detection using add_event_detect first before adding a callback"
                )
            state.callbacks.append(callback)

    def remove_event_detect(self, channel: int) -> None:
        """Disable edge detection on a channel."""
        (pin,) = self._channels(channel)
        with self._lock:
            state = self._pins.get(pin)
            if state is not None:
                state.edge, state.callbacks, state.event_flag = None, [], False

    def event_detected(self, channel: int) -> bool:
        """Return (and clear) whether an edge was seen since the last call."""
        (pin,) = self._channels(channel)
        with self._lock:
            state = self._pins.get(pin)
            seen = bool(state and state.event_flag)
            if state is not None:
                state.event_flag = False
            return seen

    def cleanup(self, channel=None) -> None:
        """Return channels (default: every channel used) to unconfigured inputs."""
        with self._lock:
            pins = list(self._pins) if channel is None else self._channels(channel)
            touched = []
            for pin in pins:
                state = self._pins.get(pin)
                if state is None:
                    continue
                was_output = state.direction == OUT
                state.direction, state.pull, state.edge, state.callbacks = None, PUD_OFF, None, []
                if was_output:
                    touched.append(pin)
            if channel is None:
                self._mode = None  # RPi.GPIO forgets the numbering mode on a full cleanup
        for pin in touched:
            self._output_changed(pin)

    # -- test and device handles -------------------------------------------------

    def drive_low(self, pin: int) -> None:
        """Pull input ``pin`` low from outside (a switch to GND closing)."""
        self._drive(pin, LOW)

    def drive_high(self, pin: int) -> None:
        """Drive input ``pin`` high from outside."""
        self._drive(pin, HIGH)

    def release(self, pin: int) -> None:
        """Stop driving ``pin``; its pull (or a device) sets the level again."""
        self._drive(pin, None)

    def _drive(self, pin: int, level: int | None) -> None:
        self._check_pin(pin)
        with self._lock:
            self._pins.setdefault(pin, _Pin()).driven = level
        self.notify(pin)

    def notify(self, pin: int) -> None:
        """Re-evaluate ``pin``'s level and fire edge detection if it changed."""
        with self._lock:
            state = self._pins.get(pin)
            if state is None:
                return
            new = self._level_locked(pin)
            old, state.last_level = state.last_level, new
            if state.edge is None or new == old:
                return
            wanted = (
                state.edge == BOTH
                or (state.edge == RISING and new == HIGH)
                or (state.edge == FALLING and new == LOW)
            )
            if not wanted:
                return
            now_ns = perf_counter_ns(self.clock)
            bounce_ns = (state.bouncetime_ms or 0) * 1_000_000
            if state.last_edge_ns is not None and now_ns - state.last_edge_ns < bounce_ns:
                return  # inside the debounce window, like RPi.GPIO's bouncetime
            state.last_edge_ns, state.event_flag = now_ns, True
            callbacks = list(state.callbacks)
        for callback in callbacks:
            callback(pin)

    def level(self, pin: int) -> int:
        """Return the electrical level of ``pin`` as a device or a test would see it."""
        with self._lock:
            return self._level_locked(pin)

    def _level_locked(self, pin: int) -> int:
        state = self._pins.get(pin)
        if state is not None and state.direction == OUT:
            return state.out_level
        source = self._sources.get(pin)
        if source is not None:
            level = source()
            if level is not None:
                return HIGH if level else LOW
        if state is None:
            return LOW
        if state.driven is not None:
            return state.driven
        return HIGH if state.pull == PUD_UP and state.direction == IN else LOW

    def output_state(self, pin: int) -> int | None:
        """Return the level ``pin`` drives as an output, or None if it is not an output."""
        with self._lock:
            state = self._pins.get(pin)
            return state.out_level if state is not None and state.direction == OUT else None

    def direction(self, pin: int) -> int | None:
        """Return IN, OUT, or None for a pin never set up or cleaned up."""
        with self._lock:
            state = self._pins.get(pin)
            return None if state is None else state.direction

    def history(self, pin: int) -> list[tuple[int, int | None]]:
        """Return every output change of ``pin`` as (clock ns, level or None)."""
        with self._lock:
            return list(self._history.get(pin, []))

    def set_input_source(self, pin: int, source: Callable[[], int | None] | None) -> None:
        """Let a device supply ``pin``'s level on demand (None removes it)."""
        self._check_pin(pin)
        with self._lock:
            if source is None:
                self._sources.pop(pin, None)
            else:
                self._sources[pin] = source

    def watch_output(self, pin: int, watcher: Callable[[int | None], object]) -> None:
        """Call ``watcher(level)`` whenever ``pin``'s output changes (None: not an output)."""
        self._check_pin(pin)
        with self._lock:
            self._watchers.setdefault(pin, []).append(watcher)

    def attach(self, device: Any) -> Any:
        """Connect a simulated device (it wires itself in ``device.attach(board)``); return it."""
        device.attach(self)
        self.devices.append(device)
        return device

    def _output_changed(self, pin: int) -> None:
        level = self.output_state(pin)
        with self._lock:
            self._history.setdefault(pin, []).append((perf_counter_ns(self.clock), level))
            watchers = list(self._watchers.get(pin, []))
        for watcher in watchers:
            watcher(level)

    def _channels(self, channel) -> list[int]:
        if self._mode is None:
            raise RuntimeError(
                "Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or GPIO.setmode(GPIO.BCM)"
            )
        pins = list(channel) if isinstance(channel, (list, tuple)) else [channel]
        for pin in pins:
            self._check_pin(pin)
        return pins

    @staticmethod
    def _check_pin(pin: Any) -> None:
        if not isinstance(pin, int) or isinstance(pin, bool) or pin not in _BCM_PINS:
            raise ValueError("The channel sent is invalid on a Raspberry Pi")


# -- module-level API: this module can stand in for ``RPi.GPIO`` ------------------

_board = FakeGPIO()


def board() -> FakeGPIO:
    """Return the header the module-level functions act on."""
    return _board


def reset(clock: Clock | None = None) -> FakeGPIO:
    """Replace the module's header with a fresh one on ``clock``; return it."""
    global _board
    _board = FakeGPIO(clock)
    return _board


def setmode(mode: int) -> None:
    """RPi.GPIO.setmode on ``board()``."""
    _board.setmode(mode)


def getmode() -> int | None:
    """RPi.GPIO.getmode on ``board()``."""
    return _board.getmode()


def setwarnings(flag: bool) -> None:
    """RPi.GPIO.setwarnings on ``board()``."""
    _board.setwarnings(flag)


def setup(channel, direction: int, pull_up_down: int = PUD_OFF, initial: int | None = None) -> None:
    """RPi.GPIO.setup on ``board()``."""
    _board.setup(channel, direction, pull_up_down=pull_up_down, initial=initial)


def output(channel, value) -> None:
    """RPi.GPIO.output on ``board()``."""
    _board.output(channel, value)


def input(channel: int) -> int:
    """RPi.GPIO.input on ``board()``."""
    return _board.input(channel)


def add_event_detect(channel: int, edge: int, callback=None, bouncetime: int | None = None) -> None:
    """RPi.GPIO.add_event_detect on ``board()``."""
    _board.add_event_detect(channel, edge, callback=callback, bouncetime=bouncetime)


def add_event_callback(channel: int, callback: Callable[[int], object]) -> None:
    """RPi.GPIO.add_event_callback on ``board()``."""
    _board.add_event_callback(channel, callback)


def remove_event_detect(channel: int) -> None:
    """RPi.GPIO.remove_event_detect on ``board()``."""
    _board.remove_event_detect(channel)


def event_detected(channel: int) -> bool:
    """RPi.GPIO.event_detected on ``board()``."""
    return _board.event_detected(channel)


def cleanup(channel: int | Iterable[int] | None = None) -> None:
    """RPi.GPIO.cleanup on ``board()``."""
    _board.cleanup(channel if channel is None or isinstance(channel, int) else list(channel))


def drive_low(pin: int) -> None:
    """Pull ``pin`` low on ``board()``."""
    _board.drive_low(pin)


def drive_high(pin: int) -> None:
    """Drive ``pin`` high on ``board()``."""
    _board.drive_high(pin)


def attach(device: Any) -> Any:
    """Attach a simulated device to ``board()``."""
    return _board.attach(device)
