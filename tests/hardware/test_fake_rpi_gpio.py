"""The fake RPi.GPIO behaves like the real module where the drivers depend on it."""

from __future__ import annotations

import pytest

from hardware import HardwareConfigError
from hardware.clock import VirtualClock
from hardware.gpio import Pins
from hardware.sim import fake_rpi_gpio as GPIO
from hardware.sim.fake_rpi_gpio import FakeGPIO
from tests.hardware.gpio_rig import make_rig


def fresh() -> tuple[VirtualClock, FakeGPIO]:
    clock = VirtualClock()
    board = FakeGPIO(clock)
    board.setmode(GPIO.BCM)
    return clock, board


def test_misuse_raises_like_rpi_gpio():
    board = FakeGPIO(VirtualClock())
    with pytest.raises(RuntimeError, match="set pin numbering mode"):
        board.setup(4, GPIO.OUT)
    board.setmode(GPIO.BCM)
    with pytest.raises(ValueError, match="different mode"):
        board.setmode(GPIO.BOARD)
    with pytest.raises(ValueError, match="invalid on a Raspberry Pi"):
        board.setup(28, GPIO.OUT)
    with pytest.raises(RuntimeError, match="setup\\(\\) the GPIO channel first"):
        board.input(4)
    board.setup(4, GPIO.IN)
    with pytest.raises(RuntimeError, match="not been set up as an OUTPUT"):
        board.output(4, GPIO.HIGH)
    with pytest.raises(ValueError, match="initial"):
        board.setup(5, GPIO.IN, initial=GPIO.HIGH)
    with pytest.raises(ValueError, match="Bouncetime"):
        board.add_event_detect(4, GPIO.FALLING, bouncetime=0)
    board.add_event_detect(4, GPIO.FALLING)
    with pytest.raises(RuntimeError, match="Conflicting edge detection"):
        board.add_event_detect(4, GPIO.RISING)
    board.setup(6, GPIO.OUT)
    with pytest.raises(RuntimeError, match="as an input first"):
        board.add_event_detect(6, GPIO.RISING)


def test_pulls_and_external_drive_set_input_levels():
    _, board = fresh()
    board.setup(17, GPIO.IN, pull_up_down=GPIO.PUD_UP)
    board.setup(18, GPIO.IN, pull_up_down=GPIO.PUD_DOWN)
    assert (board.input(17), board.input(18)) == (1, 0)
    board.drive_low(17)
    board.drive_high(18)
    assert (board.input(17), board.input(18)) == (0, 1)
    board.release(17)
    assert board.input(17) == 1


def test_outputs_start_at_initial_and_are_recorded():
    clock, board = fresh()
    board.setup([20, 21], GPIO.OUT, initial=GPIO.HIGH)
    clock.advance(0.5)
    board.output(20, GPIO.LOW)
    board.output([20, 21], [1, 0])
    assert (board.output_state(20), board.output_state(21)) == (1, 0)
    assert board.input(21) == 0  # an output reads back its own level
    assert [lvl for _, lvl in board.history(20)] == [1, 0, 1]
    assert board.history(20)[1][0] - board.history(20)[0][0] == 500_000_000


def test_edge_callbacks_fire_on_the_right_edges_with_bouncetime():
    clock, board = fresh()
    board.setup(22, GPIO.IN, pull_up_down=GPIO.PUD_UP)
    seen = []
    board.add_event_detect(22, GPIO.FALLING, callback=seen.append, bouncetime=50)
    board.drive_low(22)
    clock.advance(0.01)
    board.drive_high(22)  # rising: not wanted
    clock.advance(0.01)
    board.drive_low(22)  # 20 ms after the first falling edge: a bounce, ignored
    assert seen == [22]
    clock.advance(0.1)
    board.drive_high(22)
    board.drive_low(22)
    assert seen == [22, 22]
    assert board.event_detected(22) and not board.event_detected(22)
    both = []
    board.remove_event_detect(22)
    board.add_event_detect(22, GPIO.BOTH, callback=both.append)
    board.add_event_callback(22, both.append)
    board.drive_high(22)
    assert both == [22, 22]


def test_cleanup_returns_pins_to_inputs_and_tells_watchers():
    _, board = fresh()
    watched = []
    board.watch_output(9, watched.append)
    board.setup(9, GPIO.OUT, initial=GPIO.HIGH)
    board.setup(10, GPIO.OUT)
    board.cleanup(9)
    assert board.direction(9) is None and board.direction(10) == GPIO.OUT
    assert watched == [1, None]
    board.cleanup()
    assert board.direction(10) is None and board.getmode() is None


def test_module_level_api_acts_on_the_current_board():
    board = GPIO.reset(VirtualClock())
    try:
        GPIO.setmode(GPIO.BCM)
        GPIO.setup(12, GPIO.OUT, initial=GPIO.LOW)
        GPIO.output(12, GPIO.HIGH)
        assert board.output_state(12) == 1
        GPIO.setup(13, GPIO.IN, pull_up_down=GPIO.PUD_UP)
        GPIO.drive_low(13)
        assert GPIO.input(13) == 0
        GPIO.cleanup([12, 13])
        assert board.direction(12) is None
    finally:
        GPIO.reset()


def test_pins_wrapper_maps_pulls_edges_and_cleans_only_its_pins():
    rig = make_rig()
    pins, board = rig.pins, rig.board
    pins.setup_input(5, pull="up")
    pins.setup_input(6, pull="down")
    pins.setup_output(7, initial=True)
    assert (pins.read(5), pins.read(6), pins.read(7)) == (True, False, True)
    hits = []
    pins.add_edge_callback(5, "falling", hits.append, bouncetime_ms=None)
    board.drive_low(5)
    assert hits == [5]
    pins.remove_edge_callback(5)
    board.setup(8, GPIO.OUT)  # someone else's pin, not claimed through pins
    pins.cleanup([])  # must not be read as "clean everything"
    assert board.direction(7) == GPIO.OUT
    pins.cleanup([5, 6, 7, 8])
    assert board.direction(7) is None and board.direction(8) == GPIO.OUT
    with pytest.raises(HardwareConfigError):
        pins.setup_input(5, pull="sideways")
    with pytest.raises(HardwareConfigError):
        pins.add_edge_callback(5, "sometimes", hits.append)


def test_pins_refuses_a_pin_twice_and_non_bcm_numbers():
    pins = Pins(FakeGPIO(VirtualClock()), "sim")
    pins.setup_output(4, initial=False)
    with pytest.raises(HardwareConfigError, match="GPIO 4 is already in use"):
        pins.setup_input(4)
    for bad in (-1, 28, "4", True, None):
        with pytest.raises(HardwareConfigError):
            pins.setup_output(bad, initial=False)
