"""Bag labels: issue signed payloads, revoke them, print them on A4 sheets.

A label is a row (serial -> household) plus a payload signed with the
community's Ed25519 key (protocol.labels).  Ed25519 signatures are
deterministic, so a label's payload can be rebuilt from its row at any time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import qrcode
import qrcode.constants
from fpdf import FPDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.errors import InvalidInput, NotFound, SortpointError
from backend.core.models import utcnow
from backend.registry.models import Community, Household, Label
from backend.registry.sealed import label_signing_key
from backend.registry.services import get_community, get_household
from protocol.labels import LabelClaims, encode_label, new_serial

MAX_LABELS_PER_ISSUE = 1000
MAX_SERIAL_ROUNDS = 5

# A4 sheet of 3 x 8 labels of 70 x 37 mm (the common 24-up sticker format).
PAGE_W_MM, PAGE_H_MM = 210.0, 297.0
COLUMNS, ROWS = 3, 8
CELL_W_MM, CELL_H_MM = 70.0, 37.0
TOP_MM = (PAGE_H_MM - ROWS * CELL_H_MM) / 2
LEFT_MM = (PAGE_W_MM - COLUMNS * CELL_W_MM) / 2
QR_MM = 27.0  # includes the 4-module quiet zone drawn into the image
QR_TOP_PAD_MM = 1.5
QR_BORDER_MODULES = 4  # the quiet zone QR readers need; never trim it
TEXT_LINE_MM = 3.2


@dataclass(frozen=True)
class IssuedLabel:
    """A label as printed: household code, serial and signed payload."""

    household: str
    serial: str
    payload: str

    def as_dict(self) -> dict:
        """Return the label as a JSON-ready dict."""
        return {"household": self.household, "serial": self.serial, "payload": self.payload}


def _signer(community: Community) -> Callable[[str, str], str]:
    """Return ``sign(household_code, serial) -> payload``: the key is opened here, only to sign."""
    key = label_signing_key(community)

    def sign(household_code: str, serial: str) -> str:
        return encode_label(key, LabelClaims(community.slug, household_code, serial))

    return sign


def _fresh_serials(session: Session, count: int, make_serial: Callable[[], str]) -> list[str]:
    """Return ``count`` serials that no label has, drawing again on collision."""
    serials: set[str] = set()
    for _ in range(MAX_SERIAL_ROUNDS):
        while len(serials) < count:
            serials.add(make_serial())
        taken = set(session.scalars(select(Label.serial).where(Label.serial.in_(serials))))
        if not taken:
            return sorted(serials)
        serials -= taken
    raise SortpointError(f"could not draw {count} unused label serials; try again")


def issue_labels(
    session: Session,
    community_slug: str,
    household_code: str,
    count: int,
    make_serial: Callable[[], str] = new_serial,
) -> list[IssuedLabel]:
    """Issue ``count`` new labels for a household and return their payloads."""
    if (
        isinstance(count, bool)
        or not isinstance(count, int)
        or not 1 <= count <= MAX_LABELS_PER_ISSUE
    ):
        raise InvalidInput(f"count must be from 1 to {MAX_LABELS_PER_ISSUE}, not {count!r}")
    community = get_community(session, community_slug)
    household = get_household(session, community, household_code)
    now = utcnow()
    sign = _signer(community)
    issued = []
    for serial in _fresh_serials(session, count, make_serial):
        session.add(
            Label(
                serial=serial, community_id=community.id, household_id=household.id, issued_at=now
            )
        )
        issued.append(IssuedLabel(household.code, serial, sign(household.code, serial)))
    session.flush()
    return issued


def household_labels(
    session: Session,
    community_slug: str,
    household_code: str | None = None,
    include_revoked: bool = False,
) -> list[IssuedLabel]:
    """Return the labels of a community (or one household) with their payloads."""
    community = get_community(session, community_slug)
    query = (
        select(Label.serial, Household.code)
        .join(Household, Household.id == Label.household_id)
        .where(Label.community_id == community.id)
        .order_by(Household.code, Label.issued_at, Label.serial)
    )
    if household_code is not None:
        query = query.where(
            Label.household_id == get_household(session, community, household_code).id
        )
    if not include_revoked:
        query = query.where(Label.revoked_at.is_(None))
    rows = session.execute(query).all()
    if not rows:
        return []
    sign = _signer(community)
    return [IssuedLabel(code, serial, sign(code, serial)) for serial, code in rows]


def revoke_label(
    session: Session, serial: str, reason: str = "revoked by staff"
) -> tuple[Label, bool]:
    """Revoke a label so deposits with it are rejected; returns (label, changed)."""
    reason = (reason or "").strip() or "revoked by staff"
    if len(reason) > 200:
        raise InvalidInput("the reason is longer than 200 characters")
    label = session.get(Label, serial.strip().upper(), with_for_update=True)
    if label is None:
        raise NotFound(f"no label {serial!r}")
    if label.revoked_at is not None:
        return label, False
    label.revoked_at = utcnow()
    label.revoked_reason = reason
    return label, True


# ------------------------------------------------------------------------ PDF


def qr_image(payload: str):
    """Return a PIL image of ``payload`` as a QR code (ECC level M, quiet zone kept)."""
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        box_size=10,
        border=QR_BORDER_MODULES,
    )
    code.add_data(payload.encode("ascii"))
    code.make(fit=True)
    return code.make_image(fill_color="black", back_color="white").get_image()


def _draw_label(pdf: FPDF, label: IssuedLabel, x: float, y: float) -> None:
    # light cut guides: far outside the QR's own quiet zone
    pdf.set_draw_color(210, 210, 210)
    pdf.rect(x, y, CELL_W_MM, CELL_H_MM)
    pdf.image(qr_image(label.payload), x + (CELL_W_MM - QR_MM) / 2, y + QR_TOP_PAD_MM, QR_MM, QR_MM)
    text_y = y + QR_TOP_PAD_MM + QR_MM + 0.3
    pdf.set_xy(x, text_y)
    pdf.set_font("Helvetica", "B", 8)
    pdf.cell(CELL_W_MM, TEXT_LINE_MM, label.household, align="C")
    pdf.set_xy(x, text_y + TEXT_LINE_MM)
    pdf.set_font("Courier", "", 7.5)
    pdf.cell(CELL_W_MM, TEXT_LINE_MM, label.serial, align="C")


def label_sheet_pdf(
    labels: Sequence[IssuedLabel],
    title: str = "sortpoint labels",
    progress: Callable[[int], None] | None = None,
) -> bytes:
    """Return an A4 PDF of the labels, 3 x 8 per page, code and serial beneath each QR.

    ``progress(1)`` is called after each label (about 10 ms each, mostly QR encoding).
    """
    if not labels:
        raise InvalidInput("no labels to print")
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_title(title)
    pdf.set_creator("sortpoint")
    pdf.set_auto_page_break(False)
    pdf.set_margins(0, 0, 0)
    per_page = COLUMNS * ROWS
    for index, label in enumerate(labels):
        if index % per_page == 0:
            pdf.add_page()
        slot = index % per_page
        row, col = divmod(slot, COLUMNS)
        _draw_label(pdf, label, LEFT_MM + col * CELL_W_MM, TOP_MM + row * CELL_H_MM)
        if progress:
            progress(1)
    return bytes(pdf.output())
