"""A scanner's line end is not part of the label: the kiosk records and uploads the label alone.

The backend takes a label exactly as uploaded and refuses whitespace around it
(``label_malformed``, docs/protocol.md), so the kiosk, which accepts a scanned
payload with a line end (``kiosk.labels.label_text``), must upload it without.
"""

from __future__ import annotations

import pytest

from backend.core.db import db
from kiosk.labels import label_text
from tests.factories import build_world
from tests.kiosk.stations import ServedBackend
from tests.kiosk.test_station_backend import backend_deposits, balance, session_for


@pytest.fixture
def world(app):
    with db.begin() as s:
        return build_world(s, households=1, labels_per_household=1, points_per_kg=20)


@pytest.fixture
def backend(app, world):
    served = ServedBackend(app)
    yield served
    served.stop()


def test_label_text_drops_what_a_reader_adds_around_a_label():
    assert label_text(" SP1.x.y.z.sig\r\n") == "SP1.x.y.z.sig"


def test_a_label_scanned_with_a_line_end_is_uploaded_without_it(tmp_path, world, backend):
    backend.start()
    s = session_for(tmp_path, world, backend)
    try:
        label = world.labels["H001"][0]
        s.station.hardware.scanner.present(label + "\r\n")
        s.driver.settle()
        s.run("""
            expect Household H001: choose a bin: 1 plastic, 2 paper
            paper
            drop 1000
            close
            expect +20 points - balance 20
        """)
        [row] = s.journal.deposits(limit=5)
        assert (row.label, row.sync_status, row.points) == (label, "accepted", 20)
        [deposit] = backend_deposits(world.kiosk.id)
        assert deposit.points == 20
        assert balance(world, "H001") == 20
    finally:
        s.close()
