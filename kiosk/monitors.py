"""Input monitors between the hardware and the station loop.

* ``ScaleMonitor`` keeps a sliding window of samples from one scale and says
  whether the weight is stable (max - min <= band over ``window_s``, every
  sample within it taken after a given instant) and what it is.  The window runs
  all the time, so the stable "before" weight is usually known the moment a
  resident scans: it adds no wait to scan -> unlock.
* ``ScannerPump`` reads the scanner and posts each payload to the station.

Both run either inline (``poll_once()``, called by the station loop: the mode
for virtual time, where a fake's ``read`` advances the clock) or on a daemon
thread (``start()``: the mode on a Pi, where ``read`` blocks on the device).
A thread never touches the flow: it only posts events or updates its window
under a lock, and the single-threaded loop acts on them.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Callable

from hardware import HardwareFault, ScaleFault, ScannerFault
from hardware.interfaces import QrReader, Scale, WeightSample

log = logging.getLogger(__name__)

#: longest a single read may block, so threads notice stop() promptly
READ_TIMEOUT_S = 0.5


class ScaleMonitor:
    """A stable-weight window over one scale's samples."""

    def __init__(
        self,
        name: str,
        scale: Scale,
        *,
        band_g: int,
        window_s: float,
        clock,
        read_timeout_s: float = 1.0,
        max_samples: int = 2_000,
    ):
        self.name = name
        self.scale = scale
        self.band_g = int(band_g)
        self.window_s = float(window_s)
        self.clock = clock
        self.read_timeout_s = read_timeout_s
        # bounded: at 80 SPS a 2 s window needs 160 samples
        self._samples: deque[WeightSample] = deque(maxlen=max_samples)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None
        self.samples_seen = 0

    def feed(self, sample: WeightSample) -> None:
        """Add one sample; forget samples older than the window needs."""
        with self._lock:
            self._samples.append(sample)
            self.samples_seen += 1
            self.error = None
            # keep one sample older than the window, so a full window is provable
            while len(self._samples) > 2 and self._samples[1].at_s <= sample.at_s - self.window_s:
                self._samples.popleft()

    def fail(self, message: str) -> None:
        """Record a read failure: no weight is stable until samples flow again."""
        with self._lock:
            self.error = message
            self._samples.clear()

    def stable_g(self, since_s: float | None = None) -> int | None:
        """Return the stable weight, or None if the last ``window_s`` moved or is too short.

        With ``since_s``, the whole window must have been sampled after it (a weight
        "after the door closed" must not be an old reading).
        """
        with self._lock:
            if self.error or not self._samples:
                return None
            newest = self._samples[-1].at_s
            window = [s for s in self._samples if s.at_s >= newest - self.window_s - 1e-9]
            if newest - window[0].at_s < self.window_s - 1e-9:
                return None
            if since_s is not None and window[0].at_s < since_s:
                return None
            if any(s.stable is False for s in window):
                return None
            grams = sorted(s.grams for s in window)
        if grams[-1] - grams[0] > self.band_g:
            return None
        return grams[len(grams) // 2]

    def last_g(self) -> int | None:
        """Return the latest reading, stable or not (for status and calibration)."""
        with self._lock:
            return self._samples[-1].grams if self._samples else None

    def poll_once(self) -> None:
        """Take one sample now (inline mode); a failure is recorded, not raised."""
        try:
            self.feed(self.scale.read(self.read_timeout_s))
        except ScaleFault as exc:
            self.fail(str(exc))

    def start(self) -> None:
        """Sample on a daemon thread until ``stop()``."""
        self._thread = threading.Thread(target=self._run, name=f"scale-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.feed(self.scale.read(self.read_timeout_s))
            except ScaleFault as exc:
                self.fail(str(exc))
                self._stop.wait(READ_TIMEOUT_S)  # a dead scale must not spin the CPU
            except Exception as exc:  # never let the thread die silently
                log.exception("scale %s: unexpected error", self.name)
                self.fail(f"scale driver error: {exc}")
                self._stop.wait(READ_TIMEOUT_S)

    def stop(self) -> None:
        """Stop the sampling thread (if any) and wait briefly for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.read_timeout_s + 1)


class ScannerPump:
    """Reads the scanner and hands every payload to ``post``."""

    def __init__(self, reader: QrReader, post: Callable[..., bool]):
        self.reader = reader
        self.post = post
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def poll_once(self) -> None:
        """Read without waiting (inline mode)."""
        self._read(0.0)

    def _read(self, timeout_s: float) -> None:
        try:
            payload = self.reader.read(timeout_s)
        except (ScannerFault, HardwareFault) as exc:
            if self.error is None:
                log.error("scanner fault: %s", exc)
            self.error = str(exc)
            return
        self.error = None
        if payload:
            self.post("scan", payload=payload.strip())

    def start(self) -> None:
        """Read on a daemon thread until ``stop()``."""
        self._thread = threading.Thread(target=self._run, name="scanner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._read(READ_TIMEOUT_S)
            if self.error:
                self._stop.wait(READ_TIMEOUT_S)  # the driver reconnects; do not spin

    def stop(self) -> None:
        """Stop the reading thread (if any)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * READ_TIMEOUT_S + 1)
