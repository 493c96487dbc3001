"""The kiosk config: the example loads, and every mistake is named by its key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hardware.fakes import FakeClock, FakeDoor, FakeScale
from kiosk import ConfigError
from kiosk.config import (
    KioskConfig,
    build_driver,
    config_from_dict,
    load_config,
    sim_config_from_demo,
)
from protocol.labels import generate_private_key, public_key_to_text

EXAMPLE = Path(__file__).resolve().parents[2] / "kiosk" / "example.toml"

MINIMAL = """
[kiosk]
name = "test kiosk"
state_dir = "state"

[backend]
url = "http://127.0.0.1:5000"
kiosk_id = "k_test"
secret = "0123456789abcdef0123"
community = "green"

[scanner]
driver = "fake"

[scale]
driver = "fake"
settle_s = 0.2

[[doors]]
number = 1
category = "plastic"
capacity_g = 40000
driver = "fake"

[[doors]]
number = 2
category = "paper"
capacity_g = 40000
driver = "fake"
lock_retries = 2
"""


def write(tmp_path: Path, text: str, name: str = "kiosk.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


# -- what loads -------------------------------------------------------------------


def test_example_config_loads_with_real_drivers():
    config = load_config(EXAMPLE)
    assert isinstance(config, KioskConfig)
    assert config.scanner.driver == "serial"
    assert config.scale.driver == "hx711"
    assert {d.driver for d in config.doors} == {"gpio"}
    assert len({d.number for d in config.doors}) == len(config.doors) >= 2
    # every option in the example is a real option of its driver, with its type
    assert config.scanner.options["port"].startswith("/dev/serial/by-id/")
    assert isinstance(config.scale.options["dout_pin"], int)


def test_minimal_config_fills_defaults_and_resolves_paths(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.state_path == (tmp_path / "state").resolve()
    assert config.journal_path == config.state_path / "journal.sqlite3"
    assert config.backend.batch_size == 100 and config.backend.timeout_s == 10.0
    assert config.weighing.band_g == 20 and config.timeouts.door_close_s == 60.0
    assert config.indicator.driver == "none" and config.gpio.backend == "rpi"
    assert config.door(2).options == {"lock_retries": 2}
    assert config.scale_for(config.door(1)).options == {"settle_s": 0.2}
    with pytest.raises(KeyError):
        config.door(3)


def test_build_driver_passes_options_and_runtime_clock(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    clock = FakeClock()
    door = build_driver("door", config.door(2), clock=clock, unrelated="ignored")
    assert isinstance(door, FakeDoor) and door.lock_retries == 2 and door.clock is clock
    scale = build_driver("scale", config.scale, clock=clock)
    assert isinstance(scale, FakeScale) and scale.settle_s == 0.2


# -- unknown keys, bad types, bad values --------------------------------------------------


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda t: t + "\n[extra]\nx = 1\n", "extra"),
        (lambda t: t.replace('name = "test kiosk"', 'name = "k"\ncolour = "red"'), "kiosk.colour"),
        (
            lambda t: t.replace('community = "green"', 'community = "green"\nretries = 3'),
            "backend.retries",
        ),
        (lambda t: t + "\n[weighing]\nband_gram = 10\n", "weighing.band_gram"),
        (lambda t: t + "\n[timeouts]\ndoor_s = 10\n", "timeouts.door_s"),
        (lambda t: t + "\n[journal]\nlimit = 10\n", "journal.limit"),
        (lambda t: t + "\n[gpio]\nchip = 0\n", "gpio.chip"),
    ],
)
def test_unknown_key_is_named(tmp_path, edit, key):
    message = error_of(tmp_path, edit(MINIMAL))
    assert re.search(rf": {re.escape(key)}: unknown key", message), message


@pytest.mark.parametrize(
    "edit, expected",
    [
        (
            lambda t: t.replace("lock_retries = 2", 'lock_retries = "two"'),
            "doors[1].lock_retries: expected int, got str",
        ),
        (
            lambda t: t.replace('community = "green"', 'community = "green"\ntimeout_s = "fast"'),
            "backend.timeout_s: expected float, got str",
        ),
        (lambda t: t + "\n[weighing]\nband_g = 1.5\n", "weighing.band_g: expected int, got float"),
        (
            lambda t: t.replace(
                'capacity_g = 40000\ndriver = "fake"\nlock',
                'capacity_g = -1\ndriver = "fake"\nlock',
            ),
            "doors[1].capacity_g: expected int >= 1",
        ),
        (lambda t: t + "\n[backend.extra]\n", "backend.extra: unknown key"),
        (
            lambda t: t.replace("settle_s = 0.2", "settle_s = true"),
            "scale.settle_s: expected float, got bool",
        ),
        (
            lambda t: t + '\n[gpio]\nbackend = "pigpio"\n',
            "gpio.backend: invalid enum value 'pigpio'",
        ),
        (lambda t: t.replace('url = "http://127.0.0.1:5000"', 'url = "ftp://x"'), "backend.url"),
        (
            lambda t: t.replace('secret = "0123456789abcdef0123"', 'secret = "short"'),
            "backend.secret: expected str of length >= 16",
        ),
        (
            lambda t: t.replace('kiosk_id = "k_test"\n', ""),
            "backend.kiosk_id: required key missing",
        ),
    ],
)
def test_bad_value_is_named(tmp_path, edit, expected):
    message = error_of(tmp_path, edit(MINIMAL))
    assert expected in message, message


def test_unknown_driver_option_is_named_with_the_options_there_are(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("settle_s = 0.2", "settle_s = 0.2\nbaud = 9600"))
    assert "scale.baud: unknown key for scale driver 'fake'" in message
    assert "settle_s" in message  # the options there are, to fix the typo
    message = error_of(tmp_path, MINIMAL.replace("lock_retries = 2", "lock_pin = 17"))
    assert "doors[1].lock_pin: unknown key for door driver 'fake'" in message


def test_runtime_parameters_cannot_be_set_from_the_file(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("settle_s = 0.2", "clock = 1"))
    assert "scale.clock: unknown key" in message


def test_unknown_driver_name_is_named(tmp_path):
    message = error_of(
        tmp_path, MINIMAL.replace('[scanner]\ndriver = "fake"', '[scanner]\ndriver = "laser"')
    )
    assert "scanner.driver: unknown scanner driver 'laser'" in message


def test_duplicate_door_and_missing_scale_are_named(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace("number = 2", "number = 1"))
    assert "doors[1].number: door 1 is configured twice" in message
    message = error_of(tmp_path, MINIMAL.replace('[scale]\ndriver = "fake"\nsettle_s = 0.2', ""))
    assert "doors[0].scale: no [scale] table" in message


def test_named_scales_per_door(tmp_path):
    text = MINIMAL.replace("lock_retries = 2", 'lock_retries = 2\nscale = "right"')
    text += '\n[scales.right]\ndriver = "fake"\nnoise_g = 4\n'
    config = load_config(write(tmp_path, text))
    assert config.scale_for(config.door(2)).options == {"noise_g": 4}
    assert config.scale_for(config.door(1)).options == {"settle_s": 0.2}
    message = error_of(tmp_path, text.replace('scale = "right"', 'scale = "left"'))
    assert "doors[1].scale: no [scales.left] table (have: right)" in message


def test_toml_syntax_error_names_the_line(tmp_path):
    message = error_of(tmp_path, MINIMAL.replace('name = "test kiosk"', "name = test kiosk"))
    assert "not valid TOML" in message and "line 3" in message


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read kiosk config"):
        load_config(tmp_path / "nope.toml")


def test_bad_label_key_is_named(tmp_path):
    text = MINIMAL.replace('community = "green"', 'community = "green"\nlabel_public_key = "zz"')
    assert "backend.label_public_key:" in error_of(tmp_path, text)
    good = public_key_to_text(generate_private_key())
    config = load_config(write(tmp_path, text.replace('"zz"', f'"{good}"')))
    assert config.backend.label_public_key == good


# -- gpio backend and calibration -------------------------------------------------------


def test_gpio_backend_reaches_gpio_drivers_unless_they_name_one(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8").replace('backend = "rpi"', 'backend = "sim"')
    config = load_config(write(tmp_path, text))
    assert config.scale.options["gpio"] == "sim"
    assert all(d.options["gpio"] == "sim" for d in config.doors)


def test_calibration_file_is_merged_over_the_scale_table(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "calibration.toml").write_text(
        '[scale]\noffset_counts = 8123\ncounts_per_g = "429470/1000"\n', encoding="utf-8"
    )
    config = load_config(write(tmp_path, MINIMAL))
    assert config.calibration_path == state.resolve() / "calibration.toml"
    assert config.scale.options == {
        "settle_s": 0.2,
        "offset_counts": 8123,
        "counts_per_g": "429470/1000",
    }
    scale = build_driver("scale", config.scale, clock=FakeClock())
    assert scale.offset_counts == 8123


def test_calibration_file_with_anything_else_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "calibration.toml").write_text("[scale]\nspan = 1\n", encoding="utf-8")
    assert "scale.span: unknown key for scale driver 'fake'" in error_of(tmp_path, MINIMAL)
    (state / "calibration.toml").write_text("[door]\nx = 1\n", encoding="utf-8")
    assert "exactly one [scale] table" in error_of(tmp_path, MINIMAL)


# -- the simulator config ------------------------------------------------------------------


def test_sim_config_from_demo(tmp_path):
    key = public_key_to_text(generate_private_key())
    demo = {
        "backend_url": "http://127.0.0.1:5000",
        "kiosk_id": "k_demo",
        "secret": "s" * 43,
        "community": "demo",
        "label_public_key": key,
        "doors": [
            {"door": 1, "category": "plastic", "capacity_g": 30000},
            {"door": 2, "category": "paper", "capacity_g": 40000},
        ],
    }
    path = tmp_path / "demo-kiosk.json"
    path.write_text(json.dumps(demo), encoding="utf-8")
    config = sim_config_from_demo(path, tmp_path / "sim-state")
    assert config.backend.kiosk_id == "k_demo" and config.backend.label_public_key == key
    assert [(d.number, d.category, d.capacity_g, d.driver) for d in config.doors] == [
        (1, "plastic", 30000, "fake"),
        (2, "paper", 40000, "fake"),
    ]
    assert config.scanner.driver == config.scale.driver == "fake"
    assert config.gpio.backend == "sim" and config.state_path == (tmp_path / "sim-state")
    del demo["secret"]
    path.write_text(json.dumps(demo), encoding="utf-8")
    with pytest.raises(ConfigError, match="lacks 'secret'"):
        sim_config_from_demo(path, tmp_path)


def test_config_from_dict_checks_the_same_way():
    with pytest.raises(ConfigError, match="kiosk: required key missing"):
        config_from_dict({})
