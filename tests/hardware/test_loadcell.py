"""HX711Scale: tare, calibration math, integer grams, through the simulated chip."""

from __future__ import annotations

from fractions import Fraction

import pytest

from hardware import HardwareConfigError, ScaleFault, registry
from hardware.clock import VirtualClock
from hardware.gpio import get_pins, reset_pins
from hardware.interfaces import Scale
from hardware.loadcell import HX711Scale, parse_counts_per_g
from hardware.sim import fake_rpi_gpio
from hardware.sim.hx711_model import HX711Model
from tests.hardware.gpio_rig import make_rig

DOUT, SCK = 17, 27


def platform(
    model_offset: int = 8_000, model_cpg: Fraction | int | str = Fraction(43, 2), **scale_kw
):
    """Return (rig, model, scale) for a platform whose true calibration the model holds."""
    rig = make_rig()
    model = rig.board.attach(
        HX711Model(DOUT, SCK, offset_counts=model_offset, counts_per_g=model_cpg)
    )
    scale = HX711Scale(
        gpio="sim", dout_pin=DOUT, sck_pin=SCK, pins=rig.pins, clock=rig.clock, **scale_kw
    )
    return rig, model, scale


def test_it_is_a_scale():
    _, _, scale = platform(counts_per_g=1)
    assert isinstance(scale, Scale)


def test_calibration_procedure_recovers_offset_and_ratio():
    _, model, scale = platform()
    assert scale.measure_offset() == 8_000
    scale.zero()
    model.set_load_g(5_000)
    values = scale.calibrate_with(5_000)
    assert values == {"offset_counts": 8_000, "counts_per_g": "43/2"}
    model.set_load_g(1_234)
    sample = scale.read(timeout_s=5)
    assert sample.grams == 1_234 and type(sample.grams) is int
    assert sample.stable is None


def test_written_calibration_reloads_to_the_same_grams():
    _, model, scale = platform(model_cpg="21.4735")
    scale.zero()
    model.set_load_g(20_000)
    values = scale.calibrate_with(20_000)
    _, model2, reloaded = platform(model_cpg="21.4735", **values)
    model2.set_load_g(3_333)
    assert reloaded.read(5).grams == 3_333
    assert reloaded.calibration() == values


def test_tare_moves_zero_to_the_current_load():
    _, model, scale = platform(offset_counts=8_000, counts_per_g="43/2")
    model.set_load_g(2_500)  # an empty bin liner, say
    assert scale.read(5).grams == 2_500
    scale.zero()
    assert scale.read(5).grams == 0
    model.set_load_g(2_600)
    assert scale.read(5).grams == 100


def test_grams_round_to_the_nearest_integer_exactly():
    _, _, scale = platform(offset_counts=1_000, counts_per_g=10)
    assert scale.grams_from_counts(1_014) == 1
    assert scale.grams_from_counts(1_016) == 2
    assert scale.grams_from_counts(1_025) == 2  # half to even, no float in between
    assert scale.grams_from_counts(1_035) == 4
    assert scale.grams_from_counts(-9_000) == -1_000


def test_reversed_load_cell_has_a_negative_ratio():
    _, model, scale = platform(model_cpg=-15)
    scale.zero()
    model.set_load_g(10_000)
    assert scale.calibrate_with(10_000)["counts_per_g"] == "-15"
    model.set_load_g(400)
    assert scale.read(5).grams == 400


def test_counts_per_g_accepts_exact_forms_only():
    assert parse_counts_per_g(21) == 21
    assert parse_counts_per_g("21.4735") == Fraction(214735, 10000)
    assert parse_counts_per_g("429470/20000") == Fraction(214735, 10000)
    assert parse_counts_per_g(21.5) == Fraction(43, 2)  # a TOML float, read through its text
    assert parse_counts_per_g(None) is None
    for bad in ("abc", 0, "0", True, "1/0"):
        with pytest.raises(HardwareConfigError):
            parse_counts_per_g(bad)


def test_uncalibrated_scale_refuses_to_weigh_but_can_calibrate():
    _, model, scale = platform()
    with pytest.raises(ScaleFault, match="not calibrated"):
        scale.read(5)
    scale.zero()
    model.set_load_g(1_000)
    scale.calibrate_with(1_000)
    assert scale.read(5).grams == 1_000


def test_calibrating_without_the_mass_on_is_refused():
    _, _, scale = platform()
    scale.zero()
    with pytest.raises(ScaleFault, match="moved the reading by only"):
        scale.calibrate_with(5_000)
    assert scale.counts_per_g is None
    with pytest.raises(HardwareConfigError):
        scale.calibrate_with(0)


def test_bad_config_values_stop_construction():
    rig = make_rig()
    for kwargs in ({"gain": 3}, {"offset_counts": "x"}, {"counts_per_g": "nope"}, {"samples": 1}):
        with pytest.raises(HardwareConfigError):
            HX711Scale(
                gpio="sim", dout_pin=DOUT, sck_pin=SCK, pins=rig.pins, clock=rig.clock, **kwargs
            )
    with pytest.raises(HardwareConfigError, match="BCM"):
        HX711Scale(gpio="sim", dout_pin=40, sck_pin=SCK, pins=rig.pins, clock=rig.clock)


def test_closed_scale_faults_and_frees_its_pins():
    rig, _, scale = platform(counts_per_g=1)
    scale.close()
    assert rig.pins.in_use() == {}
    with pytest.raises(ScaleFault, match="closed"):
        scale.read(1)


def test_registry_builds_it_on_the_named_sim_backend():
    clock = VirtualClock()
    board = fake_rpi_gpio.reset(clock)
    reset_pins("sim")
    try:
        model = board.attach(HX711Model(DOUT, SCK, offset_counts=-300, counts_per_g=7, load_g=900))
        scale = registry.build(
            "scale",
            "hx711",
            gpio="sim",
            dout_pin=DOUT,
            sck_pin=SCK,
            offset_counts=-300,
            counts_per_g=7,
            clock=clock,
        )
        assert scale.chip.pins is get_pins("sim")
        assert scale.read(5).grams == 900
        assert model.pulse_counts and set(model.pulse_counts) == {25}
        scale.close()
    finally:
        fake_rpi_gpio.reset()
        reset_pins("sim")
