"""CameraQrReader: files source with both decoders, repeat suppression, live-source behaviour."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import qrcode
import qrcode.constants

from hardware import HardwareConfigError, ScannerFault, camera_qr
from hardware.camera_qr import CameraQrReader, RepeatFilter
from hardware.clock import VirtualClock
from hardware.interfaces import QrReader
from tests.hardware.serial_rig import WAIT_S, wait_until


def save_qr(path, payload: str) -> None:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=5, border=4)
    code.add_data(payload)
    code.make(fit=True)
    code.make_image().get_image().convert("L").save(path)


@pytest.fixture
def frames_dir(tmp_path):
    """Four frames in name order: A, A again (label still in view), B, then no label."""
    save_qr(tmp_path / "f0.png", "SP1-A")
    save_qr(tmp_path / "f1.png", "SP1-A")
    save_qr(tmp_path / "f2.png", "SP1-B")
    from PIL import Image

    Image.new("L", (640, 480), 128).save(tmp_path / "f3.png")
    return tmp_path


def drain(reader: CameraQrReader) -> list[str]:
    assert reader.wait_finished(WAIT_S)
    payloads = []
    while (payload := reader.read(0)) is not None:
        payloads.append(payload)
    return payloads


@pytest.mark.parametrize("decoder", ["zxing", "pyzbar"])
def test_files_source_reports_each_label_once(frames_dir, decoder):
    # virtual time that stands still: the second sighting of A is within the 2 s window
    # however slowly the machine decodes (on the real clock a stall made it a new scan)
    clock = VirtualClock()
    with CameraQrReader(
        source=f"files:{frames_dir}/f*.png", decoder=decoder, clock=clock
    ) as reader:
        assert isinstance(reader, QrReader)
        assert reader.decoder_name == decoder
        assert drain(reader) == ["SP1-A", "SP1-B"]
        assert reader.stats == {"frames": 4, "decoded": 2, "suppressed": 1}
        assert reader.health() is None


def test_without_suppression_every_sighting_is_reported(frames_dir):
    with CameraQrReader(source=f"files:{frames_dir}/f*.png", repeat_suppress_s=0) as reader:
        assert drain(reader) == ["SP1-A", "SP1-A", "SP1-B"]


def test_default_decoder_is_zxing(frames_dir):
    with CameraQrReader(source=f"files:{frames_dir}/f*.png") as reader:
        assert reader.decoder_name == "zxing"


def test_repeat_filter_counts_from_the_last_sighting():
    repeats = RepeatFilter(2.0)
    assert repeats.accept("A", 0.0)
    assert not repeats.accept("A", 1.0)  # still in view
    assert not repeats.accept("A", 2.9)  # seen at 1.0: only 1.9 s out of view
    assert repeats.accept("B", 3.0)
    assert repeats.accept("A", 5.0)  # out of view for 2.1 s: a new scan
    with pytest.raises(HardwareConfigError, match="repeat_suppress_s"):
        RepeatFilter(-1)


def test_repeat_filter_memory_stays_bounded():
    repeats = RepeatFilter(1.0)
    for i in range(1000):
        assert repeats.accept(f"P{i}", float(i))
    assert len(repeats._last_seen) <= 65


@pytest.mark.parametrize(
    "options, key",
    [
        ({"source": "webcam"}, "source"),
        ({"source": "picamera2:1"}, "source"),
        ({"source": "files:/nonexistent/*.png"}, "source"),
        ({"decoder": "zbarlight"}, "decoder"),
        ({"frame_queue": 0}, "frame_queue"),
        ({"queue_size": 0}, "queue_size"),
    ],
)
def test_bad_config_names_the_key(frames_dir, options, key):
    options.setdefault("source", f"files:{frames_dir}/f*.png")
    with pytest.raises(HardwareConfigError, match=key):
        CameraQrReader(**options)


# -- a live source (stands in for picamera2 / OpenCV) -----------------------------------


class LiveSource:
    """A camera that yields numbered blank frames as fast as asked, then ends."""

    live = True

    def __init__(self, count: int, fail_after: int | None = None, hold_second=None):
        self.count, self.fail_after = count, fail_after
        self.hold_second = hold_second  # an Event to wait for before frame 2
        self.served = 0
        self.done = threading.Event()

    def read(self):
        if self.served == 1 and self.hold_second is not None:
            assert self.hold_second.wait(WAIT_S)
        if self.fail_after is not None and self.served >= self.fail_after:
            raise OSError("camera unplugged")
        if self.served >= self.count:
            self.done.set()
            return None
        self.served += 1
        frame = np.full((48, 64), 128, np.uint8)
        frame[0, 0] = self.served % 256  # the frame's number, for the decoder to see
        return frame

    def close(self):
        """Nothing to release: the frames are made in memory."""


class RecordingDecoder:
    """Records which frames it was given (and on which thread); blocks until released."""

    name = "recording"

    def __init__(self, gate: threading.Event | None = None, fail_on: set[int] = frozenset()):
        self.gate, self.fail_on = gate, fail_on
        self.seen: list[int] = []
        self.threads: set[str] = set()
        self.started = threading.Event()

    def decode(self, image):
        number = int(image[0, 0])
        self.seen.append(number)
        self.started.set()
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(WAIT_S)
        if number in self.fail_on:
            raise RuntimeError("decoder bug")
        return [f"P{number}"]


def live_reader(monkeypatch, sources, decoder, **options) -> CameraQrReader:
    pending = list(sources)
    monkeypatch.setattr(
        camera_qr, "open_source", lambda *a: pending.pop(0) if len(pending) > 1 else pending[0]
    )
    monkeypatch.setattr(camera_qr, "get_decoder", lambda name: decoder)
    return CameraQrReader(source="picamera2", repeat_suppress_s=0, **options)


def test_live_source_drops_old_frames_while_the_decoder_is_busy(monkeypatch):
    gate = threading.Event()
    decoder = RecordingDecoder(gate)
    source = LiveSource(50, hold_second=decoder.started)
    with live_reader(monkeypatch, [source], decoder, frame_queue=2) as reader:
        assert source.done.wait(WAIT_S)  # the camera ran on while frame 1 was decoding
        gate.set()
        assert wait_until(lambda: len(decoder.seen) == 3)
        assert decoder.seen == [1, 49, 50]  # the newest two frames, never a backlog
        assert reader.stats["dropped_frames"] == 47
        assert [reader.read(WAIT_S) for _ in range(3)] == ["P1", "P49", "P50"]
        assert decoder.threads == {"camera-decode"}  # never the caller's thread


def test_camera_failure_is_a_fault_then_the_camera_is_reopened(monkeypatch):
    failing, healthy = LiveSource(10, fail_after=0), LiveSource(1)
    decoder = RecordingDecoder()
    with live_reader(monkeypatch, [failing, healthy], decoder) as reader:
        assert wait_until(lambda: reader.stats.get("decoded") == 1)
        assert reader.read(WAIT_S) == "P1"
        assert reader.health() is None  # cleared once the camera reopened


def test_a_failing_camera_makes_read_raise(monkeypatch):
    broken = LiveSource(10, fail_after=0)
    with live_reader(monkeypatch, [broken], RecordingDecoder(), reconnect_max_s=0.05) as reader:
        assert wait_until(lambda: reader.fault is not None)
        with pytest.raises(ScannerFault, match="camera unplugged"):
            reader.read(WAIT_S)


def test_a_decoder_error_on_one_frame_is_counted_not_fatal(monkeypatch):
    source = LiveSource(3)
    decoder = RecordingDecoder(fail_on={1})
    with live_reader(monkeypatch, [source], decoder, frame_queue=8) as reader:
        assert reader.wait_finished(WAIT_S)
        assert [reader.read(WAIT_S), reader.read(WAIT_S)] == ["P2", "P3"]
        assert reader.stats["decode_errors"] == 1


def test_close_stops_both_threads(frames_dir):
    reader = CameraQrReader(source=f"files:{frames_dir}/f*.png")
    reader.close()
    assert not any(thread.is_alive() for thread in reader._threads)
    with pytest.raises(ScannerFault, match="closed"):
        reader.read(0)
