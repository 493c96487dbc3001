"""Weighing indicator on a serial line: continuous frames or MT-SICS.

``protocol = "continuous"``: the indicator (or an MCU next to an HX711)
streams ``ST,GS,+ 12.345kg`` lines; ``read()`` drains what is waiting and
returns the newest valid frame, so a sample is never older than one frame
interval.  With ``request = "R"`` the driver asks for each frame instead.
Zero is done in software (an offset), because continuous indicators have no
common zero command.

``protocol = "mt-sics"``: ``read()`` sends ``SI`` (immediate weight, with the
balance's own stable/dynamic flag) and ``zero()`` sends ``Z``.

No reader thread: every call does its own I/O with a deadline.  A device that
vanishes raises :class:`ScaleFault` and is reopened by the next call, so an
unplug is a fault for as long as it lasts and nothing more.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Self

from hardware import HardwareConfigError, ScaleFault
from hardware.interfaces import WeightSample
from hardware.scale_frames import (
    GRAMS_PER_UNIT,
    SICS_ERRORS,
    ContinuousFrame,
    FrameError,
    SicsReply,
    parse_continuous,
    parse_sics,
)
from hardware.serial_port import (
    SERIAL_ERRORS,
    TERMINATORS,
    LineAssembler,
    PortSettings,
    check_terminator,
    open_port,
)

log = logging.getLogger(__name__)
PROTOCOLS = ("continuous", "mt-sics")
_POLL_S = 0.05
_NEVER_STABLE = "scale busy or never stable (MT-SICS S I) until the timeout"


class _NoReply(ScaleFault):
    """The indicator did not answer a command before the deadline."""


class SerialScale:
    """A serial weighing indicator behind the ``Scale`` interface."""

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        protocol: str = "continuous",
        unit: str | None = None,
        request: str | None = None,
        command_terminator: str = "CRLF",
        sics_read_command: str = "SI",
        zero_timeout_s: float = 5.0,
        reconnect_min_s: float = 0.2,
    ) -> None:
        self._settings = PortSettings(port, baudrate, bytesize, parity, stopbits)
        if protocol not in PROTOCOLS:
            raise HardwareConfigError(
                f"protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}"
            )
        if unit is not None and unit not in GRAMS_PER_UNIT:
            raise HardwareConfigError(f"unit: {unit!r} is not one of {', '.join(GRAMS_PER_UNIT)}")
        if request is not None and (not isinstance(request, str) or not request.isascii()):
            raise HardwareConfigError(f"request: {request!r} must be an ASCII command such as 'R'")
        if sics_read_command not in ("S", "SI"):
            raise HardwareConfigError(
                "sics_read_command: must be 'S' (stable only) or 'SI' (immediate)"
            )
        if command_terminator == "any" or check_terminator(command_terminator) is None:
            raise HardwareConfigError("command_terminator: must be CR, LF or CRLF")
        self._protocol = protocol
        self._unit = unit
        self._request = request
        self._eol = TERMINATORS[command_terminator]
        self._sics_read = sics_read_command
        self._zero_timeout_s = zero_timeout_s
        self._reconnect_min_s = reconnect_min_s
        self._lines = LineAssembler("any", 64)
        self._lock = threading.RLock()
        self._device = None
        self._last_open_s = float("-inf")
        self._offset_g = 0
        self._fault: ScaleFault | None = None
        self.garbage_lines = 0

    # -- the Scale interface ---------------------------------------------------

    def read(self, timeout_s: float) -> WeightSample:
        """Return the newest sample; raise ScaleFault if none comes within ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._lock:
            return self._guarded(lambda: self._read_sample(deadline))

    def zero(self) -> None:
        """Set the current load as zero; raise ScaleFault if the indicator refuses."""
        deadline = time.monotonic() + self._zero_timeout_s
        with self._lock:
            self._guarded(lambda: self._zero(deadline))

    def close(self) -> None:
        """Release the port."""
        with self._lock:
            self._close_device()

    # -- health ----------------------------------------------------------------

    @property
    def fault(self) -> ScaleFault | None:
        """Return the fault of the last call (None after a good reading)."""
        return self._fault

    def health(self) -> ScaleFault | None:
        """Return the current fault, for selftest and status."""
        return self._fault

    @property
    def connected(self) -> bool:
        """Return True while the port is open."""
        return self._device is not None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- internals -------------------------------------------------------------

    def _guarded(self, action):
        """Run ``action``; turn I/O errors into a disconnect fault; record the outcome."""
        try:
            result = action()
        except SERIAL_ERRORS as exc:
            self._close_device()
            self._fault = ScaleFault(f"scale disconnected from {self._settings.port}: {exc}")
            log.error("%s", self._fault)
            raise self._fault from exc
        except ScaleFault as exc:
            self._fault = exc
            raise
        self._fault = None
        return result

    def _read_sample(self, deadline: float) -> WeightSample:
        if self._protocol == "mt-sics":
            return self._read_sics(deadline)
        frame = self._read_frame(deadline)
        if frame.status == "OL":
            raise ScaleFault("scale overload (indicator reports OL)")
        return WeightSample(frame.grams - self._offset_g, frame.stable, time.monotonic())

    def _zero(self, deadline: float) -> None:
        if self._protocol == "mt-sics":
            reply = self._sics_command("Z", deadline)
            if reply.status != "A":
                why = {
                    "I": "busy or not stable",
                    "+": "load above the zero range",
                    "-": "load below the zero range",
                }.get(reply.status, reply.status)
                raise ScaleFault(f"indicator did not zero: {why}")
            return
        frame = self._read_frame(deadline)
        if frame.status == "OL":
            raise ScaleFault("cannot zero: scale overload")
        if frame.stable is False:
            raise ScaleFault("cannot zero while the indicator reports motion (US)")
        self._offset_g = frame.grams

    def _read_frame(self, deadline: float) -> ContinuousFrame:
        """Return the newest valid continuous frame waiting, or the next to arrive."""
        device = self._open(deadline)
        if self._request:
            device.reset_input_buffer()
            self._lines.reset()
            device.write(self._request.encode("ascii") + self._eol)
        newest, garbage = None, 0
        while True:
            for line in self._read_lines(device):
                try:
                    newest = parse_continuous(line, self._unit)
                except FrameError as exc:
                    garbage += 1
                    self._note_garbage(line, exc)
            if newest is not None:
                return newest
            if time.monotonic() >= deadline:
                raise ScaleFault(f"no valid weight frame in time ({garbage} unreadable lines)")

    def _read_sics(self, deadline: float) -> WeightSample:
        """Ask for a weight with S or SI; retry while the balance answers busy."""
        retry = False
        while True:
            try:
                reply = self._sics_command(self._sics_read, deadline)
            except _NoReply:
                if not retry:
                    raise
                # the balance answered S I until the deadline cut the last retry short: that
                # is the timeout running out on an unstable balance, not a silent one
                raise ScaleFault(_NEVER_STABLE) from None
            if reply.status in ("S", "D"):
                return WeightSample(
                    reply.grams - self._offset_g, reply.status == "S", time.monotonic()
                )
            if reply.status == "+":
                raise ScaleFault("scale overload (MT-SICS S +)")
            if reply.status == "-":
                raise ScaleFault("scale underload (MT-SICS S -): platform lifted or not zeroed")
            if time.monotonic() + _POLL_S >= deadline:
                raise ScaleFault(_NEVER_STABLE)
            time.sleep(_POLL_S)  # do not hammer a balance that is busy settling
            retry = True

    def _sics_command(self, command: str, deadline: float) -> SicsReply:
        """Send an MT-SICS command and return its reply; errors raise ScaleFault."""
        device = self._open(deadline)
        # a late reply to an earlier, timed-out command must not answer this one
        device.reset_input_buffer()
        self._lines.reset()
        device.write(command.encode("ascii") + self._eol)
        expected = "Z" if command == "Z" else "S"
        while time.monotonic() < deadline:
            for line in self._read_lines(device):
                try:
                    reply = parse_sics(line)
                except FrameError as exc:
                    self._note_garbage(line, exc)
                    continue
                if reply.is_error:
                    raise ScaleFault(
                        f"indicator answered {reply.command} to {command}: "
                        f"{SICS_ERRORS[reply.command]}"
                    )
                if reply.command == expected:
                    return reply
        raise _NoReply(f"no MT-SICS reply to {command} in time")

    def _read_lines(self, device) -> list[bytes]:
        """Return the complete lines now waiting, waiting up to one poll for a byte."""
        data = device.read(max(1, device.in_waiting))
        if not data and self._settings.vanished():
            raise OSError(f"{self._settings.port} vanished")
        return self._lines.feed(data)

    def _note_garbage(self, line: bytes, exc: FrameError) -> None:
        self.garbage_lines += 1
        log.warning("scale: skipped an unreadable line %r (%s)", line[:40], exc)

    def _open(self, deadline: float):
        """Return the open device, reopening it (unplug, re-plug) until ``deadline``."""
        while self._device is None:
            wait_s = self._last_open_s + self._reconnect_min_s - time.monotonic()
            if wait_s > 0:
                if time.monotonic() + wait_s > deadline:
                    raise self._fault or ScaleFault(f"scale not connected at {self._settings.port}")
                time.sleep(wait_s)
            self._last_open_s = time.monotonic()
            try:
                self._device = open_port(self._settings, _POLL_S)
                self._lines.reset()
                log.info("scale connected at %s", self._settings.port)
            except SERIAL_ERRORS as exc:
                fault = ScaleFault(f"scale not connected at {self._settings.port}: {exc}")
                if time.monotonic() >= deadline:
                    raise fault from exc
                self._fault = fault
        return self._device

    def _close_device(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            try:
                device.close()
            except SERIAL_ERRORS:
                pass  # already gone with the device
