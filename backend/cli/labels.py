"""``sortpoint labels``: issue, list, print (PDF sheets) and revoke bag labels."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from backend.cli.common import SortpointGroup, emit, json_option
from backend.db import db

labels_cli = SortpointGroup("labels", help="Issue, list, print and revoke bag labels.")


@labels_cli.command("issue")
@click.argument("community")
@click.argument("household")
@click.option("--count", type=click.IntRange(1, 1000), required=True, help="How many labels.")
@click.option(
    "--pdf",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write a printable A4 sheet of QR labels here.",
)
@json_option
def labels_issue(
    community: str, household: str, count: int, pdf: Path | None, as_json: bool
) -> None:
    """Issue COUNT signed labels for HOUSEHOLD; prints the payloads, one per line."""
    from backend.services import labels

    _check_writable(pdf)
    with db.begin() as s:
        issued = labels.issue_labels(s, community, household, count)
        # written inside the transaction: a sheet that cannot be written issues nothing
        if pdf is not None:
            _write_pdf(pdf, _render_sheet(issued, f"{community} {household} labels"))
    emit(
        {"labels": [i.as_dict() for i in issued], "pdf": str(pdf) if pdf else None},
        as_json,
        [i.payload for i in issued],
    )


@labels_cli.command("list")
@click.argument("community")
@click.argument("household", required=False)
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked labels.")
@click.option(
    "--pdf",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write them as a printable A4 sheet (to reprint a lost sheet).",
)
@json_option
def labels_list(community, household, include_revoked, pdf, as_json) -> None:
    """List the labels of COMMUNITY (or one HOUSEHOLD): household, serial, payload."""
    from backend.services import labels

    with db.begin() as s:
        found = labels.household_labels(s, community, household, include_revoked)
    if pdf is not None:
        _write_pdf(pdf, _render_sheet(found, f"{community} labels"))
    emit(
        [i.as_dict() for i in found],
        as_json,
        [f"{i.household}\t{i.serial}\t{i.payload}" for i in found],
    )


def _check_writable(path: Path | None) -> None:
    if path is not None and not path.parent.is_dir():
        raise click.ClickException(f"cannot write {path}: no folder {path.parent}")


def _render_sheet(issued: list, title: str) -> bytes:
    from backend.services import labels

    with click.progressbar(length=len(issued), label="drawing labels", file=sys.stderr) as bar:
        return labels.label_sheet_pdf(issued, title, progress=bar.update)


def _write_pdf(path: Path, data: bytes) -> None:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None


@labels_cli.command("revoke")
@click.argument("serial")
@click.option(
    "--reason", default="revoked by staff", show_default=True, help="Why (kept on the label)."
)
@json_option
def labels_revoke(serial: str, reason: str, as_json: bool) -> None:
    """Revoke label SERIAL: deposits with it are rejected from now on."""
    from backend.services import labels

    with db.begin() as s:
        label, changed = labels.revoke_label(s, serial, reason)
        info = {
            "serial": label.serial,
            "revoked_at": label.revoked_at.isoformat(),
            "reason": label.revoked_reason,
            "changed": changed,
        }
    emit(
        info,
        as_json,
        f"label {label.serial} {'revoked' if changed else 'was already revoked'}"
        f" ({info['reason']})",
    )
