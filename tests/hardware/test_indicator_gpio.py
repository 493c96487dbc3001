"""GpioIndicator: LED states and non-blocking beep patterns on the fake header."""

from __future__ import annotations

import pytest

from hardware import HardwareConfigError
from hardware.indicator_gpio import GpioIndicator
from hardware.interfaces import Indicator
from tests.hardware.gpio_rig import make_rig

GREEN, RED, BUZZER = 16, 20, 21


def indicator(active_low: bool = False, buzzer: bool = True):
    rig = make_rig()
    light = GpioIndicator(
        gpio="sim",
        green_pin=GREEN,
        red_pin=RED,
        buzzer_pin=BUZZER if buzzer else None,
        active_low=active_low,
        pins=rig.pins,
        clock=rig.clock,
    )
    return rig, light


def leds(rig, active_low=False):
    on = 0 if active_low else 1
    return (rig.board.output_state(GREEN) == on, rig.board.output_state(RED) == on)


def test_states_light_the_right_leds():
    rig, light = indicator()
    assert isinstance(light, Indicator)
    assert leds(rig) == (False, False)
    expected = {
        "idle": (True, False),
        "busy": (True, True),
        "ok": (True, False),
        "error": (False, True),
        "off": (False, False),
    }
    for state, pair in expected.items():
        light.show(state)
        assert leds(rig) == pair, state
    with pytest.raises(HardwareConfigError):
        light.show("party")


def test_active_low_inverts_every_output():
    rig, light = indicator(active_low=True)
    assert rig.board.output_state(GREEN) == rig.board.output_state(BUZZER) == 1  # off
    light.show("error")
    assert leds(rig, active_low=True) == (False, True)


def test_beep_does_not_block_and_ends_on_time():
    rig, light = indicator()
    start_s = rig.clock.monotonic()
    light.beep("short")
    assert rig.clock.monotonic() == start_s
    assert rig.board.output_state(BUZZER) == 1
    rig.clock.advance(0.09)
    assert rig.board.output_state(BUZZER) == 1
    rig.clock.advance(0.02)
    assert rig.board.output_state(BUZZER) == 0


def test_error_pattern_sounds_three_times():
    rig, light = indicator()
    light.beep("error")
    rig.clock.advance(2)
    levels = [lvl for _, lvl in rig.board.history(BUZZER)]
    assert levels == [0, 1, 0, 1, 0, 1, 0]


def test_a_new_beep_cancels_the_old_pattern():
    rig, light = indicator()
    light.beep("short")
    rig.clock.advance(0.05)
    light.beep("long")
    rig.clock.advance(0.15)  # past the end of the short beep: its timer must not cut the long one
    assert rig.board.output_state(BUZZER) == 1
    rig.clock.advance(1)
    assert [lvl for _, lvl in rig.board.history(BUZZER)] == [0, 1, 0]


def test_no_buzzer_means_silent_beeps_and_close_releases_pins():
    rig, light = indicator(buzzer=False)
    light.beep("error")
    light.show("busy")
    light.close()
    assert rig.pins.in_use() == {}
    assert rig.board.direction(GREEN) is None
    light.show("idle")  # after close: ignored, not an error
    with pytest.raises(HardwareConfigError):
        light.beep("tune")
