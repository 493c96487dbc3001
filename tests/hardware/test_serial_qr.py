"""SerialQrReader against a scanner simulated over a pseudo-terminal, and loop://."""

from __future__ import annotations

import logging
import threading

import pytest

from hardware import HardwareConfigError, ScannerFault
from hardware.interfaces import QrReader
from hardware.registry import build
from hardware.serial_port import LineAssembler
from hardware.serial_qr import SerialQrReader
from hardware.sim.serial_devices import DeviceUnplugged, FakeSerialScanner
from tests.hardware.serial_rig import WAIT_S, wait_until

LABEL = "SP1.greenfield.H-42.ABCDEF1234." + "x" * 86


@pytest.fixture
def port(tmp_path):
    return str(tmp_path / "usb-Fake_Scanner_0001-if00")


@pytest.fixture
def scanner(port):
    device = FakeSerialScanner(port, terminator=b"\r")
    yield device
    device.close()


@pytest.fixture
def make_reader(port):
    readers = []

    def make(**options):
        reader = SerialQrReader(port, **options)
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.close()


# -- line framing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "sent, configured",
    [
        (b"\r", "CR"),
        (b"\n", "LF"),
        (b"\r\n", "CRLF"),
        (b"\r", "any"),
        (b"\n", "any"),
        (b"\r\n", "any"),
    ],
)
def test_lines_with_each_terminator(scanner, make_reader, sent, configured):
    scanner.terminator = sent
    reader = make_reader(terminator=configured)
    scanner.scan(LABEL)
    scanner.scan("SECOND")
    assert reader.read(WAIT_S) == LABEL
    assert reader.read(WAIT_S) == "SECOND"
    assert reader.read(0.05) is None


def test_crlf_device_on_a_cr_reader_leaves_no_stray_lf(scanner, make_reader):
    scanner.terminator = b"\r\n"
    reader = make_reader(terminator="CR")
    scanner.scan("ONE")
    scanner.scan("TWO")
    assert [reader.read(WAIT_S), reader.read(WAIT_S)] == ["ONE", "TWO"]


def test_several_lines_in_one_write(scanner, make_reader):
    reader = make_reader()
    scanner.send_bytes(b"A1\rB2\rC3\r")
    assert [reader.read(WAIT_S) for _ in range(3)] == ["A1", "B2", "C3"]


def test_prefix_and_suffix_are_stripped(port, make_reader):
    with FakeSerialScanner(port, terminator=b"\r\n", prefix="\x02]Q1", suffix="\x03") as device:
        reader = make_reader(terminator="CRLF", prefix="\x02]Q1", suffix="\x03")
        device.scan(LABEL)
        assert reader.read(WAIT_S) == LABEL
        device.send_line("NOPREFIX")  # a line without them passes unchanged
        assert reader.read(WAIT_S) == "NOPREFIX"


def test_partial_line_is_held_until_its_terminator(scanner, make_reader):
    reader = make_reader()
    scanner.send_bytes(LABEL[:20].encode())
    assert reader.read(0.2) is None
    scanner.send_bytes(LABEL[20:].encode())
    assert reader.read(0.2) is None
    scanner.send_bytes(b"\r")
    assert reader.read(WAIT_S) == LABEL


def test_garbage_is_dropped_with_a_warning_and_reading_goes_on(scanner, make_reader, caplog):
    reader = make_reader()
    with caplog.at_level(logging.WARNING, logger="hardware.serial_qr"):
        scanner.send_bytes(b"\xff\xfe\x80abc\r")  # not ASCII
        scanner.send_bytes(b"AB\x07\x1bCD\r")  # control characters
        scanner.send_bytes(b"\r\r\n\n")  # empty lines are not scans
        scanner.scan("GOOD")
        assert reader.read(WAIT_S) == "GOOD"
    assert reader.read(0.05) is None
    assert reader.stats["dropped_garbage"] == 2
    assert sum("dropped a line" in r.getMessage() for r in caplog.records) == 2


