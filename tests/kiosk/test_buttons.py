"""Push buttons per door: debouncing on the fake RPi.GPIO, the config keys, and the station.

The driver tests run on their own simulated header in virtual time; the station tests use the
``sim`` GPIO backend (the module-level fake header), reset for every test.
"""

from __future__ import annotations

import threading

import pytest

from hardware import HardwareConfigError
from hardware.button_gpio import ButtonPoller, GpioButton, build_button_poller
from hardware.gpio import get_pins, reset_pins
from hardware.sim import fake_rpi_gpio
from kiosk import ConfigError
from kiosk.config import config_from_dict
from tests.hardware.gpio_rig import make_rig
from tests.kiosk.stations import SECRET, Keys, Session, refused_port, threaded_station, wait_for

DOOR_PINS = {1: 5, 2: 6}
CANCEL_PIN = 16


# -- the driver: debouncing in virtual time --------------------------------------------------


def sample_for(rig, button, seconds: float, every_s: float = 0.005) -> int:
    """Poll ``button`` every ``every_s`` for ``seconds`` of virtual time; return presses seen."""
    presses = 0
    end_s = rig.clock.monotonic() + seconds
    while rig.clock.monotonic() < end_s:
        presses += button.poll()
        rig.clock.advance(every_s)
    return presses


def test_a_held_press_counts_once_after_the_debounce_time():
    rig = make_rig()
    button = GpioButton(pin=5, pins=rig.pins, clock=rig.clock, debounce_s=0.03)
    assert sample_for(rig, button, 0.1) == 0  # pull-up: released
    rig.board.drive_low(5)
    assert sample_for(rig, button, 0.025) == 0  # not yet held for 30 ms
    assert sample_for(rig, button, 0.01) == 1
    assert button.pressed
    assert sample_for(rig, button, 2.0) == 0  # held down: still one press
    rig.board.drive_high(5)
    assert sample_for(rig, button, 0.1) == 0 and not button.pressed
    rig.board.drive_low(5)
    assert sample_for(rig, button, 0.1) == 1
    assert button.presses == 2


def test_contact_bounce_is_filtered():
    rig = make_rig()
    button = GpioButton(pin=5, pins=rig.pins, clock=rig.clock, debounce_s=0.03)
    presses = 0
    # 40 ms of chatter: the contact makes and breaks every 4 ms, never 30 ms in a row
    for _ in range(10):
        rig.board.drive_low(5)
        presses += sample_for(rig, button, 0.004, every_s=0.001)
        rig.board.drive_high(5)
        presses += sample_for(rig, button, 0.004, every_s=0.001)
    assert presses == 0
    # then the contact settles closed: exactly one press
    rig.board.drive_low(5)
    presses += sample_for(rig, button, 0.1, every_s=0.001)
    # and bounces on release: no second press
    for _ in range(5):
        rig.board.drive_high(5)
        presses += sample_for(rig, button, 0.003, every_s=0.001)
        rig.board.drive_low(5)
        presses += sample_for(rig, button, 0.003, every_s=0.001)
    rig.board.drive_high(5)
    presses += sample_for(rig, button, 0.1, every_s=0.001)
    assert presses == 1 and button.presses == 1


def test_active_high_button_uses_the_pull_down():
    rig = make_rig()
    button = GpioButton(pin=7, pins=rig.pins, clock=rig.clock, active_low=False)
    assert rig.board.level(7) == 0  # pulled down: released
    rig.board.drive_high(7)
    assert sample_for(rig, button, 0.1) == 1


def test_a_button_down_at_start_counts_only_after_a_release():
    rig = make_rig()
    rig.board.drive_low(5)  # stuck or held while the kiosk starts
    button = GpioButton(pin=5, pins=rig.pins, clock=rig.clock)
    assert sample_for(rig, button, 1.0) == 0
    rig.board.drive_high(5)
    sample_for(rig, button, 0.1)
    rig.board.drive_low(5)
    assert sample_for(rig, button, 0.1) == 1


def test_a_pin_in_use_is_refused_and_close_releases_it():
    rig = make_rig()
    rig.pins.setup_output(17, False)
    with pytest.raises(HardwareConfigError, match="GPIO 17 is already in use"):
        GpioButton(pin=17, pins=rig.pins, clock=rig.clock)
    button = GpioButton(pin=5, pins=rig.pins, clock=rig.clock)
    assert 5 in rig.pins.in_use()
    button.close()
    assert 5 not in rig.pins.in_use()
    with pytest.raises(HardwareConfigError, match="debounce_s"):
        GpioButton(pin=6, pins=rig.pins, clock=rig.clock, debounce_s=0)


