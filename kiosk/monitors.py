"""Input monitors between the hardware and the station loop.

* ``ScaleMonitor`` feeds one scale's samples to a ``StabilityDetector`` (max - min
  <= band over ``window_s``) and says whether the weight is stable and what it is.
  It runs all the time, so the stable "before" weight is usually known the moment
  a resident scans: it adds no wait to scan -> unlock.  ``restart()`` forgets the
  window, so a weight "after the door closed" is made only of later samples.
* ``ScannerPump`` reads the scanner and posts each payload to the station.
* ``InputMonitors`` holds both and answers the flow's questions about them
  (``kiosk.flow.Readings``): the flow decides what the answers mean.

Both run either inline (``poll_once()``, called by the station loop: the mode
for virtual time, where a fake's ``read`` advances the clock) or on a daemon
thread (``start()``: the mode on a Pi, where ``read`` blocks on the device).
A thread never touches the flow: it only posts events or updates its window
under a lock, and the single-threaded loop acts on them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from hardware import HardwareFault, ScaleFault, ScannerFault
from hardware.clock import Clock
from hardware.interfaces import QrReader, Scale, WeightSample
from hardware.stability import StabilityDetector

log = logging.getLogger(__name__)

#: longest a single read may block, so threads notice stop() promptly
READ_TIMEOUT_S = 0.5
#: a scale read's timeout when its driver gives no ``read_timeout_s`` hint
DEFAULT_SCALE_READ_TIMEOUT_S = 1.0


def scale_read_timeout_s(scale: Scale) -> float:
    """Return the driver's ``read_timeout_s`` hint (a slow HX711 needs more), else the default."""
    hint = getattr(scale, "read_timeout_s", None)
    if isinstance(hint, (int, float)) and not isinstance(hint, bool) and hint > 0:
        return float(hint)
    return DEFAULT_SCALE_READ_TIMEOUT_S


class ScaleMonitor:
    """A stable-weight window (``hardware.stability.StabilityDetector``) over one scale."""

    def __init__(
        self,
        name: str,
        scale: Scale,
        *,
        band_g: int,
        window_s: float,
        clock: Clock,
        read_timeout_s: float | None = None,
    ):
        self.name = name
        self.scale = scale
        self.window_s = float(window_s)
        self.clock = clock
        # the driver knows how slow it is: an HX711 at 10 SPS needs ~0.9 s after an overrun,
        # so a fixed 1 s would log transient scale faults
        self.read_timeout_s = (
            scale_read_timeout_s(scale) if read_timeout_s is None else read_timeout_s
        )
        self.detector = StabilityDetector(band_g=int(band_g), window_s=float(window_s))
        self._lock = threading.Lock()
        self._stable_g: int | None = None
        self._last_at_s: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.error: str | None = None
        self.samples_seen = 0

    def feed(self, sample: WeightSample) -> None:
        """Add one sample to the window."""
        with self._lock:
            self.samples_seen += 1
            self.error = None
            self._last_at_s = sample.at_s
            if sample.stable is False:  # the instrument itself reports motion
                self.detector.reset()
                self._stable_g = None
                return
            self._stable_g = self.detector.feed(sample)

    def fail(self, message: str) -> None:
        """Record a read failure: no weight is stable until samples flow again."""
        with self._lock:
            self.error = message
            self.detector.reset()
            self._stable_g = None

    def restart(self) -> None:
        """Forget the window: the next stable weight is made of samples taken from now on."""
        with self._lock:
            self.detector.reset()
            self._stable_g = None

    def stable_g(self) -> int | None:
        """Return the stable weight, or None while in motion, failed or stale."""
        with self._lock:
            if self.error or self._stable_g is None or self._last_at_s is None:
                return None
            # a sampling thread that stalled must not leave an old weight looking current
            if self.clock.monotonic() - self._last_at_s > max(2.0, 2 * self.window_s):
                return None
            return self._stable_g

    def last_g(self) -> int | None:
        """Return the latest filtered reading, stable or not (for status and calibration)."""
        with self._lock:
            return self.detector.last_g

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


class InputMonitors:
    """The scale monitors and the scanner pump, read the way the flow asks (``Readings``)."""

    def __init__(self, scales: dict[str, ScaleMonitor], scanner: ScannerPump):
        self.scales = scales
        self.scanner = scanner

    @classmethod
    def build(
        cls,
        scales: dict[str, Scale],
        scanner: QrReader,
        post: Callable[..., bool],
        *,
        band_g: int,
        window_s: float,
        clock: Clock,
    ) -> InputMonitors:
        """Return a monitor per scale and a pump posting the scanner's payloads to ``post``."""
        monitors = {
            name: ScaleMonitor(name, scale, band_g=band_g, window_s=window_s, clock=clock)
            for name, scale in scales.items()
        }
        return cls(monitors, ScannerPump(scanner, post))

    def monitor(self, scale: str | None) -> ScaleMonitor | None:
        """Return the monitor of ``scale``, else the first one (None without any scale)."""
        if scale in self.scales:
            return self.scales[scale]
        return next(iter(self.scales.values()), None)

    def scale_error(self, scale: str | None) -> str | None:
        """Return why ``scale`` cannot be read, or None."""
        monitor = self.monitor(scale)
        return monitor.error if monitor is not None else None

    def stable_g(self, scale: str | None) -> int | None:
        """Return the stable weight of ``scale`` since its last restart, or None."""
        monitor = self.monitor(scale)
        return monitor.stable_g() if monitor is not None else None

    def stable_weights(self) -> dict[str, int] | None:
        """Return every scale's stable weight, or None until each one has settled."""
        weights = {name: m.stable_g() for name, m in self.scales.items()}
        if not weights or None in weights.values():
            return None
        return weights

    def scales_settled(self) -> bool:
        """True when every scale answers and is stable."""
        return all(m.error is None and m.stable_g() is not None for m in self.scales.values())

    def restart_weighing(self) -> None:
        """Forget every window: the next stable weights are made of samples from now on."""
        for monitor in self.scales.values():
            monitor.restart()

    def scanner_error(self) -> str | None:
        """Return why the scanner cannot be read, or None."""
        return self.scanner.error

    def poll_scales(self) -> None:
        """Take one sample of every scale now (inline mode)."""
        for monitor in self.scales.values():
            monitor.poll_once()

    def start(self) -> None:
        """Read the scanner and sample every scale on daemon threads."""
        for monitor in self.scales.values():
            monitor.start()
        self.scanner.start()

    def stop(self) -> None:
        """Stop the scanner's and the scales' threads."""
        self.scanner.stop()
        for monitor in self.scales.values():
            monitor.stop()