def test_overlong_lines_are_dropped_whole(scanner, make_reader):
    reader = make_reader(max_len=64)
    scanner.send_bytes(b"Z" * 100 + b"\r")  # complete but too long
    scanner.send_bytes(b"Y" * 50)  # too long, arriving in pieces
    scanner.send_bytes(b"Y" * 50)
    scanner.send_bytes(b"TAIL\r")  # the rest of the over-long line: dropped too
    scanner.scan("OK-AFTER")
    assert reader.read(WAIT_S) == "OK-AFTER"
    assert reader.read(0.05) is None
    assert reader.stats["dropped_overlong"] == 2


def test_queue_is_bounded_and_drops_the_oldest(scanner, make_reader):
    reader = make_reader(queue_size=2)
    for payload in ("OLD", "MIDDLE", "NEW"):
        scanner.scan(payload)
    assert wait_until(lambda: reader.stats.get("lines") == 3)
    assert [reader.read(WAIT_S), reader.read(WAIT_S)] == ["MIDDLE", "NEW"]
    assert reader.stats["dropped_queue_full"] == 1


def test_clear_discards_queued_scans(scanner, make_reader):
    reader = make_reader()
    scanner.scan("STALE")
    assert wait_until(lambda: reader.stats.get("lines") == 1)
    assert reader.clear() == 1
    assert reader.read(0.05) is None


# -- unplug and re-plug -------------------------------------------------------------


def test_unplug_shows_a_fault_and_replug_resumes(scanner, make_reader, caplog):
    reader = make_reader(reconnect_min_s=0.01, reconnect_max_s=0.05)
    scanner.scan("BEFORE")
    assert reader.read(WAIT_S) == "BEFORE"
    assert reader.health() is None

    with caplog.at_level(logging.ERROR, logger="hardware.serial_qr"):
        scanner.unplug()
        # the fault says "disconnected" until the reader thread's first reopen, 10 ms later,
        # says "not connected": which one a read sees depends on when it runs
        with pytest.raises(ScannerFault, match="disconnected|not connected"):
            reader.read(WAIT_S)

        def errors() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

        # the reader thread logs the fault just after publishing it (which woke the read)
        assert wait_until(errors)
    # the unplug itself is reported, once, as a disconnect
    logged = errors()
    assert len(logged) == 1 and logged[0].startswith("scanner disconnected from"), logged
    assert isinstance(reader.fault, ScannerFault)
    assert not reader.connected
    with pytest.raises(DeviceUnplugged):
        scanner.scan("LOST")

    scanner.replug()
    assert wait_until(lambda: reader.connected)
    assert reader.fault is None
    scanner.scan("AFTER")
    assert reader.read(WAIT_S) == "AFTER"
    assert reader.stats["reconnects"] == 1


def test_connected_and_the_fault_change_together_on_reconnect(scanner, make_reader, monkeypatch):
    """Whoever sees ``connected`` turn True sees the disconnect's fault already cleared."""
    reader = make_reader(reconnect_min_s=0.01, reconnect_max_s=0.05)
    scanner.unplug()
    assert wait_until(lambda: reader.fault is not None and not reader.connected)
    clearing, release = threading.Event(), threading.Event()
    clear_fault = reader._payloads.clear_fault

    def held_clear_fault():  # hold the reader thread between "device open" and "fault cleared"
        clearing.set()
        assert release.wait(WAIT_S)
        return clear_fault()

    monkeypatch.setattr(reader._payloads, "clear_fault", held_clear_fault)
    scanner.replug()
    assert clearing.wait(WAIT_S)
    seen = []
    probe = threading.Thread(target=lambda: seen.append((reader.connected, reader.fault)))
    probe.start()
    probe.join(0.2)  # it must not get an answer while the reconnect is half done
    release.set()
    probe.join(WAIT_S)
    assert seen == [(True, None)]


def test_partial_line_before_unplug_is_not_glued_to_the_next(scanner, make_reader):
    reader = make_reader(reconnect_min_s=0.01, reconnect_max_s=0.05)
    scanner.send_bytes(b"HALF-A-LAB")
    assert reader.read(0.1) is None
    scanner.unplug()
    assert wait_until(lambda: reader.fault is not None)
    scanner.replug()
    assert wait_until(lambda: reader.connected)
    scanner.scan("WHOLE")
    assert reader.read(WAIT_S) == "WHOLE"


