"""Adapters to the station's physical parts, and a fake for each.

No business rules live here.  ``hardware.interfaces`` holds the small
Protocols the kiosk programs against; each vendor library is imported in
exactly one adapter module, loaded lazily by name (``hardware.registry``), so
``import hardware`` works on any machine.
"""


class HardwareError(Exception):
    """Root of every error raised by the hardware package."""


class HardwareFault(HardwareError):
    """A part misbehaved at run time: the kiosk must lock its doors and report."""


class ScaleFault(HardwareFault):
    """The scale gave no usable reading (unplugged, overload, never stable...)."""


class ScannerFault(HardwareFault):
    """The QR scanner cannot be read."""


class DoorFault(HardwareFault):
    """A door did not reach the commanded state (jam, obstruction, timeout)."""


class HardwareConfigError(HardwareError):
    """A driver was configured with an unknown name or an impossible value."""
