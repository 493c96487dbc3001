"""SerialScale against weighing indicators simulated over pseudo-terminals."""

from __future__ import annotations

import os
import termios
import threading
import time

import pytest
import serial.serialposix

from hardware import HardwareConfigError, ScaleFault
from hardware.interfaces import Scale
from hardware.registry import build
from hardware.serial_scale import SerialScale
from hardware.sim.serial_devices import FakeScaleIndicator
from tests.hardware.serial_rig import WAIT_S, wait_until


@pytest.fixture
def port(tmp_path):
    return str(tmp_path / "usb-Fake_Indicator-if00")


@pytest.fixture
def devices():
    opened = []
    yield opened
    for device in reversed(opened):
        device.close()


@pytest.fixture
def indicator(port, devices):
    def make(**options):
        device = FakeScaleIndicator(port, **options)
        devices.append(device)
        return device

    return make


@pytest.fixture
def scale(port, devices):
    def make(**options):
        driver = SerialScale(port, **options)
        devices.append(driver)
        return driver

    return make


def _connect(driver, device):
    """Open the port with a harmless read so later frames are not flushed by open()."""
    with pytest.raises(ScaleFault):
        driver.read(0.05)  # no frame yet: the open itself must succeed
    assert driver.connected


# -- continuous frames ------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, grams, stable",
    [
        ("ST,GS,+ 12.345kg", 12345, True),
        ("ST,GS,  18.000kg", 18000, True),
        ("US,NT,-  0.200kg", -200, False),
        ("ST,NT,+0012.3450 kg", 12345, True),
        ("ST GS   500 g", 500, True),
        ("US,G,+  1.5lb", 680, False),  # 680.388555 g
        ("ST,GS,+  1234.5 g", 1234, True),  # half to even
        ("\x02ST,GS,+ 0.020kg\x03", 20, True),  # STX/ETX wrapped
    ],
)
def test_vendor_frame_variants(indicator, scale, line, grams, stable):
    device = indicator()
    driver = scale()
    _connect(driver, device)
    device.send_line(line)
    sample = driver.read(WAIT_S)
    assert (sample.grams, sample.stable) == (grams, stable)


def test_mcu_bare_numbers_use_the_configured_unit(indicator, scale):
    device = indicator()
    driver = scale(unit="g")
    _connect(driver, device)
    device.send_line("  1234")
    sample = driver.read(WAIT_S)
    assert (sample.grams, sample.stable) == (1234, None)


def test_bare_number_without_a_unit_is_not_a_reading(indicator, scale):
    device = indicator()
    driver = scale()  # no default unit: "1234" could be g or kg
    _connect(driver, device)
    device.send_line("1234")
    # the line must be waiting before the short read, which is only meant to time out
    assert wait_until(lambda: driver._device.in_waiting >= len("1234\r\n"))
    with pytest.raises(ScaleFault, match="1 unreadable"):
        driver.read(0.3)


def test_read_returns_the_newest_waiting_frame(indicator, scale):
    device = indicator()
    driver = scale()
    _connect(driver, device)
    for grams in (100, 200, 300):
        device.set_weight(grams)
        device.emit()
    assert wait_until(lambda: driver._device.in_waiting >= 3 * 19)
    assert driver.read(WAIT_S).grams == 300


def test_overload_frame_is_a_fault(indicator, scale):
    device = indicator()
    driver = scale()
    _connect(driver, device)
    device.overload = True
    device.emit()
    with pytest.raises(ScaleFault, match="overload"):
        driver.read(WAIT_S)
    assert "overload" in str(driver.fault)
    device.overload = False
    device.set_weight(50)
    device.emit()
    assert driver.read(WAIT_S).grams == 50
    assert driver.fault is None


def test_resync_after_garbage_and_a_torn_frame(indicator, scale):
    device = indicator()
    driver = scale()
    _connect(driver, device)
    device.send_bytes(b"S,+ 12.3")  # joined mid-frame: the start is lost
    device.send_bytes(b"45kg\r\n\x00\xff\xfe\r\n")
    device.send_bytes(
        b"###########################################################################"
    )
    device.send_bytes(b"\r\nST,GS,+  2.000kg\r\n")
    assert driver.read(WAIT_S).grams == 2000
    assert driver.garbage_lines >= 2


def test_no_frame_in_time_is_a_fault(indicator, scale):
    device = indicator()
    driver = scale()
    _connect(driver, device)
    device.send_line("garbage")
    with pytest.raises(ScaleFault, match="no valid weight frame"):
        driver.read(0.2)


def test_request_mode_asks_for_each_frame(indicator, scale):
    device = indicator()
    driver = scale(request="R")
    device.set_weight(7250)
    assert driver.read(WAIT_S).grams == 7250
    device.set_weight(7300, stable=False)
    sample = driver.read(WAIT_S)
    assert (sample.grams, sample.stable) == (7300, False)
    assert device.commands == ["R", "R"]


