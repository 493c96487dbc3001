"""Serial devices simulated over pseudo-terminals, for the real serial drivers.

Each device owns a pty pair (``os.openpty()``) and publishes the slave at a
stable symlink path, as udev does under ``/dev/serial/by-id``; the driver
opens that path with pyserial exactly as it would a USB scanner.  Handles:

* ``send_line`` / ``send_bytes`` (partial lines, garbage, anything);
* ``unplug()`` removes the path and hangs up the pty (the driver's reads fail
  with EIO, as on a real unplug); ``replug()`` creates a new pty behind the
  same path (a re-plugged device comes back as a new tty);
* ``FakeSerialScanner.scan(payload)``;
* ``FakeScaleIndicator``: a continuous-frame streamer (on demand with
  ``emit()``, on request ``R``, or on a timer) or an MT-SICS responder that
  answers ``S``, ``SI`` and ``Z`` from its state and can be told to be
  unstable, busy, overloaded or to answer errors.

Like a UART, the device drops bytes it cannot deliver (``overflow_bytes``)
rather than block when the driver does not read.
"""

from __future__ import annotations

import os
import select
import threading
import time
import tty
from pathlib import Path

from hardware.scale_frames import format_continuous, format_sics_weight

_POLL_S = 0.02


class DeviceUnplugged(RuntimeError):
    """A test tried to send through a simulated device that is unplugged."""


class PtyDevice:
    """A simulated serial device at the far end of a pty, reachable at ``path``."""

    def __init__(self, path: str | os.PathLike, *, terminator: bytes = b"\r\n") -> None:
        self.path = str(path)
        self.terminator = terminator
        self.received = bytearray()  # every byte the driver wrote
        self.overflow_bytes = 0
        self.plug_count = 0
        self._lock = threading.RLock()
        self._master: int | None = None
        self._slave: int | None = None
        self._stop = threading.Event()
        self.replug()
        self._thread = threading.Thread(target=self._serve, name=f"pty {self.path}", daemon=True)
        self._thread.start()

    # -- plugging ----------------------------------------------------------------

    @property
    def plugged(self) -> bool:
        """Return True while the device is connected."""
        return self._master is not None

    @property
    def tty_name(self) -> str | None:
        """Return the current pty slave (what ``path`` points to), or None."""
        with self._lock:
            return os.ttyname(self._slave) if self._slave is not None else None

    def replug(self) -> None:
        """Connect (again): a new pty appears behind ``path``."""
        with self._lock:
            if self._master is not None:
                return
            master, slave = os.openpty()
            # raw at once: with the default line discipline, bytes the device
            # sends would be echoed back to it as if the driver had sent them
            tty.setraw(slave)
            os.set_blocking(master, False)
            self._master, self._slave = master, slave
            tmp = f"{self.path}.tmp{os.getpid()}"
            os.symlink(os.ttyname(slave), tmp)
            os.replace(tmp, self.path)  # atomic, like udev swapping the link
            self.plug_count += 1

    def unplug(self) -> None:
        """Disconnect: the path disappears and the open tty hangs up."""
        with self._lock:
            if self._master is None:
                return
            Path(self.path).unlink(missing_ok=True)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = None

    def close(self) -> None:
        """Stop the device thread and unplug."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.unplug()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        """Send raw bytes to the driver (any bytes: partial lines, garbage)."""
        with self._lock:
            if self._master is None:
                raise DeviceUnplugged(f"{self.path} is unplugged")
            try:
                sent = os.write(self._master, data)
            except BlockingIOError:
                sent = 0
            self.overflow_bytes += len(data) - sent

    def send_line(self, text: str) -> None:
        """Send one ASCII line followed by the device's terminator."""
        self.send_bytes(text.encode("ascii") + self.terminator)

    # -- receiving ---------------------------------------------------------------

    def _serve(self) -> None:
        """Read what the driver writes and hand it to ``on_bytes``."""
        while not self._stop.is_set():
            self.tick()
            with self._lock:
                master = self._master
            if master is None:
                self._stop.wait(_POLL_S)
                continue
            try:
                ready, _, _ = select.select([master], [], [], _POLL_S)
            except (OSError, ValueError):
                continue  # unplugged while waiting
            with self._lock:
                if not ready or master != self._master:
                    continue
                try:
                    data = os.read(master, 4096)
                except (BlockingIOError, OSError):
                    continue  # EIO: no driver has the tty open right now
            if data:
                self.received += data
                self.on_bytes(data)

    def on_bytes(self, data: bytes) -> None:
        """Handle bytes from the driver (subclasses answer commands)."""

    def tick(self) -> None:
        """Do periodic work on the device thread (subclasses stream frames)."""