def test_queued_scans_survive_an_unplug(scanner, make_reader):
    reader = make_reader()
    scanner.scan("QUEUED")
    assert wait_until(lambda: reader.stats.get("lines") == 1)
    scanner.unplug()
    assert wait_until(lambda: reader.fault is not None)
    assert reader.read(WAIT_S) == "QUEUED"
    with pytest.raises(ScannerFault):
        reader.read(0.05)


def test_absent_at_start_is_a_fault_until_plugged(port, make_reader):
    reader = make_reader(reconnect_min_s=0.01, reconnect_max_s=0.05)
    assert isinstance(reader.health(), ScannerFault)
    with pytest.raises(ScannerFault, match="not connected"):
        reader.read(0.05)
    with FakeSerialScanner(port) as device:
        assert wait_until(lambda: reader.connected)
        device.scan("LATE")
        assert reader.read(WAIT_S) == "LATE"


def test_unplug_wakes_a_waiting_read(scanner, make_reader):
    reader = make_reader()
    outcome = []

    def wait_for_scan():
        try:
            outcome.append(reader.read(30.0))
        except ScannerFault as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_for_scan)
    waiter.start()
    scanner.unplug()
    waiter.join(WAIT_S)
    assert not waiter.is_alive()
    assert isinstance(outcome[0], ScannerFault)


# -- loop://, registry, config, close -------------------------------------------------


def test_loop_url():
    reader = SerialQrReader("loop://", terminator="CRLF", baudrate=115200)
    try:
        assert reader.health() is None
        reader.device.write(b"LOOP-1\r\nLOO")
        reader.device.write(b"P-2\r\n")
        assert [reader.read(WAIT_S), reader.read(WAIT_S)] == ["LOOP-1", "LOOP-2"]
    finally:
        reader.close()


def test_registry_builds_the_serial_scanner(scanner, port):
    reader = build("scanner", "serial", port=port, terminator="CR")
    try:
        assert isinstance(reader, QrReader)
        scanner.scan("VIA-REGISTRY")
        assert reader.read(WAIT_S) == "VIA-REGISTRY"
    finally:
        reader.close()


@pytest.mark.parametrize(
    "options, key",
    [
        ({"terminator": "ETX"}, "terminator"),
        ({"parity": "X"}, "parity"),
        ({"baudrate": 0}, "baudrate"),
        ({"bytesize": 9}, "bytesize"),
        ({"stopbits": 3}, "stopbits"),
        ({"prefix": "é"}, "prefix"),
        ({"max_len": 0}, "max_len"),
        ({"queue_size": 0}, "queue_size"),
    ],
)
def test_bad_config_names_the_key(port, options, key):
    with pytest.raises(HardwareConfigError, match=key):
        SerialQrReader(port, **options)


def test_seven_bit_odd_parity_is_accepted(scanner, make_reader):
    reader = make_reader(baudrate=1200, bytesize=7, parity="O")
    assert reader.health() is None


def test_close_stops_the_thread_and_reads_raise(scanner, make_reader):
    reader = make_reader()
    reader.close()
    assert not reader.connected
    assert not reader._thread.is_alive()
    with pytest.raises(ScannerFault, match="closed"):
        reader.read(0.05)


# -- the line assembler alone ----------------------------------------------------------


def test_assembler_joins_a_crlf_split_across_feeds():
    lines = LineAssembler("CRLF", 32)
    assert lines.feed(b"AB\r") == []
    assert lines.feed(b"\nCD\r\nE") == [b"AB", b"CD"]
    assert lines.feed(b"F\r\n") == [b"EF"]


def test_assembler_drops_an_overflow_until_the_next_terminator():
    lines = LineAssembler("any", 8)
    assert lines.feed(b"123456789") == []
    assert lines.feed(b"more\rok\r") == [b"ok"]
    assert lines.dropped_overlong == 1


def test_close_wakes_a_waiting_read(scanner, make_reader):
    reader = make_reader()
    outcome = []
    waiter = threading.Thread(
        target=lambda: outcome.append(pytest.raises(ScannerFault, reader.read, 30.0))
    )
    waiter.start()
    assert wait_until(lambda: waiter.is_alive())
    reader.close()
    waiter.join(WAIT_S)
    assert not waiter.is_alive()
    assert "closed" in str(outcome[0].value)
