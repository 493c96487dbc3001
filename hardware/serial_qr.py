"""QR scanner on a serial line (USB-CDC /dev/ttyACM*, RS-232, or a pyserial URL).

A reader thread owns the port: it assembles lines (partial writes, stray
CR/LF, garbage and over-long lines tolerated, each drop logged and counted),
strips the configured prefix/suffix, and queues payloads in a bounded queue
(oldest dropped when full: a resident re-scans; a stale scan must not act
later).  When the device disappears (unplug: a read error, or the by-id path
gone) the thread closes it, exposes a :class:`ScannerFault` through
``fault``/``health()`` and ``read()``, and reopens the same path with
exponential backoff until the scanner is plugged back.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Self

from hardware import HardwareConfigError
from hardware.payload_queue import PayloadQueue, QueuedScanner
from hardware.serial_port import (
    SERIAL_ERRORS,
    LineAssembler,
    PortSettings,
    check_terminator,
    open_port,
)

log = logging.getLogger(__name__)


def _ascii_setting(name: str, value: str) -> str:
    """Return a prefix/suffix as given; raise HardwareConfigError if not ASCII text."""
    if not isinstance(value, str) or not value.isascii() or len(value) > 16:
        raise HardwareConfigError(f"{name}: {value!r} must be ASCII text of at most 16 characters")
    return value


class SerialQrReader(QueuedScanner):
    """A serial barcode scanner that yields one payload per scanned line."""

    def __init__(
        self,
        port: str,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: float = 1,
        terminator: str = "any",
        prefix: str = "",
        suffix: str = "",
        max_len: int = 256,
        queue_size: int = 16,
        reconnect_min_s: float = 0.1,
        reconnect_max_s: float = 5.0,
        poll_s: float = 0.05,
    ) -> None:
        self._settings = PortSettings(port, baudrate, bytesize, parity, stopbits)
        check_terminator(terminator)
        self._prefix = _ascii_setting("prefix", prefix)
        self._suffix = _ascii_setting("suffix", suffix)
        if not isinstance(max_len, int) or max_len < 1:
            raise HardwareConfigError(f"max_len: {max_len!r} must be a positive integer")
        if not isinstance(queue_size, int) or not 1 <= queue_size <= 1024:
            raise HardwareConfigError(f"queue_size: {queue_size!r} must be 1..1024")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise HardwareConfigError("reconnect_min_s must be > 0 and <= reconnect_max_s")
        self._max_len = max_len
        self._reconnect_s = (reconnect_min_s, reconnect_max_s)
        self._poll_s = poll_s
        self._lines = LineAssembler(terminator, max_len + len(prefix) + len(suffix))
        self._payloads = PayloadQueue(queue_size, closed_message="scanner is closed")
        self._queue_size = queue_size
        self._lock = threading.Lock()  # the device and the counters
        self._stop = threading.Event()
        self._device = None
        self._counts = collections.Counter()
        self._open()  # first attempt now, so a wrong path shows in health() at once
        self._thread = threading.Thread(target=self._run, name=f"serial-qr {port}", daemon=True)
        self._thread.start()

    # -- the QrReader interface ------------------------------------------------

    def read(self, timeout_s: float) -> str | None:
        """Return the next scanned payload, or None if none came within ``timeout_s``.

        Scans queued before an unplug are still returned; with none queued,
        raise the ScannerFault while the scanner is disconnected or closed
        (as ``hardware.fakes.FakeQrReader`` does).
        """
        return self._payloads.read(timeout_s)

    def close(self) -> None:
        """Stop the reader thread and release the port."""
        self._stop.set()
        self._payloads.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._close_device()

    # -- health and diagnostics ----------------------------------------------

    @property
    def connected(self) -> bool:
        """Return True while the port is open."""
        # under the lock _open() publishes the device and clears the fault in, so a caller
        # that sees True never sees the fault of the disconnect before it
        with self._lock:
            return self._device is not None

    @property
    def device(self):
        """Return the open pyserial object (diagnostics; ``loop://`` tests write to it)."""
        return self._device

    @property
    def stats(self) -> dict[str, int]:
        """Return counters: lines, dropped_* (garbage, overlong, queue_full), reconnects."""
        with self._lock:
            counts = dict(self._counts)
        counts["dropped_overlong"] = self._lines.dropped_overlong
        return counts

    def clear(self) -> int:
        """Discard queued payloads (e.g. scans made while the kiosk was busy); return how many."""
        return self._payloads.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- the reader thread ---------------------------------------------------

    def _run(self) -> None:
        backoff_s = self._reconnect_s[0]
        while not self._stop.is_set():
            if self._device is None:
                if self._stop.wait(backoff_s) or not self._open():
                    backoff_s = min(backoff_s * 2, self._reconnect_s[1])
                    continue
                backoff_s = self._reconnect_s[0]
            self._pump()

    def _open(self) -> bool:
        """Try to open the port; record a fault and return False if it is absent."""
        try:
            device = open_port(self._settings, self._poll_s)
        except SERIAL_ERRORS as exc:
            self._set_fault(f"scanner not connected at {self._settings.port}: {exc}")
            return False
        self._lines.reset()
        with self._lock:
            self._device = device
            was_faulted = self._payloads.clear_fault()
            if was_faulted:
                self._counts["reconnects"] += 1
        if was_faulted:
            log.warning("scanner connected at %s", self._settings.port)
        return True

    def _pump(self) -> None:
        """Read what is waiting (or wait up to poll_s for one byte) and queue lines."""
        device = self._device
        try:
            data = device.read(max(1, device.in_waiting))
            if not data and self._settings.vanished():
                raise OSError(f"{self._settings.port} vanished")
        except SERIAL_ERRORS as exc:
            self._close_device()
            self._set_fault(f"scanner disconnected from {self._settings.port}: {exc}")
            return
        for line in self._lines.feed(data):
            self._accept(line)

    def _accept(self, raw: bytes) -> None:
        """Turn one line into a payload and queue it, or drop it with a warning."""
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            return self._drop("garbage", "non-ASCII line", raw)
        if self._prefix and text.startswith(self._prefix):
            text = text[len(self._prefix) :]
        if self._suffix and text.endswith(self._suffix):
            text = text[: -len(self._suffix)]
        text = text.strip(" \t\r\n")
        if not text:
            return None
        if not text.isprintable():
            return self._drop("garbage", "control characters in line", raw)
        if len(text) > self._max_len:
            return self._drop("overlong_payload", f"payload longer than {self._max_len}", raw)
        with self._lock:
            self._counts["lines"] += 1
            kept_all = self._payloads.put(text)
            if not kept_all:
                self._counts["dropped_queue_full"] += 1
        if not kept_all:
            log.warning("scanner queue full (%d): dropped the oldest scan", self._queue_size)
        return None

    def _drop(self, reason: str, why: str, raw: bytes) -> None:
        with self._lock:
            self._counts[f"dropped_{reason}"] += 1
        log.warning("scanner: dropped a line (%s): %r", why, raw[:40])

    def _set_fault(self, message: str) -> None:
        if self._payloads.set_fault(message):  # a waiting read() raises now, not at its timeout
            log.error("%s", message)

    def _close_device(self) -> None:
        with self._lock:
            device, self._device = self._device, None
        if device is not None:
            try:
                device.close()
            except SERIAL_ERRORS:
                pass  # it is already gone; nothing else to release