def test_streaming_indicator(indicator, scale):
    device = indicator()
    device.set_weight(18000)
    device.stream_interval_s = 0.01  # only now: every frame it streams says 18 kg
    driver = scale()
    samples = [driver.read(WAIT_S) for _ in range(5)]
    assert all((s.grams, s.stable) == (18000, True) for s in samples)
    assert [s.at_s for s in samples] == sorted(s.at_s for s in samples)


def test_software_zero_on_a_continuous_indicator(indicator, scale):
    device = indicator(stream_interval_s=0.01)
    driver = scale()
    device.set_weight(1500)
    assert wait_until(lambda: driver.read(WAIT_S).grams == 1500)
    driver.zero()
    device.set_weight(2300)
    assert wait_until(lambda: driver.read(WAIT_S).grams == 800)


def test_zero_refused_while_the_indicator_reports_motion(indicator, scale):
    device = indicator(stream_interval_s=0.01)
    driver = scale()
    device.set_weight(1500, stable=False)
    assert wait_until(lambda: driver.read(WAIT_S).stable is False)
    with pytest.raises(ScaleFault, match="motion"):
        driver.zero()
    device.set_weight(1500)
    assert wait_until(lambda: driver.read(WAIT_S).stable)
    driver.zero()
    assert driver.read(WAIT_S).grams == 0


# -- MT-SICS ------------------------------------------------------------------------------


def test_sics_si_reports_stable_and_dynamic(indicator, scale):
    device = indicator(protocol="mt-sics")
    driver = scale(protocol="mt-sics")
    device.set_weight(1234)
    sample = driver.read(WAIT_S)
    assert (sample.grams, sample.stable) == (1234, True)
    device.set_weight(-20, stable=False)
    sample = driver.read(WAIT_S)
    assert (sample.grams, sample.stable) == (-20, False)
    assert device.commands == ["SI", "SI"]


def _after_reply(device, reply, action):
    """Start a thread that runs ``action`` once the device has sent ``reply``."""
    seen = device.replies.count(reply)

    def run():
        if wait_until(lambda: device.replies.count(reply) > seen):
            action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_sics_s_busy_until_stable(indicator, scale):
    device = indicator(protocol="mt-sics")
    driver = scale(protocol="mt-sics", sics_read_command="S")
    device.set_weight(900, stable=False)
    # the read ends at its timeout, which must also bound the device's first S I reply
    # (with a short one, a slow device thread made it "no MT-SICS reply to S in time")
    with pytest.raises(ScaleFault, match="never stable"):
        driver.read(WAIT_S)
    assert set(device.commands) == {"S"}

    settler = _after_reply(device, "S I", lambda: device.set_weight(900))
    sample = driver.read(WAIT_S)
    settler.join()
    assert (sample.grams, sample.stable) == (900, True)
    assert device.replies[-2] == "S I"
    assert device.replies[-1].split() == ["S", "S", "900.00", "g"]


def test_sics_s_retry_cut_short_by_the_timeout_is_never_stable(indicator, scale):
    """The deadline can fall while a retry's reply is on its way: that is still 'never stable'.

    The indicator answers the first S with S I and then nothing, as when the read's time
    runs out between a retry and its reply (on a busy machine, even with a long timeout).
    """
    device = indicator(protocol="mt-sics")
    driver = scale(protocol="mt-sics", sics_read_command="S")
    device.set_weight(900, stable=False)
    answer = device._answer
    device._answer = lambda command: None if device.replies else answer(command)
    with pytest.raises(ScaleFault, match="never stable"):
        driver.read(0.5)  # runs out: the balance never says stable
    assert wait_until(lambda: len(device.commands) >= 2)  # the retry went out, unanswered
    assert device.replies == ["S I"]


def test_sics_busy_then_ready(indicator, scale):
    device = indicator(protocol="mt-sics")
    driver = scale(protocol="mt-sics")
    device.set_weight(410)
    device.busy = True
    releaser = _after_reply(device, "S I", lambda: setattr(device, "busy", False))
    assert driver.read(WAIT_S).grams == 410
    releaser.join()
    assert device.replies[0] == "S I"


@pytest.mark.parametrize(
    "attribute, message", [("overload", "overload"), ("underload", "underload")]
)
def test_sics_over_and_underload(indicator, scale, attribute, message):
    device = indicator(protocol="mt-sics")
    driver = scale(protocol="mt-sics")
    setattr(device, attribute, True)
    with pytest.raises(ScaleFault, match=message):
        driver.read(WAIT_S)


@pytest.mark.parametrize("code", ["ES", "ET", "EL"])
def test_sics_error_replies(indicator, scale, code):
    device = indicator(protocol="mt-sics")
    driver = scale(protocol="mt-sics")
    device.error = code
    with pytest.raises(ScaleFault, match=f"answered {code}"):
        driver.read(WAIT_S)
    with pytest.raises(ScaleFault, match=f"answered {code}"):
        driver.zero()
    device.error = None
    assert driver.read(WAIT_S).grams == 0


