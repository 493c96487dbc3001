"""``sortpoint community|building|household|kiosk|labels``: the registry of places, households, kiosks and labels."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from backend.core.cli import SortpointGroup, emit, json_option
from backend.core.db import db

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
    from backend.registry import services as registry

    with db.begin() as s:
        community = registry.create_community(s, slug, name, timezone, categories)
        info = _community_info(s, community)
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
    from backend.registry import services as registry

    with db.read() as s:
        infos = [_community_info(s, c) for c in registry.list_communities(s)]
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
    from backend.registry import services as registry

    with db.begin() as s:
        info = _community_info(s, registry.set_timezone(s, slug, timezone))
    emit(info, as_json, f"community {slug} now uses {timezone}")


def _community_info(session, community) -> dict:
    from backend.registry import services as registry

    return {
        "slug": community.slug,
        "name": community.name,
        "timezone": community.timezone,
        "label_public_key": community.label_public_key,
        "categories": [
            {"code": c.code, "name": c.name, "max_plausible_g": c.max_plausible_g}
            for c in registry.list_categories(session, community)
        ],
    }


# ------------------------------------------------------- building / household

building_cli = SortpointGroup("building", help="Add buildings (staff grid cells).")


@building_cli.command("add")
@click.argument("community")
@click.argument("code")
@click.option("--name", required=True, help="Display name of the building.")
@json_option
def building_add(community: str, code: str, name: str, as_json: bool) -> None:
    """Add building CODE to COMMUNITY."""
    from backend.registry import services as registry

    with db.begin() as s:
        building = registry.add_building(s, community, code, name)
        info = {"community": community, "code": building.code, "name": building.name}
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
    from backend.registry import services as registry

    with db.begin() as s:
        household = registry.add_household(s, community, code, building, unit)
        info = {
            "community": community,
            "code": household.code,
            "building": building,
            "unit": household.unit,
            "balance": 0,
        }
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
    from backend.registry import services as registry

    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    rows = registry.parse_household_csv(text)
    with click.progressbar(length=len(rows), label="importing households", file=sys.stderr) as bar:
        with db.begin() as s:
            added = registry.import_households(s, community, rows, progress=bar.update)
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
    from backend.registry import services as registry

    with db.begin() as s:
        info = registry.kiosk_info(
            s, registry.register_kiosk(s, community, name, doors), with_secret=True
        )
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
    from backend.registry import services as registry

    with db.begin() as s:
        kiosk, changed = registry.disable_kiosk(s, kiosk_id)
        info = registry.kiosk_info(s, kiosk) | {"changed": changed}
    emit(info, as_json, f"kiosk {kiosk_id} {'disabled' if changed else 'was already disabled'}")


@kiosk_cli.command("list")
@click.option("--community", default=None, help="Only this community's kiosks.")
@json_option
def kiosk_list(community: str | None, as_json: bool) -> None:
    """List kiosks, their doors and when they were last seen."""
    from backend.registry import services as registry

    with db.read() as s:
        infos = [registry.kiosk_info(s, k) for k in registry.list_kiosks(s, community)]
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
    from backend.registry import labels

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
    from backend.registry import labels

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
    from backend.registry import labels

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
