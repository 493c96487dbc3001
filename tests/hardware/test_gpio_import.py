"""The GPIO layer imports on any machine, and RPi.GPIO is imported in exactly one module."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hardware import HardwareConfigError, registry
from hardware.gpio import get_pins, reset_pins
from hardware.sim import fake_rpi_gpio

ROOT = Path(__file__).resolve().parents[2]
GPIO_MODULES = [
    "hardware",
    "hardware.gpio",
    "hardware.clock",
    "hardware.hx711",
    "hardware.loadcell",
    "hardware.stability",
    "hardware.door_gpio",
    "hardware.indicator_gpio",
    "hardware.registry",
    "hardware.sim.fake_rpi_gpio",
    "hardware.sim.hx711_model",
    "hardware.sim.door_model",
]
# an import statement or importlib call that loads RPi (RPi.GPIO, or rpi-lgpio under that name)
RPI_IMPORT = re.compile(r"^\s*(import|from)\s+RPi\b|import_module\(\s*[\"']RPi", re.MULTILINE)


@pytest.fixture
def no_shared_rpi(monkeypatch):
    """Start and end with no cached 'rpi' Pins and no RPi module loaded."""
    reset_pins("rpi")
    for name in ("RPi", "RPi.GPIO"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield
    reset_pins("rpi")
    for name in ("RPi", "RPi.GPIO"):  # a stand-in imported by the test must not outlive it
        sys.modules.pop(name, None)


def test_every_gpio_module_imports_without_touching_rpi_gpio():
    # A fresh interpreter where importing RPi at all would fail loudly.
    script = textwrap.dedent(
        f"""
        import importlib, sys

        class Forbid:
            def find_spec(self, name, path=None, target=None):
                if name == "RPi" or name.startswith("RPi."):
                    raise AssertionError("RPi imported at import time")
                return None

        sys.meta_path.insert(0, Forbid())
        for name in {GPIO_MODULES!r}:
            importlib.import_module(name)
        from hardware import registry
        for kind, name in [("scale", "hx711"), ("door", "gpio"), ("indicator", "gpio")]:
            registry.driver_class(kind, name)
        print("ok", "RPi" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok False"


def test_only_hardware_gpio_imports_rpi_gpio():
    sources = [
        p
        for p in ROOT.rglob("*.py")
        if not {".venv", ".git", "node_modules", "build"} & set(p.relative_to(ROOT).parts)
    ]
    assert len(sources) > 10
    importers = {
        str(p.relative_to(ROOT))
        for p in sources
        if RPI_IMPORT.search(p.read_text(errors="replace"))
    }
    assert importers == {"hardware/gpio.py"}


def test_missing_rpi_gpio_is_a_clear_config_error(monkeypatch, no_shared_rpi):
    monkeypatch.setitem(sys.modules, "RPi", None)  # makes `import RPi.GPIO` raise ImportError
    with pytest.raises(HardwareConfigError, match=r"RPi\.GPIO.*rpi-lgpio.*gpio = \"sim\""):
        get_pins("rpi")


def test_rpi_gpio_refusing_to_run_off_a_pi_is_a_config_error(tmp_path, monkeypatch, no_shared_rpi):
    package = tmp_path / "RPi"
    package.mkdir()
    (package / "__init__.py").write_text("")
    # what the real package does when imported on x86
    (package / "GPIO.py").write_text(
        'raise RuntimeError("This module can only be run on a Raspberry Pi!")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(HardwareConfigError, match="only be run on a Raspberry Pi"):
        get_pins("rpi")


def test_rpi_backend_uses_whatever_module_is_installed_as_rpi_gpio(
    tmp_path, monkeypatch, no_shared_rpi
):
    # rpi-lgpio installs under the same module name; here the simulator plays that part
    package = tmp_path / "RPi"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "GPIO.py").write_text("from hardware.sim.fake_rpi_gpio import *  # noqa\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    board = fake_rpi_gpio.reset()
    try:
        pins = get_pins("rpi")
        assert get_pins("rpi") is pins  # one shared instance per process
        assert pins.gpio is sys.modules["RPi.GPIO"]
        pins.setup_output(4, initial=True)
        assert board.output_state(4) == 1
        pins.cleanup([4])
    finally:
        fake_rpi_gpio.reset()


def test_sim_backend_is_shared_and_only_used_when_named():
    reset_pins("sim")
    try:
        assert get_pins("sim") is get_pins("sim")
        assert get_pins("sim").gpio is fake_rpi_gpio
    finally:
        reset_pins("sim")
    with pytest.raises(HardwareConfigError, match="unknown gpio backend"):
        get_pins("mock")


def test_registry_reports_gpio_drivers_lazily():
    assert registry.DRIVERS["scale"]["hx711"] == "hardware.loadcell:HX711Scale"
    assert registry.DRIVERS["door"]["gpio"] == "hardware.door_gpio:GpioDoor"
    assert registry.DRIVERS["indicator"]["gpio"] == "hardware.indicator_gpio:GpioIndicator"
