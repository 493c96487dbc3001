"""QR codes read by a camera: Pi camera (picamera2), USB camera (OpenCV) or files.

``source`` names where frames come from: ``"picamera2"``, ``"opencv:0"``
(a V4L2 index or device path) or ``"files:GLOB"`` (image files in name
order, for tests and the field check).  The camera library is imported only
when its source is named.

Two threads keep decoding off the kiosk's main loop: a capture thread puts
frames in a small bounded queue (a live camera drops the oldest frame, so the
decoder always works on a recent one; a files source waits instead, so every
file is decoded), and a decode thread runs the configured decoder
(``hardware.decode``; zxing-cpp by default) and queues payloads.  A label
held in view is reported once: a payload is reported again only after it has
been out of sight for ``repeat_suppress_s``.  A camera that fails is closed,
reported as a :class:`ScannerFault` and reopened with backoff.
"""

from __future__ import annotations

import collections
import glob
import logging
import threading
import time
from typing import Self

import numpy as np

from hardware import HardwareConfigError, ScannerFault
from hardware.clock import Clock
from hardware.decode import DEFAULT_DECODER, get_decoder, load_image, to_gray
from hardware.payload_queue import PayloadQueue, QueuedScanner

log = logging.getLogger(__name__)


class RepeatFilter:
    """Pass a payload unless it was last seen less than ``window_s`` ago."""

    def __init__(self, window_s: float) -> None:
        if window_s < 0:
            raise HardwareConfigError(f"repeat_suppress_s: {window_s!r} must be >= 0")
        self._window_s = window_s
        self._last_seen: dict[str, float] = {}

    def accept(self, payload: str, now_s: float) -> bool:
        """Record a sighting of ``payload`` at ``now_s``; return True if it is news."""
        last = self._last_seen.get(payload)
        self._last_seen[payload] = now_s
        # keep memory bounded: forget payloads out of sight longer than the window
        if len(self._last_seen) > 64:
            self._last_seen = {
                p: t for p, t in self._last_seen.items() if now_s - t < self._window_s
            }
            self._last_seen[payload] = now_s
        return last is None or now_s - last >= self._window_s


# -- frame sources -------------------------------------------------------------


class FilesSource:
    """Frames from image files matching a glob, in name order; then the end."""

    live = False

    def __init__(self, pattern: str) -> None:
        self._paths = collections.deque(sorted(glob.glob(pattern)))
        if not self._paths:
            raise HardwareConfigError(f"source: no image files match {pattern!r}")

    def read(self) -> np.ndarray | None:
        """Return the next file's image, or None after the last."""
        return load_image(self._paths.popleft()) if self._paths else None

    def close(self) -> None:
        """Forget the remaining files."""
        self._paths.clear()


class OpenCvSource:
    """Frames from a USB camera through OpenCV (V4L2 on Linux)."""

    live = True

    def __init__(self, device: str, width: int, height: int) -> None:
        try:
            import cv2
        except ImportError as exc:
            raise HardwareConfigError(f"source 'opencv' needs opencv-python: {exc}") from exc
        self._cv2 = cv2
        index = int(device) if device.isdigit() else device
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            raise ScannerFault(f"camera {device!r} cannot be opened")
        self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def read(self) -> np.ndarray:
        """Return the next frame in gray; raise ScannerFault if the camera gives none."""
        ok, frame = self._capture.read()
        if not ok or frame is None:
            raise ScannerFault("camera gave no frame (unplugged?)")
        return to_gray(frame)

    def close(self) -> None:
        """Release the camera."""
        self._capture.release()


class Picamera2Source:
    """Frames from the Pi camera; the Y plane of YUV420 is the gray image, no conversion."""

    live = True

    def __init__(self, width: int, height: int) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise HardwareConfigError(f"source 'picamera2' needs picamera2 (apt): {exc}") from exc
        self._size = (width, height)
        self._camera = Picamera2()
        config = self._camera.create_video_configuration(
            main={"size": self._size, "format": "YUV420"}
        )
        self._camera.configure(config)
        self._camera.start()

    def read(self) -> np.ndarray:
        """Return the next frame's luma plane."""
        width, height = self._size
        return np.ascontiguousarray(self._camera.capture_array("main")[:height, :width])

    def close(self) -> None:
        """Stop and release the camera."""
        self._camera.stop()
        self._camera.close()


def open_source(source: str, width: int, height: int):
    """Return the frame source named in config; raise HardwareConfigError if unknown."""
    kind, _, arg = source.partition(":") if isinstance(source, str) else ("", "", "")
    if kind == "files" and arg:
        return FilesSource(arg)
    if kind == "opencv":
        return OpenCvSource(arg or "0", width, height)
    if kind == "picamera2" and not arg:
        return Picamera2Source(width, height)
    raise HardwareConfigError(
        f"source: {source!r} is not 'picamera2', 'opencv:INDEX' or 'files:GLOB'"
    )


# -- the reader ----------------------------------------------------------------


