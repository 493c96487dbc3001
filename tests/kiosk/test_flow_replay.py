"""Replay whole scripted sessions through the deposit state machine, on fakes, in virtual time.

The backend here is unreachable (a port nothing listens on): every session also proves the
kiosk works offline and keeps what it recorded.  tests/kiosk/test_station_backend.py replays
sessions against the real backend.
"""

from __future__ import annotations

import pytest
from statemachine.exceptions import TransitionNotAllowed

from kiosk.flow import TIMEOUTS, DepositFlow, points_estimate, resolve_choice
from kiosk.station import BACKEND_CONFIG_META
from tests.kiosk.stations import (
    Keys,
    ScriptFailed,
    Session,
    kiosk_config,
    offline_config,
    refused_port,
)


@pytest.fixture
def keys():
    return Keys()


@pytest.fixture
def make_session(tmp_path, keys):
    sessions = []

    def make(**config_kw):
        config_kw.setdefault("backend_url", f"http://127.0.0.1:{refused_port()}")
        config_kw.setdefault("public_key", keys.public)
        session = Session(kiosk_config(tmp_path / f"state{len(sessions)}", **config_kw))
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def deposits(session, *states):
    return session.journal.deposits(states or None, limit=1000)


def test_happy_path_offline_records_the_deposit_and_shows_pending(make_session, keys):
    s = make_session()
    s.run(f"""
        expect Scan the label on your bag
        {keys.label()}
        expect Household H001: choose a bin: 1 plastic, 2 paper
        paper
        expect Door 2 (paper) is open
        drop 750
        expect-state door_open
        close
        expect Thank you: 750 g of paper
        wait 2
        expect balance pending
    """)
    [row] = deposits(s)
    assert (row.state, row.door, row.category, row.net_g, row.household) == (
        "recorded",
        2,
        "paper",
        750,
        "H001",
    )
    assert row.before_g == 0 and row.after_g == 750
    door = s.door(2)
    assert door.locked and door.unlock_count == 1 and door.lock_count >= 1
    assert s.door(1).unlock_count == 0
    s.run("wait 5\nexpect-state idle\nexpect Scan the label")


def test_journal_written_before_unlock_and_result_before_lock(make_session, keys):
    s = make_session()
    seen = {}
    door = s.door(1)
    real_unlock, real_lock = door.unlock, door.lock

    def unlock():
        seen["at_unlock"] = [r.state for r in deposits(s)]
        real_unlock()

    def lock():
        seen.setdefault("at_lock", [(r.state, r.net_g) for r in deposits(s)])
        real_lock()

    door.unlock, door.lock = unlock, lock
    s.run(f"{keys.label()}\nplastic\ndrop 300\nclose\nexpect 300 g of plastic")
    assert seen["at_unlock"] == ["open"]
    assert seen["at_lock"] == [("recorded", 300)]


def test_estimate_uses_the_cached_rules(make_session, keys):
    s = make_session()
    s.journal.set_meta(
        BACKEND_CONFIG_META,
        {
            "label_public_key": keys.public,
            "community": "green",
            "revoked_serials": [],
            "rules": [{"category": "paper", "points_per_kg": 25, "min_net_g": 100}],
        },
    )
    s.station.refresh_config()  # backend down: falls back to the cached config
    s.run(f"{keys.label()}\n2\ndrop 1234\nclose\nexpect +30 points (estimate)")


def test_wrong_category_is_refused_and_the_resident_chooses_again(make_session, keys):
    s = make_session()
    s.run(f"""
        {keys.label()}
        glass
        expect Refused: no bin here takes glass
        expect-state choosing
        2 plastic
        expect door 2 takes paper, not plastic
        expect-state choosing
        door 7
        expect there is no door 7
        1 plastic
        expect Door 1 (plastic) is open
    """)
    assert s.door(2).unlock_count == 0 and s.door(1).unlock_count == 1


def test_no_choice_in_time_goes_back_to_idle(make_session, keys):
    s = make_session()
    s.run(f"{keys.label()}\nwait 21\nexpect No bin was chosen in time\nexpect-state idle")
    assert deposits(s) == []


def test_single_door_kiosk_skips_choosing(make_session, keys):
    s = make_session(doors={1: "kitchen"})
    s.run(
        f"{keys.label()}\nexpect Door 1 (kitchen) is open\ndrop 400\nclose\nexpect 400 g of kitchen"
    )


