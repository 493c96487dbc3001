"""The ``sortpoint`` command line: a Flask CLI group (also ``flask --app backend``).

Commands parse arguments, call one service inside one transaction
(``with db.begin() as s:``; ``db.read()`` for commands that only read) and print the result: text for people, or JSON on
stdout and nothing else with ``--json``.  A domain error becomes one line on
stderr and exit code 1, never a traceback.  docs/cli.md documents each command.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup, FlaskGroup
from sqlalchemy.exc import DBAPIError

from backend.db import db
from backend.errors import SortpointError
from protocol import ProtocolError


class SortpointGroup(AppGroup):
    """A command group that turns domain and database errors into one-line messages."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (SortpointError, ProtocolError) as exc:
            raise click.ClickException(getattr(exc, "message", None) or str(exc)) from None
        except DBAPIError as exc:
            first_line = (str(exc.orig).strip().splitlines() or [type(exc.orig).__name__])[0]
            missing_table = "no such table" in first_line or "does not exist" in first_line
            hint = " (has `sortpoint db upgrade` been run?)" if missing_table else ""
            raise click.ClickException(f"database error: {first_line}{hint}") from None


def json_option(func):
    """Add ``--json``: print JSON on stdout and nothing else."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON on stdout (and nothing else)."
    )(func)


def emit(data, as_json: bool, text: str | list[str] | None = None) -> None:
    """Print ``data`` as JSON, or ``text`` (lines) for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=_json_default))
    elif isinstance(text, list):
        for line in text:
            click.echo(line)
    elif text is not None:
        click.echo(text)


def _json_default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


def _aware_datetime(_ctx, _param, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. 2025-01-01T00:00:00+08:00")
    return parsed


# -------------------------------------------------------------------------- db

db_cli = SortpointGroup("db", help="Create and migrate the database (Alembic).")


@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Revision to reach.")
@json_option
def db_upgrade(revision: str, as_json: bool) -> None:
    """Create or migrate the database to the newest schema."""
    from backend import migrations

    before = migrations.current_revision(db.engine)
    migrations.upgrade(db.engine, revision)
    after = migrations.current_revision(db.engine)
    emit(
        {"from": before, "to": after, "head": migrations.head_revision(), "url": _safe_url()},
        as_json,
        f"database {_safe_url()} at revision {after} (was {before or 'empty'})",
    )


@db_cli.command("current")
@json_option
def db_current(as_json: bool) -> None:
    """Show the database's schema revision and the newest one."""
    from backend import migrations

    current, head = migrations.current_revision(db.engine), migrations.head_revision()
    emit(
        {"current": current, "head": head, "up_to_date": current == head, "url": _safe_url()},
        as_json,
        f"{_safe_url()}: revision {current or 'none'} (head {head})",
    )


@db_cli.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Confirm: a downgrade drops tables and their data.")
def db_downgrade(revision: str, yes: bool) -> None:
    """Migrate the database down to REVISION ("base" drops everything)."""
    from backend import migrations

    if not yes:
        raise click.ClickException("a downgrade drops data; add --yes if you mean it")
    migrations.downgrade(db.engine, revision)
    click.echo(f"database at revision {migrations.current_revision(db.engine) or 'base'}")


def _safe_url() -> str:
    assert db.engine is not None
    return db.engine.url.render_as_string(hide_password=True)


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
    from backend.services import registry

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
    from backend.services import registry

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
    from backend.services import registry

    with db.begin() as s:
        info = _community_info(s, registry.set_timezone(s, slug, timezone))
    emit(info, as_json, f"community {slug} now uses {timezone}")


def _community_info(session, community) -> dict:
    from backend.services import registry

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
    from backend.services import registry

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
    from backend.services import registry

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
    from backend.services import registry

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


# ---------------------------------------------------------------------- rules

rules_cli = SortpointGroup("rules", help="Set and list versioned points rules.")


@rules_cli.command("set")
@click.argument("community")
@click.option("--category", required=True, help="Category code, e.g. plastic.")
@click.option(
    "--points-per-kg",
    type=click.IntRange(min=0),
    required=True,
    help="Points per kilogram; points = net_g * points_per_kg // 1000.",
)
@click.option(
    "--min-g",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Lighter deposits are recorded but earn 0 points.",
)
@click.option(
    "--daily-cap",
    type=click.IntRange(min=0),
    default=None,
    help="Most points per household, category and local day (default: no cap).",
)
@click.option(
    "--effective-at",
    callback=_aware_datetime,
    metavar="ISO",
    help="When this version takes effect (with offset; default now).",
)
@json_option
def rules_set(community, category, points_per_kg, min_g, daily_cap, effective_at, as_json) -> None:
    """Append a new version of COMMUNITY's points rule for a category."""
    from backend.services import rules

    with db.begin() as s:
        rule = rules.set_rule(s, community, category, points_per_kg, min_g, daily_cap, effective_at)
        info = rules.rule_info(rule, category)
    cap = info["daily_cap"] if info["daily_cap"] is not None else "none"
    emit(
        info,
        as_json,
        f"{community}/{category} rule v{info['version']}: {points_per_kg} points/kg, "
        f"min {min_g} g, daily cap {cap}, from {info['effective_at']}",
    )


@rules_cli.command("list")
@click.argument("community")
@click.option("--category", default=None, help="Only this category.")
@json_option
def rules_list(community: str, category: str | None, as_json: bool) -> None:
    """List every version of COMMUNITY's points rules (* = in force now)."""
    from backend.services import rules

    with db.read() as s:
        table = rules.rules_table(s, community, category)
    lines = [
        f"{'*' if r['current'] else ' '} {r['category']:<10} v{r['version']:<3} "
        f"{r['points_per_kg']:>6} pts/kg  min {r['min_net_g']:>5} g  "
        f"cap {r['daily_cap'] if r['daily_cap'] is not None else '-':>6}  from {r['effective_at']}"
        for r in table
    ]
    emit(table, as_json, lines or [f"no rules in {community}"])


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
    from backend.services import registry

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
    from backend.services import registry

    with db.begin() as s:
        kiosk, changed = registry.disable_kiosk(s, kiosk_id)
        info = registry.kiosk_info(s, kiosk) | {"changed": changed}
    emit(info, as_json, f"kiosk {kiosk_id} {'disabled' if changed else 'was already disabled'}")


@kiosk_cli.command("list")
@click.option("--community", default=None, help="Only this community's kiosks.")
@json_option
def kiosk_list(community: str | None, as_json: bool) -> None:
    """List kiosks, their doors and when they were last seen."""
    from backend.services import registry

    with db.read() as s:
        infos = [registry.kiosk_info(s, k) for k in registry.list_kiosks(s, community)]
    lines = [
        f"{i['kiosk_id']}\t{i['community']}\t{'enabled' if i['enabled'] else 'DISABLED'}\t{i['name']}\t"
        + " ".join(f"{d['door']}={d['category']}" for d in i["doors"])
        + f"\tlast seen {i['last_seen_at'] or 'never'}"
        for i in infos
    ]
    emit(infos, as_json, lines or ["no kiosks"])


# --------------------------------------------------------------------- labels

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


# --------------------------------------------------------------------- ledger

ledger_cli = SortpointGroup("ledger", help="Check and show the points ledger.")


@ledger_cli.command("verify")
@json_option
def ledger_verify(as_json: bool) -> None:
    """Recompute every balance from the entries; exit 1 on any mismatch."""
    from backend.services import ledger

    with db.read() as s:  # one snapshot; deposits keep flowing meanwhile
        found = ledger.verify(s)
    mismatches = [_plain(m) for m in found]
    lines = [f"MISMATCH {m.describe() if hasattr(m, 'describe') else m}" for m in found]
    emit(
        {"ok": not mismatches, "mismatches": mismatches},
        as_json,
        lines or "ledger OK: every balance matches its entries",
    )
    if mismatches:
        if not as_json:
            click.echo(f"{len(mismatches)} mismatch(es) found", err=True)
        sys.exit(1)


def _plain(value) -> dict:
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "_asdict"):
        return value._asdict()
    return {"detail": str(value)}


