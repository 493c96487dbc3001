"""Simulators one level below the drivers: the real GPIO drivers run against them.

``fake_rpi_gpio`` stands in for the ``RPi.GPIO`` module (selected by naming
the ``"sim"`` gpio backend); ``hx711_model`` and ``door_model`` attach to it
as devices on its pins.  ``serial_devices`` puts simulated scanners and scale
indicators behind pseudo-terminals for the serial drivers.  Time comes from an injectable clock
(``hardware.clock.VirtualClock`` in tests), so nothing here sleeps for real
unless a real clock is given.
"""