def test_door_never_opened_relocks_and_records_nothing(make_session, keys):
    s = make_session()
    s.run(f"""
        {keys.label()}
        paper
        expect-state door_unlocked
        wait 16
        expect The door was not opened: nothing was recorded
        expect-state idle
    """)
    [row] = deposits(s)
    assert row.state == "interrupted" and row.reason == "door never opened"
    assert s.door(2).locked
    assert s.journal.outbox_depth() == 0


def test_door_left_open_alarms_faults_and_clears_when_shut(make_session, keys):
    s = make_session()
    s.run(f"""
        {keys.label()}
        paper
        drop 900
        wait 41
        expect Out of order: door 2 was left open
        expect-state fault
    """)
    assert all(s.door(n).locked for n in (1, 2))  # the bolt is out: it latches when shut
    assert "long" in s.station.hardware.indicator.beeps  # the alarm
    assert [r.state for r in deposits(s)] == ["open"]
    s.run(f"{keys.label()}\nexpect Out of order")  # scans are refused while in fault
    s.run("close\nwait 3\nexpect-state idle")
    [row] = deposits(s)
    assert (row.state, row.net_g) == ("recorded", 900)


def test_door_jammed_is_a_fault_until_repaired_and_reset(make_session, keys):
    s = make_session()
    s.run(f"""
        {keys.label()}
        paper
        drop 500
        block
        close
        expect Out of order: door fault
        expect-state fault
    """)
    [row] = deposits(s)
    assert (row.state, row.net_g) == (
        "recorded",
        500,
    )  # journalled before the lock was tried
    s.run("wait 30\nexpect-state fault")  # a jam never clears by itself
    s.run("reset\nexpect-state fault")  # still jammed: the reset fails
    s.run("repair 2\nreset\nexpect-state idle\nexpect Scan the label")
    assert s.door(2).locked


def test_weight_never_settles_after_the_deposit_then_recovers(make_session, keys):
    s = make_session()
    s.run(f"""
        {keys.label()}
        plastic
        drop 640
        unstable
        close
        expect Out of order: the weight never settled
        expect-state fault
    """)
    assert [r.state for r in deposits(s)] == ["open"]
    assert s.door(1).locked
    s.run("unstable off\nwait 3\nexpect-state idle")
    [row] = deposits(s)
    assert (row.state, row.net_g) == ("recorded", 640)


def test_weight_never_settles_before_the_door_unlocks(make_session, keys):
    s = make_session()
    s.run(f"unstable\n{keys.label()}\nplastic\nexpect the weight never settled\nexpect-state fault")
    assert deposits(s) == [] and s.door(1).unlock_count == 0
    s.run("unstable off\nwait 3\nexpect-state idle")
    assert deposits(s) == []


@pytest.mark.parametrize(
    "payload, reason",
    [
        ("forged", "this label is not genuine"),
        ("tampered", "this label is not genuine"),
        ("SP1.nonsense", "this is not a sortpoint label"),
        ("other", "this label belongs to another community"),
    ],
)
def test_bad_labels_are_refused_at_the_scanner(make_session, keys, payload, reason):
    s = make_session()
    if payload == "forged":
        payload = Keys().label()  # right community, someone else's key
    elif payload == "tampered":
        payload = keys.label(household="H001").replace(".H001.", ".H002.")
    elif payload == "other":
        payload = keys.label(community="blue")
    s.run(f"{payload}\nexpect Label refused: {reason}\nexpect-state idle")
    assert deposits(s) == []
    assert all(s.door(n).unlock_count == 0 for n in (1, 2))


def test_revoked_label_is_refused_offline_from_the_cached_config(make_session, keys):
    s = make_session()
    s.journal.set_meta(
        BACKEND_CONFIG_META,
        {
            "label_public_key": keys.public,
            "community": "green",
            "revoked_serials": ["REV0000001"],
            "rules": [],
        },
    )
    s.station.refresh_config()
    s.run(f"{keys.label(serial='REV0000001')}\nexpect Label refused: this label has been revoked")
    s.run(f"{keys.label(serial='F1NE000001')}\nexpect choose a bin")
    assert [r.serial for r in deposits(s)] == []