class FakeSerialScanner(PtyDevice):
    """A serial QR scanner: each ``scan`` sends prefix + payload + suffix + terminator."""

    def __init__(
        self, path, *, terminator: bytes = b"\r", prefix: str = "", suffix: str = ""
    ) -> None:
        self.prefix, self.suffix = prefix, suffix
        super().__init__(path, terminator=terminator)

    def scan(self, payload: str) -> None:
        """Send one scanned payload, framed as the scanner is configured."""
        self.send_line(f"{self.prefix}{payload}{self.suffix}")


class FakeScaleIndicator(PtyDevice):
    """A weighing indicator: continuous frames, or an MT-SICS responder.

    State: gross grams, ``stable``, ``overload``/``underload``, ``busy``
    (MT-SICS ``S I``/``Z I``) and ``error`` (answer every command with
    "ES", "ET" or "EL").  ``zero()`` by command keeps an offset like a real
    indicator.
    """

    def __init__(
        self,
        path,
        *,
        protocol: str = "continuous",
        unit: str = "kg",
        kind: str = "GS",
        stream_interval_s: float | None = None,
    ) -> None:
        if protocol not in ("continuous", "mt-sics"):
            raise ValueError(f"unknown protocol {protocol!r}")
        self.protocol, self.unit, self.kind = protocol, unit, kind
        self.stream_interval_s = stream_interval_s
        self.gross_g, self.zero_g = 0, 0
        self.stable, self.overload, self.underload, self.busy = True, False, False, False
        self.error: str | None = None
        self.commands: list[str] = []  # every command line received
        self.replies: list[str] = []  # every MT-SICS reply sent
        self._rx_line = bytearray()
        self._next_emit_s = 0.0
        super().__init__(path, terminator=b"\r\n")

    def set_weight(self, grams: int, *, stable: bool = True) -> None:
        """Put ``grams`` (gross) on the platform; ``stable=False`` while it swings."""
        # both at once: the device thread must never frame the new weight with the old flag
        with self._lock:
            self.gross_g, self.stable = grams, stable

    @property
    def display_g(self) -> int:
        """Return the weight the indicator shows (gross minus its zero)."""
        return self.gross_g - self.zero_g

    def frame(self) -> str:
        """Return the continuous frame for the current state."""
        with self._lock:  # one consistent state, never half of a set_weight()
            if self.overload:
                return format_continuous(0, status="OL", kind=self.kind, unit=self.unit)
            status = "ST" if self.stable else "US"
            return format_continuous(self.display_g, status=status, kind=self.kind, unit=self.unit)

    def emit(self) -> None:
        """Send one continuous frame now."""
        self.send_line(self.frame())

    def tick(self) -> None:
        """Stream a frame every ``stream_interval_s`` while plugged (continuous mode)."""
        if self.protocol != "continuous" or not self.stream_interval_s or not self.plugged:
            return
        now = time.monotonic()
        if now >= self._next_emit_s:
            self._next_emit_s = now + self.stream_interval_s
            try:
                self.emit()
            except DeviceUnplugged:
                pass  # unplugged between the check and the send

    def on_bytes(self, data: bytes) -> None:
        """Collect command lines (CR, LF or CRLF) and answer each."""
        self._rx_line += data
        while True:
            cut = min(
                (i for i in (self._rx_line.find(b"\r"), self._rx_line.find(b"\n")) if i >= 0),
                default=-1,
            )
            if cut < 0:
                return
            command = self._rx_line[:cut].decode("ascii", "replace").strip()
            del self._rx_line[: cut + 1]
            if command:
                self.commands.append(command)
                self._answer(command)

    def _answer(self, command: str) -> None:
        if self.protocol == "continuous":
            if command == "R":
                try:
                    self.emit()
                except DeviceUnplugged:
                    pass  # a real device unplugged mid-answer answers nothing
            return
        with self._lock:  # one consistent state, never half of a set_weight()
            reply = self.error or self._sics_reply(command)
        # Record before sending: the driver may act on the reply (and a test read
        # ``replies``) before send_line() returns to this thread.
        self.replies.append(reply)
        try:
            self.send_line(reply)
        except DeviceUnplugged:
            self.replies.pop()  # a real device unplugged mid-answer answers nothing

    def _sics_reply(self, command: str) -> str:
        """Return the MT-SICS reply to ``command`` for the current state."""
        if command in ("S", "SI"):
            if self.overload:
                return "S +"
            if self.underload:
                return "S -"
            if self.busy or (command == "S" and not self.stable):
                return "S I"  # S waits for stability; a real balance gives up with S I
            return format_sics_weight(self.display_g, stable=self.stable, unit="g")
        if command == "Z":
            if self.overload:
                return "Z +"
            if self.underload:
                return "Z -"
            if self.busy or not self.stable:
                return "Z I"
            self.zero_g = self.gross_g
            return "Z A"
        return "ES"
