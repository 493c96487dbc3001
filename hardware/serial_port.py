"""Serial-port plumbing shared by the serial scanner and scale drivers.

The only module that imports pyserial.  It validates port settings (so a bad
config value stops start-up naming the key), opens a port by path, by-id
symlink or pyserial URL (``loop://``, ``socket://``...), tells whether a path
port has vanished (unplug), and assembles bytes into lines tolerant of
partial writes, stray CR/LF and over-long garbage.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

import serial

from hardware import HardwareConfigError

log = logging.getLogger(__name__)

try:  # pyserial's POSIX backend calls termios directly (tcflush in reset_input_buffer, open)
    from termios import error as _TermiosError
except ImportError:  # no termios (not POSIX): pyserial raises only its own errors there
    _TermiosError = OSError

#: what a read or write raises when the device goes away mid-use; termios.error (not an
#: OSError) is what flushing a tty the kernel has hung up on an unplug raises
SERIAL_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, _TermiosError)
TERMINATORS: dict[str, bytes | None] = {"CR": b"\r", "LF": b"\n", "CRLF": b"\r\n", "any": None}
_PARITIES = {"N", "E", "O", "M", "S"}
_URL_RE = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
#: bound on one write.  A command is a few bytes, so only a device that stopped taking them
#: (flow control stuck) needs long.  pyserial raises "Write timeout" once this much time has
#: passed during a write even when every byte went out: a bound near a scheduler delay (it was
#: the 50 ms read poll) turned a busy CPU into a "disconnected" scale.
WRITE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class PortSettings:
    """Where a serial device is and how it frames bytes (9600 8N1 by default)."""

    port: str
    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 1

    def __post_init__(self) -> None:
        if not isinstance(self.port, str) or not self.port:
            raise HardwareConfigError("port: give a device path, by-id path or pyserial URL")
        if not isinstance(self.baudrate, int) or not 50 <= self.baudrate <= 4_000_000:
            raise HardwareConfigError(f"baudrate: {self.baudrate!r} is not a baud rate")
        if self.bytesize not in (5, 6, 7, 8):
            raise HardwareConfigError(f"bytesize: {self.bytesize!r} is not 5, 6, 7 or 8")
        if self.parity not in _PARITIES:
            raise HardwareConfigError(f"parity: {self.parity!r} is not one of N, E, O, M, S")
        if self.stopbits not in (1, 1.5, 2):
            raise HardwareConfigError(f"stopbits: {self.stopbits!r} is not 1, 1.5 or 2")

    @property
    def is_url(self) -> bool:
        """Return True for a pyserial URL such as ``loop://``."""
        return bool(_URL_RE.match(self.port))

    def vanished(self) -> bool:
        """Return True when a path port no longer exists (the device was unplugged)."""
        return not self.is_url and not os.path.exists(self.port)


def open_port(settings: PortSettings, timeout_s: float) -> serial.SerialBase:
    """Open the port; raise SERIAL_ERRORS if absent, HardwareConfigError if refused."""
    options = {
        "baudrate": settings.baudrate,
        "bytesize": settings.bytesize,
        "parity": settings.parity,
        "stopbits": settings.stopbits,
        "timeout": timeout_s,
        "write_timeout": WRITE_TIMEOUT_S,
    }
    if not settings.is_url:
        # flock the device so a second kiosk process cannot steal half the bytes
        options["exclusive"] = True
    try:
        return serial.serial_for_url(settings.port, **options)
    except ValueError as exc:
        raise HardwareConfigError(f"port {settings.port!r}: {exc}") from exc


def check_terminator(terminator: str) -> bytes | None:
    """Return the terminator's bytes (None for "any"); raise HardwareConfigError."""
    if terminator not in TERMINATORS:
        raise HardwareConfigError(f"terminator: {terminator!r} is not one of CR, LF, CRLF, any")
    return TERMINATORS[terminator]


class LineAssembler:
    """Split a byte stream into lines, tolerant of partial lines and garbage.

    ``terminator`` "any" ends a line at CR or LF (an empty line, such as the
    LF of a CRLF, is skipped); a specific terminator ends lines only there and
    strips stray CR/LF at the edges.  A line longer than ``max_len`` bytes is
    dropped whole, including the part that arrives after the overflow.
    """

    def __init__(self, terminator: str = "any", max_len: int = 256) -> None:
        self._term = check_terminator(terminator)
        if not isinstance(max_len, int) or max_len < 1:
            raise HardwareConfigError(f"max_len: {max_len!r} must be a positive integer")
        self._max_len = max_len
        self._buf = bytearray()
        self._discarding = False
        self.dropped_overlong = 0

    def reset(self) -> None:
        """Forget a partial line (after a reconnect its start is lost anyway)."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete lines they finish, without terminators."""
        self._buf += data
        lines: list[bytes] = []
        while (found := self._find_end()) is not None:
            start, end = found
            line = bytes(self._buf[:start]).strip(b"\r\n")
            del self._buf[:end]
            if self._discarding:
                self._discarding = False
                continue
            if len(line) > self._max_len:
                self._drop_overlong(len(line))
            elif line:
                lines.append(line)
        if len(self._buf) > self._max_len:
            if not self._discarding:
                self._drop_overlong(len(self._buf))
            self._discarding = True
            # keep a byte so a CRLF split across the overflow still ends the line
            del self._buf[:-1]
        return lines

    def _find_end(self) -> tuple[int, int] | None:
        """Return (line end, next line start) of the first complete line."""
        if self._term is None:
            match = re.search(rb"[\r\n]", self._buf)
            return (match.start(), match.end()) if match else None
        at = self._buf.find(self._term)
        return None if at < 0 else (at, at + len(self._term))

    def _drop_overlong(self, length: int) -> None:
        self.dropped_overlong += 1
        log.warning("serial: dropped a line of %d+ bytes (limit %d)", length, self._max_len)