def test_a_disallowed_event_raises_and_the_resident_is_told(make_session, keys):
    s = make_session()
    with pytest.raises(TransitionNotAllowed):
        s.flow.send("door_closed")
    with pytest.raises(TransitionNotAllowed):
        s.flow.send("choose", choice="paper")
    s.run(f"{keys.label()}\npaper\ndrop 200")
    s.run(
        f"{keys.label(serial='NEXT000001')}\nexpect Please put the bag in and close the door first"
    )
    assert s.state == "door_open"
    s.run("reset\nexpect-state door_open")  # reset is for faults only


def test_choose_outside_choosing_is_reported(make_session, keys):
    s = make_session()
    s.run("2 paper\nexpect That is not possible now\nexpect-state idle")


def test_a_crash_with_the_bag_on_the_scale_is_recorded_on_restart(tmp_path, keys):
    config = offline_config(tmp_path / "state", keys.public)
    first = Session(config)
    first.run(f"{keys.label()}\npaper\ndrop 810")
    assert first.state == "door_open"
    # the process dies here: nothing is closed or locked by software; the world stays as it is
    first.station.journal.close()
    second = Session(config)
    try:
        assert second.door(2).locked  # fail-secure at start
        second.run("expect Please close door 2\nclose 2\nwait 3\nexpect-state idle")
        [row] = second.journal.deposits(limit=10)
        assert (row.state, row.net_g, row.before_g, row.after_g) == (
            "recorded",
            810,
            0,
            810,
        )
    finally:
        second.close()


def test_a_crash_before_anything_went_in_is_marked_interrupted(tmp_path, keys):
    config = offline_config(tmp_path / "state", keys.public)
    first = Session(config)
    first.run(f"{keys.label()}\nplastic\nexpect-state door_unlocked")
    first.station.journal.close()
    second = Session(config)
    try:
        second.run("wait 2\nexpect-state idle")
        [row] = second.journal.deposits(limit=10)
        assert row.state == "interrupted" and row.reason.startswith(
            "interrupted: weight changed by 0 g"
        )
        assert second.journal.outbox_depth() == 0
    finally:
        second.close()


def test_expect_failure_names_what_the_screen_showed(make_session):
    s = make_session()
    message = s.expect_fails("expect balance 1000000")
    assert "balance 1000000" in message and "Scan the label on your bag" in message
    assert "expected state 'fault'" in s.expect_fails("expect-state fault")


def test_every_waiting_state_has_a_timeout_except_idle_and_fault():
    waiting = {s.id for s in DepositFlow.states} - {"idle", "fault"}
    assert set(TIMEOUTS) == waiting


def test_points_estimate_matches_the_backend_rounding():
    assert points_estimate(1234, 25, 100) == 30  # floor(1234 * 25 / 1000) = floor(30.85)
    assert points_estimate(99, 25, 100) == 0
    assert points_estimate(0, 25, 0) == 0
    assert points_estimate(1000, 7, 0) == 7


def test_resolve_choice_by_name_number_or_both(make_session):
    doors = make_session().station.hardware.doors
    assert resolve_choice(doors, "Paper").number == 2
    assert resolve_choice(doors, 1).number == 1
    assert resolve_choice(doors, "2:paper").number == 2
    with pytest.raises(ValueError, match="takes paper, not metal"):
        resolve_choice(doors, "2 metal")


def test_script_failure_class_is_raised_for_unknown_weights(make_session):
    s = make_session()
    with pytest.raises(ScriptFailed):
        s.driver.execute("drop lots")


def test_an_unplugged_scanner_is_a_fault_that_clears_on_replug(make_session, keys):
    s = make_session()
    s.run("unplug\nexpect Out of order: scanner fault: scanner unplugged\nexpect-state fault")
    assert all(s.door(n).locked for n in (1, 2))
    s.run(f"replug\nwait 2\nexpect-state idle\n{keys.label()}\nexpect choose a bin")


def test_a_dead_scale_mid_deposit_faults_and_the_deposit_is_resolved_when_it_answers(
    make_session, keys
):
    s = make_session()
    s.run(
        f"{keys.label()}\npaper\ndrop 450\nscale fail\nexpect scale fault: scale not responding\nexpect-state fault"
    )
    assert [r.state for r in deposits(s)] == ["open"]
    s.run("scale ok\nclose\nwait 4\nexpect-state idle")
    [row] = deposits(s)
    assert (row.state, row.net_g) == ("recorded", 450)


