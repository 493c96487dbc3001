"""``sortpoint community|building|household|kiosk|labels``: the registry of places, households, kiosks and labels."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from backend.core.cli import SortpointGroup, emit, json_option
from backend.registry import use_cases
from backend.registry.services import parse_household_csv

# ------------------------------------------------------------------ community

community_cli = SortpointGroup("community", help="Create and list communities.")


@community_cli.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="Display name of the community.")
@click.option(
    "--timezone",
    default="Asia/Shanghai",
    show_default=True,
    help="IANA time zone that decides local days (daily caps).",
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    metavar="CODE[:MAX_G]",
    help="Add a category or set a default one's heaviest plausible bag (repeat).",
)
@json_option
def community_create(slug, name, timezone, categories, as_json) -> None:
    """Create community SLUG with its label-signing key and categories."""
    info = use_cases.create_community(slug, name, timezone, categories)
    emit(
        info,
        as_json,
        [
            f"community {info['slug']} ({info['name']}, {info['timezone']})",
            f"label public key: {info['label_public_key']}",
            "categories: "
            + ", ".join(f"{c['code']} (max {c['max_plausible_g']} g)" for c in info["categories"]),
        ],
    )


@community_cli.command("list")
@json_option
def community_list(as_json: bool) -> None:
    """List communities with their time zones and categories."""
    infos = use_cases.list_communities()
    emit(
        infos,
        as_json,
        [f"{i['slug']}\t{i['timezone']}\t{i['name']}" for i in infos] or ["no communities"],
    )


@community_cli.command("set-timezone")
@click.argument("slug")
@click.argument("timezone")
@json_option
def community_set_timezone(slug: str, timezone: str, as_json: bool) -> None:
    """Change the IANA time zone of community SLUG."""
    info = use_cases.set_timezone(slug, timezone)
    emit(info, as_json, f"community {slug} now uses {timezone}")


# ------------------------------------------------------- building / household

building_cli = SortpointGroup("building", help="Add buildings (staff grid cells).")


@building_cli.command("add")
@click.argument("community")
@click.argument("code")
@click.option("--name", required=True, help="Display name of the building.")
@json_option
def building_add(community: str, code: str, name: str, as_json: bool) -> None:
    """Add building CODE to COMMUNITY."""
    info = use_cases.add_building(community, code, name)
    emit(info, as_json, f"building {code} added to {community}")


household_cli = SortpointGroup("household", help="Register households.")


@household_cli.command("add")
@click.argument("community")
@click.argument("code")
@click.option("--building", required=True, help="Code of the household's building.")
@click.option("--unit", default="", help="Flat or unit number.")
@json_option
def household_add(community: str, code: str, building: str, unit: str, as_json: bool) -> None:
    """Register household CODE in COMMUNITY (its points account starts at 0)."""
    info = use_cases.add_household(community, code, building, unit)
    emit(info, as_json, f"household {code} added to {community} (building {building})")


@household_cli.command("import")
@click.argument("community")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def household_import(community: str, file: Path, as_json: bool) -> None:
    """Import households from a CSV with the header code,building,unit.

    All rows are added or none: a bad row stops the import and is named by
    its line number.
    """
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    rows = parse_household_csv(text)  # the command's input, checked before any database work
    with click.progressbar(length=len(rows), label="importing households", file=sys.stderr) as bar:
        added = use_cases.import_households(community, rows, progress=bar.update)
    emit(
        {"community": community, "imported": added},
        as_json,
        f"imported {added} households into {community}",
    )


# ---------------------------------------------------------------------- kiosk

kiosk_cli = SortpointGroup("kiosk", help="Register, disable and list kiosks.")


@kiosk_cli.command("register")
@click.argument("community")
@click.argument("name")
@click.option(
    "--door",
    "doors",
    multiple=True,
    required=True,
    metavar="N=CATEGORY[:CAPACITY_G]",
    help="A door and its bin's category, e.g. 1=plastic:40000 (repeat).",
)
@json_option
def kiosk_register(community: str, name: str, doors: tuple[str, ...], as_json: bool) -> None:
    """Register kiosk NAME in COMMUNITY; prints its id and secret."""
    info = use_cases.register_kiosk(community, name, doors)
    emit(
        info,
        as_json,
        [
            f"kiosk_id: {info['kiosk_id']}",
            f"secret: {info['secret']}",
            "doors: "
            + ", ".join(f"{d['door']}={d['category']}:{d['capacity_g']}" for d in info["doors"]),
            "Put the id and secret into the kiosk's configuration.",
        ],
    )


@kiosk_cli.command("disable")
@click.argument("kiosk_id")
@json_option
def kiosk_disable(kiosk_id: str, as_json: bool) -> None:
    """Disable KIOSK_ID: its requests are refused from now on."""
    info = use_cases.disable_kiosk(kiosk_id)
    changed = info["changed"]
    emit(info, as_json, f"kiosk {kiosk_id} {'disabled' if changed else 'was already disabled'}")


@kiosk_cli.command("list")
@click.option("--community", default=None, help="Only this community's kiosks.")
@json_option
def kiosk_list(community: str | None, as_json: bool) -> None:
    """List kiosks, their doors and when they were last seen."""
    infos = use_cases.list_kiosks(community)
    lines = [
        f"{i['kiosk_id']}\t{i['community']}\t{'enabled' if i['enabled'] else 'DISABLED'}\t{i['name']}\t"
        + " ".join(f"{d['door']}={d['category']}" for d in i["doors"])
        + f"\tlast seen {i['last_seen_at'] or 'never'}"
        for i in infos
    ]
    emit(infos, as_json, lines or ["no kiosks"])


# ------------------------------------------------------------ labels

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
    _check_writable(pdf)

    def write_sheet(issued: list) -> None:
        # inside the issuing transaction: a sheet that cannot be written issues nothing
        _write_pdf(pdf, _render_sheet(issued, f"{community} {household} labels"))

    issued = use_cases.issue_labels(
        community, household, count, before_commit=write_sheet if pdf is not None else None
    )
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
    """List the labels of COMMUNITY (or one HOUSEHOLD): household, serial, payload.

    With --all, revoked labels too, and a fourth column for every label:
    "active", or "revoked AT (REASON)".
    """
    found = use_cases.list_labels(community, household, include_revoked)
    if pdf is not None:
        _write_pdf(pdf, _render_sheet(found, f"{community} labels"))
    if not include_revoked:
        emit(
            [i.as_dict() for i in found],
            as_json,
            [f"{i.household}\t{i.serial}\t{i.payload}" for i in found],
        )
        return
    emit(
        [
            i.as_dict() | {"revoked_at": i.revoked_at, "revoked_reason": i.revoked_reason}
            for i in found
        ],
        as_json,
        [f"{i.household}\t{i.serial}\t{i.payload}\t{_label_state(i)}" for i in found],
    )


def _label_state(label: use_cases.ListedLabel) -> str:
    if label.revoked_at is None:
        return "active"
    return f"revoked {label.revoked_at.isoformat()} ({label.revoked_reason})"


def _check_writable(path: Path | None) -> None:
    if path is not None and not path.parent.is_dir():
        raise click.ClickException(f"cannot write {path}: no folder {path.parent}")


def _render_sheet(issued: list, title: str) -> bytes:
    from backend.registry import labels

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
    info = use_cases.revoke_label(serial, reason)
    emit(
        info,
        as_json,
        f"label {info['serial']} {'revoked' if info['changed'] else 'was already revoked'}"
        f" ({info['reason']})",
    )
