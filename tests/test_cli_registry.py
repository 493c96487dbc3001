"""sortpoint community / building / household / rules / kiosk commands."""

from __future__ import annotations

import click
import pytest

from backend.cli import COMMAND_GROUPS
from tests.clitools import fails, run, run_json, setup_community


def _all_commands():
    for group in COMMAND_GROUPS:
        for name in group.commands:
            yield group.name, name


@pytest.mark.parametrize("group, command", list(_all_commands()))
def test_every_command_has_help(runner, group, command):
    result = run(runner, group, command, "--help")
    assert "Usage:" in result.stdout
    cmd = next(g for g in COMMAND_GROUPS if g.name == group).commands[command]
    assert cmd.help and cmd.help.strip()
    for param in cmd.params:
        if isinstance(param, click.Option):
            assert param.help, f"{group} {command} {param.opts} has no help"


@pytest.mark.parametrize("group, command", list(_all_commands()))
def test_commands_that_print_take_json(group, command):
    cmd = next(g for g in COMMAND_GROUPS if g.name == group).commands[command]
    options = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
    assert "--json" in options or (group, command) == ("db", "downgrade")


def test_community_create_text_and_json(runner):
    out = run(runner, "community", "create", "oak", "--name", "Oak Gardens").stdout
    assert "community oak (Oak Gardens, Asia/Shanghai)" in out
    info = run_json(
        runner,
        "community",
        "create",
        "elm",
        "--name",
        "Elm",
        "--timezone",
        "Europe/Berlin",
        "--category",
        "plastic:8000",
        "--category",
        "ewaste:3000",
    )
    assert info["slug"] == "elm" and info["timezone"] == "Europe/Berlin"
    cats = {c["code"]: c["max_plausible_g"] for c in info["categories"]}
    assert cats["plastic"] == 8000 and cats["ewaste"] == 3000 and "paper" in cats
    assert len(info["label_public_key"]) == 43
    listed = run_json(runner, "community", "list")
    assert [c["slug"] for c in listed] == ["elm", "oak"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["community", "create", "Bad Slug", "--name", "x"], "invalid community slug"),
        (
            ["community", "create", "oak", "--name", "x", "--timezone", "Moon/Base"],
            "unknown time zone",
        ),
        (
            ["community", "create", "oak", "--name", "x", "--category", "plastic:zero"],
            "maximum grams",
        ),
    ],
)
def test_community_create_errors_are_one_line(runner, args, message):
    assert message in fails(runner, *args)


def test_duplicates_and_unknowns_are_one_line_errors(runner):
    setup_community(runner)
    assert "exists already" in fails(runner, "community", "create", "oak", "--name", "again")
    assert "exists already" in fails(runner, "building", "add", "oak", "B1", "--name", "again")
    assert "exists already" in fails(runner, "household", "add", "oak", "H1", "--building", "B1")
    assert "no building 'B7'" in fails(runner, "household", "add", "oak", "H9", "--building", "B7")
    assert "no community 'pine'" in fails(runner, "building", "add", "pine", "B1", "--name", "x")


def test_set_timezone(runner):
    run(runner, "community", "create", "oak", "--name", "Oak")
    assert (
        run_json(runner, "community", "set-timezone", "oak", "America/New_York")["timezone"]
        == "America/New_York"
    )
    assert "unknown time zone" in fails(runner, "community", "set-timezone", "oak", "Nowhere/Land")


def test_household_add_json(runner):
    run(runner, "community", "create", "oak", "--name", "Oak")
    run(runner, "building", "add", "oak", "B1", "--name", "Building 1")
    info = run_json(
        runner, "household", "add", "oak", "B1-101", "--building", "B1", "--unit", "101"
    )
    assert info == {
        "community": "oak",
        "code": "B1-101",
        "building": "B1",
        "unit": "101",
        "balance": 0,
    }


def test_household_import(runner, tmp_path):
    setup_community(runner)
    good = tmp_path / "good.csv"
    good.write_text("code,building,unit\nH3,B1,3\nH4,B1,4\n", encoding="utf-8")
    result = run(runner, "household", "import", "oak", str(good), "--json")
    assert result.stdout.strip().startswith("{")  # the progress bar went to stderr
    assert "importing households" in result.stderr
    assert '"imported": 2' in result.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("code,building,unit\nH5,B1,5\nH6,B9,6\n", encoding="utf-8")
    assert fails_import(runner, bad).endswith("line 3: no building 'B9' in 'oak'")
    assert "ledger" not in run(runner, "ledger", "show", "H4", "--community", "oak").stderr
    assert "no household 'H5'" in fails(runner, "ledger", "show", "H5", "--community", "oak")