def test_sics_zero(indicator, scale):
    device = indicator(protocol="mt-sics")
    driver = scale(protocol="mt-sics")
    device.set_weight(350)
    driver.zero()
    assert device.zero_g == 350
    device.set_weight(1350)
    assert driver.read(WAIT_S).grams == 1000
    assert device.commands == ["Z", "SI"]


@pytest.mark.parametrize(
    "state, message",
    [
        ({"stable": False}, "busy or not stable"),
        ({"overload": True}, "above the zero range"),
        ({"underload": True}, "below the zero range"),
    ],
)
def test_sics_zero_refused(indicator, scale, state, message):
    device = indicator(protocol="mt-sics")
    driver = scale(protocol="mt-sics", zero_timeout_s=WAIT_S)  # bounds the refusal's arrival
    for key, value in state.items():
        setattr(device, key, value)
    with pytest.raises(ScaleFault, match=message):
        driver.zero()
    assert device.zero_g == 0


def test_sics_ignores_a_stale_reply_and_power_up_banner(indicator, scale):
    device = indicator(protocol="mt-sics")
    driver = scale(protocol="mt-sics")
    device.set_weight(5)
    assert driver.read(WAIT_S).grams == 5
    device.send_line('I4 A "B123456789"')  # unsolicited, before the next command
    device.send_line("S S       999.00 g")  # a late answer to nothing
    device.set_weight(6)
    assert driver.read(WAIT_S).grams == 6


class _DescheduledWrites:
    """The ``os`` module as pyserial sees it, with a write after which the process loses the CPU."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def write(fd, data):
        written = os.write(fd, data)  # every byte goes out...
        time.sleep(0.2)  # ...then the process is descheduled, as on a busy machine
        return written


@pytest.mark.parametrize("protocol", ["continuous", "mt-sics"])
def test_a_write_delayed_by_the_scheduler_is_not_a_disconnect(
    indicator, scale, protocol, monkeypatch
):
    """pyserial calls a write timed out when its time ran out during it, even if it completed."""
    device = indicator(protocol=protocol)
    driver = scale(protocol=protocol, **({"request": "R"} if protocol == "continuous" else {}))
    device.set_weight(410)
    monkeypatch.setattr(serial.serialposix, "os", _DescheduledWrites())
    assert driver.read(WAIT_S).grams == 410
    assert driver.connected and driver.fault is None


# -- unplug, absence, config ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["continuous", "mt-sics"])
def test_unplug_is_a_fault_and_replug_recovers(indicator, scale, protocol):
    device = indicator(protocol=protocol, stream_interval_s=0.01)
    driver = scale(protocol=protocol, reconnect_min_s=0.01)
    device.set_weight(2500)
    assert wait_until(lambda: driver.read(WAIT_S).grams == 2500)

    device.unplug()
    with pytest.raises(ScaleFault, match="disconnected|not connected"):
        driver.read(WAIT_S)
    with pytest.raises(ScaleFault, match="not connected"):
        driver.read(0.1)
    assert isinstance(driver.health(), ScaleFault)
    assert not driver.connected

    device.replug()
    assert wait_until(lambda: driver.read(WAIT_S).grams == 2500)
    assert driver.health() is None


def test_a_command_after_the_tty_hung_up_is_a_disconnect_fault(indicator, scale):
    """An unplug hangs the tty up; the next command's input flush then fails with termios.error.

    (The simulated device's tty hangs up once its thread lets go of the pty, a few ms after
    unplug(): the test waits for it, so the flush always meets a hung-up tty.)
    """
    device = indicator(protocol="mt-sics")
    driver = scale(protocol="mt-sics")
    device.set_weight(5)
    assert driver.read(WAIT_S).grams == 5
    fd = driver._device.fd
    device.unplug()

    def hung_up() -> bool:
        try:
            termios.tcgetattr(fd)
        except termios.error:
            return True
        return False

    assert wait_until(hung_up)
    with pytest.raises(ScaleFault, match="disconnected"):
        driver.read(WAIT_S)
    assert not driver.connected


def test_absent_indicator(port, scale):
    driver = scale()
    with pytest.raises(ScaleFault, match="not connected"):
        driver.read(0.1)
    with pytest.raises(ScaleFault, match="not connected"):
        driver.zero()


def test_registry_builds_the_serial_scale(indicator, port, devices):
    device = indicator(protocol="mt-sics")
    driver = build("scale", "serial", port=port, protocol="mt-sics")
    devices.append(driver)
    assert isinstance(driver, Scale)
    device.set_weight(42)
    assert driver.read(WAIT_S).grams == 42


@pytest.mark.parametrize(
    "options, key",
    [
        ({"protocol": "modbus"}, "protocol"),
        ({"unit": "stone"}, "unit"),
        ({"request": "é"}, "request"),
        ({"sics_read_command": "SIR"}, "sics_read_command"),
        ({"command_terminator": "any"}, "command_terminator"),
        ({"parity": "Q"}, "parity"),
    ],
)
def test_bad_config_names_the_key(port, options, key):
    with pytest.raises(HardwareConfigError, match=key):
        SerialScale(port, **options)
