"""The HX711 chip driver, read bit by bit through the fake RPi.GPIO and the HX711 model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardware import HardwareConfigError, ScaleFault
from hardware.hx711 import HX711, is_spike, to_signed
from hardware.sim.hx711_model import HX711Model
from tests.hardware.gpio_rig import make_rig

DOUT, SCK = 5, 6


def chip(gain: int = 128, samples: int = 3, rate_sps: int = 10, **model_kw):
    """Return (rig, model, driver) with the model wired to DOUT/SCK."""
    rig = make_rig()
    model_kw.setdefault("offset_counts", 8_000)
    model_kw.setdefault("counts_per_g", 10)
    model = rig.board.attach(HX711Model(DOUT, SCK, rate_sps=rate_sps, **model_kw))
    driver = HX711(
        rig.pins, DOUT, SCK, gain=gain, samples=samples, rate_sps=rate_sps, clock=rig.clock
    )
    return rig, model, driver


def test_reads_the_exact_value_with_25_pulses():
    _rig, model, hx = chip(load_g=1_234)
    assert hx.read_counts() == 8_000 + 12_340
    assert set(model.pulse_counts) == {25}
    assert model.comm_errors == 0 and model.stray_pulses == 0


def test_negative_counts_are_twos_complement():
    _, model, hx = chip(offset_counts=-(1 << 23) + 5, counts_per_g=1)
    assert hx.read_counts() == -(1 << 23) + 5
    model.offset_counts = -123_456
    assert hx.read_counts() == -123_456


def test_gain_64_sends_27_pulses_and_reads_half_the_counts():
    _, model, hx = chip(gain=64, load_g=2_000)
    assert hx.read_counts() == model.expected_counts("A", 64) == (8_000 + 20_000) // 2
    assert set(model.pulse_counts) == {27}
    assert model.selection == ("A", 64)


def test_channel_b_gain_32_sends_26_pulses():
    _, model, hx = chip(gain=32, channel_b_counts=-4_321)
    assert hx.channel == "B"
    assert hx.read_counts() == -4_321
    assert set(model.pulse_counts) == {26}


def test_gain_change_waits_out_the_settling_time():
    rig, model, hx = chip(load_g=500, rate_sps=10)
    assert hx.read_counts() == 13_000
    hx.set_gain(64)
    start_s = rig.clock.monotonic()
    # an unsettled conversion would be off by the model's 50 000 counts
    assert hx.read_counts() == 6_500
    assert rig.elapsed_since(start_s) >= 0.4
    assert model.pulse_counts[-1] == 27


def test_80_sps_settles_in_50_ms():
    rig, _, hx = chip(rate_sps=80, load_g=100)
    start_s = rig.clock.monotonic()
    assert hx.read_counts() == 9_000
    assert rig.elapsed_since(start_s) < 0.2  # 10 SPS would need more than 0.4 s


def test_overrun_read_is_discarded_and_gain_reselected():
    _, model, hx = chip(gain=64, load_g=3_000)
    expected = model.expected_counts("A", 64)
    assert hx.read_counts() == expected
    model.inject_overrun(pulse=10)
    # The stall powers the chip down mid-read; it wakes at A/128 (twice the counts)
    # unless the driver selects gain 64 again before keeping a read.
    assert hx.read_counts() == expected
    assert hx.stats.overruns == 1
    assert model.power_downs == 1
    assert model.selection == ("A", 64)


def test_overrun_during_gain_pulses_is_caught():
    _, model, hx = chip(gain=64, load_g=3_000)
    hx.read_counts()
    model.inject_overrun(pulse=26)  # after the 24 data bits, in the selection pulses
    assert hx.read_counts() == model.expected_counts("A", 64)
    assert hx.stats.overruns == 1


def test_spike_codes_are_rejected():
    _, model, hx = chip(load_g=777)
    hx.read_counts()
    model.inject_spikes(0, 0xFFFFFF, 0x00FFFF, 0x0003FF)
    assert hx.read_counts() == 8_000 + 7_770
    assert hx.stats.spikes == 4


def test_transient_saturation_is_skipped():
    _, model, hx = chip(load_g=10)
    hx.read_counts()
    model.inject_spikes(0x800000)
    assert hx.read_counts() == 8_100
    assert hx.stats.saturated == 1


def test_persistent_saturation_is_a_fault():
    _, model, hx = chip()
    hx.read_counts()
    model.saturate("high")
    with pytest.raises(ScaleFault, match="saturated"):
        hx.read_counts()
    assert hx.stats.conversions <= 1 + hx.max_attempts + 4  # bounded, not a retry storm


def test_a_load_beyond_full_scale_clips_to_saturation_and_faults():
    _, _model, hx = chip(load_g=2_000_000)  # 20 million counts: over the 24-bit range
    with pytest.raises(ScaleFault, match="saturated"):
        hx.read_counts()


def test_outlier_outvoted_by_the_median():
    _, model, hx = chip(load_g=100)
    hx.read_counts()
    model.inject_spikes(9_000 + 30_000)  # not a spike pattern, just far off
    assert hx.read_counts() == 9_000
    assert hx.stats.outliers == 1


def test_scattered_reads_are_not_taken_until_a_majority_agrees():
    _, model, hx = chip(load_g=100)
    hx.read_counts()
    before = hx.stats.conversions
    model.inject_spikes(9_000 + 30_000, 9_000 + 60_000)
    # window [+30k, +60k, 0]: its median (+30k) has no majority within 20k counts, so read on
    assert hx.read_counts() == 9_000
    assert hx.stats.outliers == 1 and hx.stats.conversions - before == 4


def test_constant_spikes_exhaust_the_bounded_attempts():
    _, _model, hx = chip(spike_fraction=1.0)
    with pytest.raises(ScaleFault, match="spike"):
        hx.read_counts()
    assert hx.stats.conversions <= hx.max_attempts + 1


def test_dout_stuck_high_is_a_not_ready_fault():
    rig = make_rig()
    rig.board.drive_high(DOUT)  # nothing pulls DOUT low: an unpowered or unwired chip
    hx = HX711(rig.pins, DOUT, SCK, clock=rig.clock)
    start_s = rig.clock.monotonic()
    with pytest.raises(ScaleFault, match="no conversion ready"):
        hx.read_counts(timeout_s=30)
    assert rig.elapsed_since(start_s) <= hx.ready_timeout_s + 0.01


def test_timeout_shorter_than_a_conversion_is_a_fault():
    _, _, hx = chip()
    with pytest.raises(ScaleFault):
        hx.read_counts(timeout_s=0.05)


def test_clock_held_high_powers_down_and_low_resets_to_a128():
    rig, model, hx = chip(gain=64, load_g=1_000)
    assert hx.read_counts() == 9_000
    hx.power_down()
    assert model.powered_down
    rig.clock.advance(1.0)  # conversions would be due by now if it were awake
    assert rig.board.level(DOUT) == 1
    hx.power_up()
    assert not model.powered_down
    assert model.selection == ("A", 128)
    assert model.power_downs == 1
    assert hx.read_counts() == 9_000
    assert model.selection == ("A", 64)


def test_reading_a_powered_down_chip_wakes_it_first():
    rig, model, hx = chip(load_g=250)
    hx.power_down()
    rig.clock.advance(5)
    assert hx.read_counts() == 10_500
    assert not model.powered_down and model.power_ups == 2  # attach, then the wake-up


def test_noisy_chip_with_spikes_and_overruns_stays_accurate():
    _, model, hx = chip(
        load_g=5_000, noise_counts=20, spike_fraction=0.05, overrun_fraction=0.05, seed=7, samples=5
    )
    expected = model.expected_counts()
    readings = [hx.read_counts() for _ in range(40)]
    assert all(abs(r - expected) <= 80 for r in readings), readings
    assert hx.stats.spikes > 0 and hx.stats.overruns > 0
    # the driver itself never sends a wrong pulse count: only reads cut by power-down are short
    assert model.comm_errors == model.power_downs == hx.stats.overruns


def test_bad_configuration_is_refused():
    rig = make_rig()
    for kwargs in (
        {"gain": 100},
        {"samples": 2},
        {"rate_sps": 20},
        {"samples": 5, "max_attempts": 4},
    ):
        with pytest.raises(HardwareConfigError):
            HX711(rig.pins, DOUT, SCK, **kwargs)
    assert rig.pins.in_use() == {}


def test_two_chips_on_one_pin_are_refused_and_close_releases_pins():
    rig, _, hx = chip()
    with pytest.raises(HardwareConfigError, match="already in use"):
        HX711(rig.pins, 7, SCK, clock=rig.clock)
    hx.close()
    assert rig.pins.in_use() == {}
    assert rig.board.direction(SCK) is None


def test_model_counts_a_wrong_pulse_count_as_a_communication_error():
    rig = make_rig()
    model = rig.board.attach(HX711Model(DOUT, SCK))
    rig.pins.setup_output(SCK, False)
    rig.pins.setup_input(DOUT, "off")
    rig.clock.advance(0.1)
    assert rig.board.level(DOUT) == 0
    for _ in range(28):
        rig.pins.write(SCK, True)
        rig.pins.write(SCK, False)
    rig.clock.advance(0.1)
    assert rig.board.level(DOUT) == 0  # next conversion ready; the 28-pulse read is closed
    assert model.comm_errors == 1 and model.pulse_log == [28]
    assert model.selection == ("A", 128)


@given(st.integers(min_value=0, max_value=0xFFFFFF))
def test_signed_conversion_round_trips(word):
    value = to_signed(word)
    assert -(1 << 23) <= value < (1 << 23)
    assert value & 0xFFFFFF == word


def test_spike_pattern_is_zero_or_trailing_ones():
    assert all(is_spike((1 << n) - 1) for n in range(1, 25)) and is_spike(0)
    assert not any(is_spike(w) for w in (2, 5, 6, 0x800001, 0x123456, 0xFFFFFE))
