"""Simulator commands a new user types first: ``help`` and the ``label`` family."""

from __future__ import annotations

import re

import pytest

from kiosk.sim import HELP, SimDriver
from tests.kiosk.stations import Keys, Session, offline_config


@pytest.fixture
def keys():
    return Keys()


@pytest.fixture
def session(tmp_path, keys):
    s = Session(offline_config(tmp_path / "state", keys.public))
    yield s
    s.close()


def printed(session: Session) -> str:
    """Return what the simulator printed so far, and start afresh."""
    text = session.out.getvalue()
    session.out.seek(0)
    session.out.truncate()
    return text


def test_help_prints_the_command_list(session):
    printed(session)
    session.run("help")
    shown = printed(session)
    assert shown.strip() == HELP.strip()
    for line in ("label next | label", "expect-state STATE", "wait N", "help | quit | exit"):
        assert line in shown


def test_help_names_every_command_the_simulator_takes():
    commands = {name[len("_cmd_") :] for name in dir(SimDriver) if name.startswith("_cmd_")}
    commands |= {"scan", "expect", "expect-state"}  # handled before the _cmd_ lookup
    missing = {c for c in commands if not re.search(rf"(^|[\s|]){re.escape(c)}\b", HELP, re.M)}
    assert not missing, f"help does not mention {sorted(missing)}"


def test_label_next_takes_the_first_label_this_kiosk_has_not_used(session, keys):
    session.driver.labels = [
        (household, keys.label(household=household, serial=f"SER{n:07d}"))
        for n, household in enumerate(("H001", "H002", "H003"), 1)
    ]
    session.run("label next\nexpect Household H001\npaper\ndrop 300\nclose\nexpect 300 g of paper")
    assert "(scanning label 1, of H001: the first one this kiosk has not used)" in printed(session)
    session.run("wait 10\nexpect-state idle\nlabel\nexpect Household H002\ncancel")
    assert "(scanning label 2, of H002" in printed(session)
    # a cancelled scan leaves no deposit: the label is still unused
    session.run("wait 1\nlabel next\nexpect Household H002")
    session.run("paper\ndrop 200\nclose\nwait 10\nexpect-state idle")
    session.run("labels")
    listing = printed(session).splitlines()
    assert [line.endswith("(used here)") for line in listing[-3:]] == [True, True, False]
    session.run("label again\nexpect Household H002")
    assert "(scanning label 2 again, of H002)" in printed(session)


def test_label_next_says_what_to_do_once_every_label_was_used(session, keys):
    session.driver.labels = [("H001", keys.label())]
    session.run("label next\npaper\ndrop 300\nclose\nwait 10\nexpect-state idle")
    message = session.expect_fails("label next")
    assert "every one of the 1 labels has been used at this kiosk" in message
    assert "sortpoint labels issue" in message and "label N" in message


def test_label_again_needs_an_earlier_scan_and_label_n_a_number_in_the_list(session, keys):
    assert "no label scanned yet" in session.expect_fails("label again")
    session.driver.labels = [("H001", keys.label())]
    assert "no label '0': there are 1" in session.expect_fails("label 0")
    assert "no label 'two': there are 1" in session.expect_fails("label two")
    payload = keys.label(household="H009", serial="PASTED0001")
    session.run(f"{payload}\nexpect Household H009\ncancel\nwait 1")
    session.run("label again\nexpect Household H009")
    assert "(scanning the last label again)" in printed(session)