def test_a_locked_door_that_opens_is_a_forced_door_fault_needing_a_reset(make_session, keys):
    s = make_session()
    door = s.door(1)
    door.is_closed = lambda: False  # the sensor says open although the bolt is out: a broken lock
    s.run("wait 1\nexpect Out of order: door 1 opened while locked\nexpect-state fault")
    s.run("wait 30\nexpect-state fault")  # never clears by itself
    del door.is_closed  # the technician mends it
    s.run("reset\nexpect-state idle")


def test_cancel_before_the_door_opens_records_nothing(make_session, keys):
    s = make_session()
    s.run(f"{keys.label()}\ncancel\nexpect Cancelled\nexpect-state idle")
    s.run(f"{keys.label()}\nplastic\nexpect-state door_unlocked\ncancel\nexpect-state idle")
    [row] = deposits(s)
    assert row.state == "interrupted" and s.door(1).locked


def test_a_bag_too_light_to_weigh_is_recorded_as_empty(make_session, keys):
    s = make_session()
    s.run(
        f"{keys.label()}\nplastic\ndrop 12\nclose\nexpect No deposit was detected: nothing was recorded"
    )
    [row] = deposits(s)
    assert (row.state, row.net_g, row.after_g) == ("empty", 0, 12)
    assert s.journal.outbox_depth() == 0


def test_the_next_resident_can_scan_while_the_result_shows(make_session, keys):
    s = make_session()
    s.run(f"{keys.label()}\npaper\ndrop 300\nclose\nexpect-state showing_result")
    s.run(
        f"{keys.label(household='H002', serial='NEXT000001')}\nexpect Household H002: choose a bin"
    )


def test_label_command_scans_from_the_labels_list(make_session, keys):
    s = make_session()
    s.driver.labels = [("H007", keys.label(household="H007"))]
    s.run("label 1\nexpect Household H007")
    assert "there are 1" in s.expect_fails("label 2")


def test_doors_on_separate_scales_are_weighed_and_recovered_on_their_own(tmp_path, keys):
    from kiosk.config import config_from_dict

    raw = {
        "kiosk": {"name": "two-scales", "state_dir": str(tmp_path / "state")},
        "backend": {
            "url": f"http://127.0.0.1:{refused_port()}",
            "kiosk_id": "k_two",
            "secret": "s3cret-s3cret-s3cret",
            "community": "green",
            "label_public_key": keys.public,
        },
        "scanner": {"driver": "fake"},
        "scales": {
            "left": {"driver": "fake", "initial_g": 2000},
            "right": {"driver": "fake"},
        },
        "doors": [
            {
                "number": 1,
                "category": "plastic",
                "capacity_g": 40000,
                "driver": "fake",
                "scale": "left",
            },
            {
                "number": 2,
                "category": "paper",
                "capacity_g": 40000,
                "driver": "fake",
                "scale": "right",
            },
        ],
    }
    config = config_from_dict(raw)
    first = Session(config)
    first.run(f"{keys.label()}\npaper\ndrop 700\nclose\nexpect 700 g of paper")
    assert first.station.hardware.scales["left"].load_g == 2000  # the other bin did not move
    first.run(f"{keys.label(serial='NEXT000001')}\npaper\ndrop 300")
    first.station.journal.close()  # the process dies with the door open and the bag in
    second = Session(config)
    try:
        second.run("close 2\nwait 3\nexpect-state idle")
        rows = second.journal.deposits(limit=10)
        assert [(r.door, r.before_g, r.net_g, r.state) for r in rows] == [
            (2, 0, 700, "recorded"),
            (2, 700, 300, "recorded"),
        ]
    finally:
        second.close()


def test_a_reset_with_a_door_standing_open_stays_in_fault(make_session, keys):
    s = make_session()
    s.run(f"{keys.label()}\npaper\ndrop 500\nblock\nclose\nexpect-state fault")
    s.run("repair 2\nopen 2\nreset\nexpect door 2 stands open: close it first\nexpect-state fault")
    s.run("close 2\nreset\nexpect-state idle")


def test_the_unlock_window_is_no_longer_than_the_lock_stays_energised(make_session, keys):
    s = make_session()
    s.door(2).max_energise_s = 3.0  # as a GpioDoor solenoid releases itself after 3 s
    s.run(
        f"{keys.label()}\npaper\nexpect-state door_unlocked\nwait 2.5\nexpect-state door_unlocked"
    )
    s.run("wait 1\nexpect The door was not opened\nexpect-state idle")