def test_poller_calls_back_with_the_key_of_the_pressed_button():
    rig = make_rig()
    pressed = []
    poller = build_button_poller(
        {"a": (5, "button a"), "b": (6, "button b")},
        pressed.append,
        gpio=rig.pins,
        clock=rig.clock,
    )
    rig.board.drive_low(6)
    for _ in range(10):
        poller.poll_once()
        rig.clock.advance(0.01)
    assert pressed == ["b"]
    poller.close()
    assert rig.pins.in_use() == {}


def test_poller_building_releases_the_pins_it_took_when_one_fails():
    rig = make_rig()
    rig.pins.setup_output(6, False)
    with pytest.raises(HardwareConfigError):
        build_button_poller({"a": (5, "a"), "b": (6, "b")}, print, gpio=rig.pins, clock=rig.clock)
    assert rig.pins.in_use() == {6: "output"}


def test_poller_thread_reports_a_press_in_real_time():
    rig = make_rig()
    from hardware.clock import SystemClock

    pressed = threading.Event()
    button = GpioButton(pin=5, pins=rig.pins, clock=SystemClock(), debounce_s=0.02)
    poller = ButtonPoller({1: button}, lambda key: pressed.set(), poll_s=0.005)
    poller.start()
    try:
        rig.board.drive_low(5)
        assert pressed.wait(10)
    finally:
        poller.close()
    assert poller.error is None


# -- config ------------------------------------------------------------------------------------


def raw_config(state_dir, *, public_key=None, buttons=None, door_pins=DOOR_PINS, **extra):
    """Return a raw two-door config on fakes with GPIO buttons on the simulated header."""
    raw = {
        "kiosk": {"name": "button-kiosk", "state_dir": str(state_dir)},
        "backend": {
            "url": f"http://127.0.0.1:{refused_port()}",
            "kiosk_id": "k_test",
            "secret": SECRET,
            "community": "green",
            "timeout_s": 5.0,
        },
        "gpio": {"backend": "sim"},
        "scanner": {"driver": "fake"},
        "scale": {"driver": "fake"},
        "indicator": {"driver": "fake"},
        "doors": [
            {"number": n, "category": c, "capacity_g": 40_000, "driver": "fake"}
            for n, c in ((1, "plastic"), (2, "paper"))
        ],
        "weighing": {"band_g": 10, "window_s": 0.3},
        "buttons": buttons if buttons is not None else {"cancel_pin": CANCEL_PIN},
        **extra,
    }
    for door in raw["doors"]:
        if door_pins.get(door["number"]) is not None:
            door["button_pin"] = door_pins[door["number"]]
    if public_key:
        raw["backend"]["label_public_key"] = public_key
    return raw


def test_config_reads_button_keys(tmp_path):
    config = config_from_dict(
        raw_config(tmp_path, buttons={"debounce_ms": 50, "active_low": False, "poll_ms": 5})
    )
    assert [d.button_pin for d in config.doors] == [5, 6]
    assert (
        config.buttons.debounce_ms,
        config.buttons.active_low,
        config.buttons.poll_ms,
    ) == (
        50,
        False,
        5,
    )
    assert config.buttons.cancel_pin is None
    assert "button_pin" not in config.doors[0].options  # a door key, not a driver option


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda r: r["doors"][1].update(button_pin=5),
            "doors[1].button_pin: GPIO 5 is already doors[0].button_pin",
        ),
        (
            lambda r: r["doors"][0].update(button_pin="5"),
            "doors[0].button_pin: expected int",
        ),
        (
            lambda r: r["doors"][0].update(button_pin=40),
            "doors[0].button_pin: expected int <= 27",
        ),
        (
            lambda r: r["buttons"].update(cancel_pin=6),
            "buttons.cancel_pin: GPIO 6 is already doors[1].button_pin",
        ),
        (lambda r: r["buttons"].update(debounce=30), "buttons.debounce: unknown key"),
        (
            lambda r: r["buttons"].update(debounce_ms=0),
            "buttons.debounce_ms: expected int >= 1",
        ),
        (
            lambda r: r.update(indicator={"driver": "gpio", "green_pin": 5, "red_pin": 24}),
            "doors[0].button_pin: GPIO 5 is already indicator.green_pin",
        ),
    ],
)
def test_config_names_a_bad_button_key(tmp_path, change, message):
    raw = raw_config(tmp_path)
    change(raw)
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert message in str(caught.value)


