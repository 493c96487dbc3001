"""Load a driver class by the name used in the kiosk config, lazily.

Each vendor library (pyserial, RPi.GPIO, zxing-cpp, pyzbar, picamera2...) is
imported only inside its own adapter module, and that module is imported only
when the config names it, so ``import hardware`` works on any machine.  A fake
is used only when the config names it: never as a silent fallback.

A config table such as ``[scanner] driver = "serial" port = "/dev/ttyACM0"``
becomes ``SerialQrReader(port="/dev/ttyACM0")``: every other key is passed to
the constructor as a keyword argument.
"""

from __future__ import annotations

import importlib

from hardware import HardwareConfigError

DRIVERS: dict[str, dict[str, str]] = {
    "scanner": {
        "serial": "hardware.serial_qr:SerialQrReader",
        "camera": "hardware.camera_qr:CameraQrReader",
        "fake": "hardware.fakes:FakeQrReader",
    },
    "scale": {
        "hx711": "hardware.loadcell:HX711Scale",
        "serial": "hardware.serial_scale:SerialScale",
        "fake": "hardware.fakes:FakeScale",
    },
    "door": {
        "gpio": "hardware.door_gpio:GpioDoor",
        "fake": "hardware.fakes:FakeDoor",
    },
    "indicator": {
        "gpio": "hardware.indicator_gpio:GpioIndicator",
        "fake": "hardware.fakes:FakeIndicator",
        "none": "hardware.fakes:NullIndicator",
    },
}


def driver_class(kind: str, name: str) -> type:
    """Return the class registered as ``name`` for ``kind``; import it now."""
    try:
        target = DRIVERS[kind][name]
    except KeyError:
        known = ", ".join(sorted(DRIVERS.get(kind, {}))) or "none"
        raise HardwareConfigError(f"unknown {kind} driver {name!r} (known: {known})") from None
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HardwareConfigError(f"{kind} driver {name!r} cannot load: {exc}") from exc
    return getattr(module, attr)


def build(kind: str, name: str, **options):
    """Construct the driver ``name`` for ``kind`` with config ``options``."""
    return driver_class(kind, name)(**options)
