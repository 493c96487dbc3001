"""Labels service: issue, revoke, and the printable sheet really scans back."""

from __future__ import annotations

import itertools

import pypdfium2 as pdfium
import pytest
import zxingcpp
from sqlalchemy import select

from backend.core.db import db
from backend.core.errors import InvalidInput, NotFound, SortpointError
from backend.registry import labels
from backend.registry import services as registry
from backend.registry.models import Label
from protocol.labels import SERIAL_RE, public_key_from_text, verify_label

RENDER_DPI = 200


@pytest.fixture
def community(app):
    with db.begin() as s:
        c = registry.create_community(s, "oak", "Oak")
        registry.add_building(s, "oak", "B1", "Building 1")
        for code in ("H1", "H2"):
            registry.add_household(s, "oak", code, "B1")
        return c.label_public_key


def _issue(household="H1", count=3, **kwargs):
    with db.begin() as s:
        return labels.issue_labels(s, "oak", household, count, **kwargs)


def test_issued_labels_verify_with_the_public_key_and_are_stored(community):
    issued = _issue(count=5)
    key = public_key_from_text(community)
    assert len({lab.serial for lab in issued}) == 5
    for lab in issued:
        claims = verify_label(lab.payload, key)
        assert (claims.community, claims.household, claims.serial) == ("oak", "H1", lab.serial)
        assert SERIAL_RE.fullmatch(lab.serial)
    with db.begin() as s:
        stored = {row.serial: row for row in s.scalars(select(Label))}
        assert set(stored) == {lab.serial for lab in issued}
        assert all(r.revoked_at is None and r.first_deposit_id is None for r in stored.values())


def test_serial_collisions_are_drawn_again(community):
    first = _issue(count=2)
    taken = [lab.serial for lab in first]
    # the generator repeats existing serials before yielding fresh ones
    draws = itertools.chain(taken, taken, ["NEWSER0001", "NEWSER0002"])
    issued = _issue(count=2, make_serial=lambda: next(draws))
    assert sorted(lab.serial for lab in issued) == ["NEWSER0001", "NEWSER0002"]


def test_serials_that_never_come_free_fail_cleanly(community):
    taken = _issue(count=1)[0].serial
    with pytest.raises(SortpointError, match="unused label serials"):
        _issue(count=1, make_serial=lambda: taken)
    with db.begin() as s:
        assert len(s.scalars(select(Label)).all()) == 1


@pytest.mark.parametrize("count", [0, -1, labels.MAX_LABELS_PER_ISSUE + 1, True, 2.0])
def test_bad_counts_refused(community, count):
    with pytest.raises(InvalidInput):
        _issue(count=count)


def test_unknown_household_or_community(community):
    with pytest.raises(NotFound):
        _issue(household="H9")
    with pytest.raises(NotFound):
        with db.begin() as s:
            labels.issue_labels(s, "pine", "H1", 1)


def test_household_labels_rebuild_the_same_payloads(community):
    issued = _issue(count=2) + _issue(household="H2", count=1)
    with db.begin() as s:
        listed = labels.household_labels(s, "oak")
        only_h2 = labels.household_labels(s, "oak", "H2")
    assert sorted(listed, key=lambda lab: lab.serial) == sorted(issued, key=lambda lab: lab.serial)
    assert [lab.household for lab in only_h2] == ["H2"]


def test_revoke_is_recorded_once_and_hides_from_listing(community):
    issued = _issue(count=2)
    serial = issued[0].serial
    with db.begin() as s:
        label, changed = labels.revoke_label(s, serial.lower(), "bag stolen")
        assert changed and label.revoked_reason == "bag stolen"
        first_at = label.revoked_at
    with db.begin() as s:
        label, changed = labels.revoke_label(s, serial, "again")
        assert not changed
        assert (label.revoked_at, label.revoked_reason) == (first_at, "bag stolen")
        assert [lab.serial for lab in labels.household_labels(s, "oak")] == [issued[1].serial]
        assert len(labels.household_labels(s, "oak", include_revoked=True)) == 2
    with pytest.raises(NotFound):
        with db.begin() as s:
            labels.revoke_label(s, "NOSUCHLABEL")


# ------------------------------------------------------------------------ PDF


def _decode_pdf(data: bytes) -> tuple[list[list[str]], list[str]]:
    """Render each page and return (QR texts per page, page texts)."""
    doc = pdfium.PdfDocument(data)
    try:
        codes, texts = [], []
        for index in range(len(doc)):
            page = doc[index]
            image = page.render(scale=RENDER_DPI / 72).to_pil()
            codes.append([r.text for r in zxingcpp.read_barcodes(image)])
            textpage = page.get_textpage()
            texts.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return codes, texts
    finally:
        doc.close()


def test_pdf_sheet_scans_back_to_the_payloads(community):
    issued = _issue(count=26)  # 24 on page one, 2 on page two
    data = labels.label_sheet_pdf(issued)
    assert data.startswith(b"%PDF")
    codes, texts = _decode_pdf(data)
    assert [len(page) for page in codes] == [24, 2]
    assert sorted(itertools.chain.from_iterable(codes)) == sorted(lab.payload for lab in issued)
    lines = [line.strip() for text in texts for line in text.splitlines()]
    # the human-readable household code and serial are printed beneath each code
    assert sorted(line for line in lines if line != "H1") == sorted(lab.serial for lab in issued)
    assert lines.count("H1") == 26


def test_pdf_qr_codes_use_error_correction_m_with_a_quiet_zone(community):
    payload = _issue(count=1)[0].payload
    image = labels.qr_image(payload)
    results = zxingcpp.read_barcodes(image)
    assert [r.text for r in results] == [payload]
    assert results[0].ec_level == "M"
    # the quiet zone: the outer 4 modules (10 px each) are white on every side
    border_px = labels.QR_BORDER_MODULES * 10
    gray = image.convert("L")
    width, height = gray.size
    for box in (
        (0, 0, width, border_px),
        (0, height - border_px, width, height),
        (0, 0, border_px, height),
        (width - border_px, 0, width, height),
    ):
        assert gray.crop(box).getextrema() == (255, 255)


def test_empty_sheet_refused():
    with pytest.raises(InvalidInput):
        labels.label_sheet_pdf([])