class CameraQrReader(QueuedScanner):
    """A camera that yields each label payload once, decoded on a worker thread."""

    def __init__(
        self,
        source: str = "picamera2",
        decoder: str = DEFAULT_DECODER,
        repeat_suppress_s: float = 2.0,
        width: int = 640,
        height: int = 480,
        frame_queue: int = 2,
        queue_size: int = 16,
        reconnect_max_s: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(frame_queue, int) or not 1 <= frame_queue <= 32:
            raise HardwareConfigError(f"frame_queue: {frame_queue!r} must be 1..32")
        if not isinstance(queue_size, int) or not 1 <= queue_size <= 1024:
            raise HardwareConfigError(f"queue_size: {queue_size!r} must be 1..1024")
        self._source_name, self._size = source, (width, height)
        self._decoder = get_decoder(decoder)
        self._repeats = RepeatFilter(repeat_suppress_s)
        self._monotonic = clock.monotonic if clock is not None else time.monotonic
        self._reconnect_max_s = reconnect_max_s
        self._frames: collections.deque[np.ndarray] = collections.deque()
        self._frame_queue = frame_queue
        # payloads and the fault have their own condition; self._cond is the workers' (frames)
        self._payloads = PayloadQueue(queue_size, closed_message="camera reader is closed")
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._source_done = False
        self._busy = False
        self._counts = collections.Counter()
        self._source = None
        self._open_source()  # config errors raise here; a camera fault is retried
        self._threads = [
            threading.Thread(target=self._capture_loop, name="camera-capture", daemon=True),
            threading.Thread(target=self._decode_loop, name="camera-decode", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- the QrReader interface ------------------------------------------------

    def read(self, timeout_s: float) -> str | None:
        """Return the next new payload, or None; raise ScannerFault while the camera fails."""
        return self._payloads.read(timeout_s)

    def close(self) -> None:
        """Stop both threads and release the camera."""
        self._stop.set()
        self._payloads.close()
        with self._cond:
            self._cond.notify_all()  # wake the workers waiting for a frame or a free slot
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout=5.0)
        self._close_source()

    # -- health and diagnostics ----------------------------------------------

    @property
    def decoder_name(self) -> str:
        """Return the decoder in use ("zxing" or "pyzbar")."""
        return self._decoder.name

    @property
    def stats(self) -> dict[str, int]:
        """Return counters: frames, dropped_frames, decoded, suppressed, decode_errors."""
        with self._cond:
            return dict(self._counts)

    def wait_finished(self, timeout_s: float) -> bool:
        """Wait until a finite (files) source is fully decoded; return False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._source_done and not self._frames and not self._busy, timeout_s
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- capture thread ------------------------------------------------------

    def _capture_loop(self) -> None:
        backoff_s = 0.1
        while not self._stop.is_set():
            if self._source is None:
                if self._stop.wait(backoff_s) or not self._open_source():
                    backoff_s = min(backoff_s * 2, self._reconnect_max_s)
                    continue
                backoff_s = 0.1
            try:
                frame = self._source.read()
            except Exception as exc:  # noqa: BLE001 - any camera library error: report, reopen
                self._close_source()
                self._set_fault(f"camera {self._source_name} failed: {exc}")
                continue
            if frame is None:
                with self._cond:
                    self._source_done = True
                    self._cond.notify_all()
                return
            # cleared by a frame, not by an open that may fail again
            if self._payloads.clear_fault():
                log.warning("camera %s delivers frames again", self._source_name)
            self._put_frame(frame)

    def _put_frame(self, frame: np.ndarray) -> None:
        """Queue a frame: a live camera drops the oldest, a files source waits."""
        with self._cond:
            self._counts["frames"] += 1
            if self._source is not None and not self._source.live:
                self._cond.wait_for(
                    lambda: len(self._frames) < self._frame_queue or self._stop.is_set()
                )
            elif len(self._frames) >= self._frame_queue:
                self._frames.popleft()
                self._counts["dropped_frames"] += 1
            self._frames.append(frame)
            self._cond.notify_all()

    def _open_source(self) -> bool:
        try:
            source = open_source(self._source_name, *self._size)
        except ScannerFault as exc:
            self._set_fault(str(exc))
            return False
        with self._cond:
            self._source = source
        return True

    def _close_source(self) -> None:
        with self._cond:
            source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except Exception:  # a failed camera may fail to close too; it is dropped anyway
                log.debug("camera close failed", exc_info=True)

    def _set_fault(self, message: str) -> None:
        if self._payloads.set_fault(message):  # a waiting read() raises now
            log.error("%s", message)

    # -- decode thread -------------------------------------------------------

    def _decode_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._frames or self._stop.is_set())
                if self._stop.is_set():
                    return
                frame = self._frames.popleft()
                self._busy = True
                self._cond.notify_all()  # a waiting files source may queue the next frame
            try:
                payloads = self._decoder.decode(frame)
            except Exception:  # a decoder bug on one frame must not stop the scanner
                log.exception("decoder %s failed on a frame", self._decoder.name)
                payloads = []
                with self._cond:
                    self._counts["decode_errors"] += 1
            self._publish(payloads)

    def _publish(self, payloads: list[str]) -> None:
        """Queue the payloads that are news; mark the decoder idle."""
        now_s = self._monotonic()
        with self._cond:
            for payload in dict.fromkeys(payloads):  # one frame may hold a code twice
                if self._repeats.accept(payload, now_s):
                    if not self._payloads.put(payload):  # the oldest was dropped for it
                        self._counts["dropped_payloads"] += 1
                    self._counts["decoded"] += 1
                else:
                    self._counts["suppressed"] += 1
            self._busy = False
            self._cond.notify_all()