# -- the station -----------------------------------------------------------------------------------


@pytest.fixture
def sim_header():
    """A fresh module-level fake header behind get_pins("sim") for each test."""
    reset_pins("sim")
    board = fake_rpi_gpio.reset()
    yield board
    reset_pins("sim")
    fake_rpi_gpio.reset()


@pytest.fixture
def keys():
    return Keys()


def press(session, board, pin: int, steps: int = 4) -> None:
    """Hold the button for a few loop steps (each moves virtual time), then let it go."""
    board.drive_low(pin)
    for _ in range(steps):
        session.station.step()
    board.drive_high(pin)
    for _ in range(steps):
        session.station.step()
    session.driver.settle()


def button_session(tmp_path, keys, **raw_kw) -> Session:
    return Session(
        config_from_dict(raw_config(tmp_path / "state", public_key=keys.public, **raw_kw))
    )


def test_a_door_button_in_choosing_picks_that_door(tmp_path, sim_header, keys):
    s = button_session(tmp_path, keys)
    try:
        s.run(f"{keys.label()}\nexpect-state choosing")
        press(s, sim_header, DOOR_PINS[2])
        assert s.state == "door_unlocked"
        assert s.flow.active_door().number == 2
        assert not s.door(2).locked and s.door(2).unlock_count == 1
        assert s.door(1).locked and s.door(1).unlock_count == 0
        s.run("drop 640\nclose\nexpect Thank you: 640 g of paper")
        [row] = s.journal.deposits(limit=5)
        assert (row.door, row.category, row.net_g) == (2, "paper", 640)
    finally:
        s.close()


def test_a_door_button_in_idle_is_refused_and_the_resident_told(tmp_path, sim_header, keys):
    s = button_session(tmp_path, keys)
    try:
        mark = s.screen.mark()
        press(s, sim_header, DOOR_PINS[1])
        assert s.state == "idle"
        assert any("scan the label on your bag first" in text for text in s.screen.since(mark))
        assert s.door(1).unlock_count == 0 and s.door(2).unlock_count == 0
        assert s.station.hardware.indicator is not None
    finally:
        s.close()


def test_bounce_on_a_door_button_chooses_once(tmp_path, sim_header, keys):
    s = button_session(tmp_path, keys, buttons={"debounce_ms": 200})
    try:
        s.run(f"{keys.label()}\nexpect-state choosing")
        # chatter shorter than the 200 ms debounce: each make lasts one 50 ms loop step
        for _ in range(5):
            sim_header.drive_low(DOOR_PINS[1])
            s.station.step()
            sim_header.drive_high(DOOR_PINS[1])
            s.station.step()
        assert s.state == "choosing" and s.door(1).unlock_count == 0
        press(s, sim_header, DOOR_PINS[1], steps=8)
        assert s.state == "door_unlocked" and s.door(1).unlock_count == 1
    finally:
        s.close()


def test_the_cancel_button_returns_to_idle(tmp_path, sim_header, keys):
    s = button_session(tmp_path, keys)
    try:
        s.run(f"{keys.label()}\nexpect-state choosing")
        mark = s.screen.mark()
        press(s, sim_header, CANCEL_PIN)
        assert s.state == "idle"
        assert any("Cancelled" in text for text in s.screen.since(mark))
    finally:
        s.close()


def test_station_releases_the_button_pins_at_shutdown(tmp_path, sim_header, keys):
    s = button_session(tmp_path, keys)
    assert set(get_pins("sim").in_use()) == {5, 6, CANCEL_PIN}
    s.close()
    assert get_pins("sim").in_use() == {}


def test_threaded_station_takes_a_button_press(tmp_path, sim_header, keys):
    config = config_from_dict(raw_config(tmp_path / "s", public_key=keys.public))
    with threaded_station(config) as station:
        station.hardware.scanner.present(keys.label())
        wait_for(lambda: station.flow.state == "choosing")
        sim_header.drive_low(DOOR_PINS[1])
        wait_for(lambda: station.flow.state == "door_unlocked")
        sim_header.drive_high(DOOR_PINS[1])
        assert station.flow.active_door().number == 1
        assert not station.hardware.doors[1].door.locked