@ledger_cli.command("show")
@click.argument("household")
@click.option(
    "--community", default=None, help="The household's community (needed if the code is ambiguous)."
)
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=50,
    show_default=True,
    help="How many of the latest entries.",
)
@json_option
def ledger_show(household: str, community: str | None, limit: int, as_json: bool) -> None:
    """Show HOUSEHOLD's balance and latest ledger entries."""
    from backend.services import statements

    with db.read() as s:
        info = statements.household_statement(s, household, community, limit)
    lines = [
        f"{info['community']}/{info['household']}: balance {info['balance']} points "
        f"({info['entry_count']} entries)"
    ]
    lines += [
        f"{e['id']:>8}  {e['created_at']}  {e['kind']:<10} {e['amount']:>+8} -> {e['balance_after']:>8}"
        f"  {e['reason']} [{e['source_type']}:{e['source_id']}]"
        for e in info["entries"]
    ]
    emit(info, as_json, lines)


# ----------------------------------------------------------------------- demo

demo_cli = SortpointGroup("demo", help="Seed a demo community.")


@demo_cli.command("seed")
@click.option(
    "--backend-url",
    default="http://127.0.0.1:5000",
    show_default=True,
    help="URL the demo kiosk should use, written to demo-kiosk.json.",
)
@click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write demo-kiosk.json and the labels (default: the instance folder).",
)
@json_option
def demo_seed(backend_url: str, out_dir: Path | None, as_json: bool) -> None:
    """Create the demo community once (re-running changes nothing) and write its files."""
    from backend import demo

    result = demo.seed(out_dir or Path(current_app.instance_path), backend_url)
    emit(result, as_json, demo.describe(result))


COMMAND_GROUPS = (
    db_cli,
    community_cli,
    building_cli,
    household_cli,
    rules_cli,
    kiosk_cli,
    labels_cli,
    ledger_cli,
    demo_cli,
)


def init_app(app) -> None:
    """Register the sortpoint commands on ``app.cli``."""
    for group in COMMAND_GROUPS:
        app.cli.add_command(group)


def main() -> None:
    """Entry point of the ``sortpoint`` console script."""
    from backend import create_app

    cli = FlaskGroup(
        create_app=lambda: create_app(),
        help="sortpoint backend: database, registry, rules, kiosks, labels, ledger, and `run`.",
    )
    cli.main(prog_name="sortpoint")