def fails_import(runner, path) -> str:
    result = run(runner, "household", "import", "oak", str(path), exit_code=1)
    assert result.stdout == "" and "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "code,building,unit\nH5,B1,5\nH6\n",
            "line 3: the 'building' column is missing (the row has 1 of the header's 3 fields:"
            " code,building,unit)",
        ),
        (
            "building,code,unit\nB1,H5,5\nB1\n",
            "line 3: the 'code' column is missing (the row has 1 of the header's 3 fields:"
            " building,code,unit)",
        ),
    ],
)
def test_household_import_names_a_missing_column(runner, tmp_path, text, message):
    setup_community(runner)
    short = tmp_path / "short.csv"
    short.write_text(text, encoding="utf-8")
    assert fails_import(runner, short) == f"Error: {message}"
    assert "no household 'H5'" in fails(runner, "ledger", "show", "H5", "--community", "oak")


def test_household_import_takes_a_row_without_its_last_optional_unit(runner, tmp_path):
    setup_community(runner)
    path = tmp_path / "no-unit.csv"
    path.write_text("code,building,unit\nH5,B1\n", encoding="utf-8")
    assert run_json(runner, "household", "import", "oak", str(path))["imported"] == 1


def test_household_import_rejects_non_utf8(runner, tmp_path):
    setup_community(runner)
    path = tmp_path / "gbk.csv"
    path.write_bytes("code,building,unit\nH3,B1,三\n".encode("gbk"))
    assert "not UTF-8" in fails(runner, "household", "import", "oak", str(path))


def test_rules_set_and_list(runner):
    run(runner, "community", "create", "oak", "--name", "Oak")
    v1 = run_json(
        runner,
        "rules",
        "set",
        "oak",
        "--category",
        "plastic",
        "--points-per-kg",
        "30",
        "--min-g",
        "50",
        "--daily-cap",
        "200",
        "--effective-at",
        "2025-01-01T00:00:00+08:00",
    )
    assert (v1["version"], v1["points_per_kg"], v1["min_net_g"], v1["daily_cap"]) == (
        1,
        30,
        50,
        200,
    )
    assert v1["effective_at"] == "2024-12-31T16:00:00+00:00"
    out = run(
        runner, "rules", "set", "oak", "--category", "plastic", "--points-per-kg", "35"
    ).stdout
    assert "rule v2: 35 points/kg, min 0 g, daily cap none" in out
    table = run_json(runner, "rules", "list", "oak")
    assert [(r["version"], r["current"]) for r in table] == [(1, False), (2, True)]
    text = run(runner, "rules", "list", "oak").stdout.splitlines()
    assert text[1].startswith("* plastic")
    assert "only ever appended" in fails(
        runner,
        "rules",
        "set",
        "oak",
        "--category",
        "plastic",
        "--points-per-kg",
        "1",
        "--effective-at",
        "2025-01-01T00:00:00Z",
    )
    assert "no category 'wood'" in fails(
        runner, "rules", "set", "oak", "--category", "wood", "--points-per-kg", "1"
    )


@pytest.mark.parametrize(
    "extra",
    [
        ["--points-per-kg", "-1"],
        ["--points-per-kg", "x"],
        ["--points-per-kg", "5", "--effective-at", "2025-01-01T00:00"],
        ["--points-per-kg", "5", "--effective-at", "yesterday"],
    ],
)
def test_rules_set_usage_errors(runner, extra):
    run(runner, "community", "create", "oak", "--name", "Oak")
    result = run(runner, "rules", "set", "oak", "--category", "plastic", *extra, exit_code=2)
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_kiosk_register_disable_list(runner):
    run(runner, "community", "create", "oak", "--name", "Oak")
    text = run(
        runner,
        "kiosk",
        "register",
        "oak",
        "Gate A",
        "--door",
        "1=plastic:40000",
        "--door",
        "2=paper",
    ).stdout
    lines = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    assert lines["kiosk_id"].startswith("k_") and len(lines["secret"]) >= 40
    info = run_json(runner, "kiosk", "register", "oak", "Gate B", "--door", "1=metal")
    assert info["doors"] == [{"door": 1, "category": "metal", "capacity_g": 50000}]
    assert info["label_public_key"] and info["secret"] != lines["secret"]
    listed = run_json(runner, "kiosk", "list")
    assert {k["kiosk_id"] for k in listed} == {lines["kiosk_id"], info["kiosk_id"]}
    assert all("secret" not in k for k in listed)
    assert run_json(runner, "kiosk", "disable", info["kiosk_id"])["enabled"] is False
    assert "already disabled" in run(runner, "kiosk", "disable", info["kiosk_id"]).stdout
    assert "DISABLED" in run(runner, "kiosk", "list", "--community", "oak").stdout
    assert "no kiosk" in fails(runner, "kiosk", "disable", "k_nope")
    assert "door numbers repeat" in fails(
        runner, "kiosk", "register", "oak", "x", "--door", "1=paper", "--door", "1=metal"
    )
    assert "no category 'wood'" in fails(
        runner, "kiosk", "register", "oak", "x", "--door", "1=wood"
    )
