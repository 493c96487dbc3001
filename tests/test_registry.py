"""Registry service: communities, buildings, households (and CSV import), kiosks."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from backend.core.db import db
from backend.core.errors import AlreadyExists, InvalidInput, NotFound
from backend.ledger import services as ledger
from backend.ledger.models import Account
from backend.registry import sealed
from backend.registry import services as registry
from backend.registry.models import Category, Household, Kiosk
from protocol.labels import (
    LabelClaims,
    encode_label,
    public_key_from_text,
    verify_label,
)


@pytest.fixture
def community(app):
    with db.begin() as s:
        registry.create_community(s, "oak", "Oak Gardens", "Asia/Shanghai")
        registry.add_building(s, "oak", "B1", "Building 1")
        registry.add_building(s, "oak", "B2", "Building 2")
    return "oak"


def _count(model, *where) -> int:
    with db.begin() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where))


def test_create_community_makes_a_working_keypair_and_default_categories(app):
    with db.begin() as s:
        c = registry.create_community(s, "elm", "Elm Court", "Europe/Berlin")
        codes = {cat.code: cat.max_plausible_g for cat in registry.list_categories(s, c)}
        private, public = sealed.label_signing_key(c), c.label_public_key
    assert set(codes) == set(registry.DEFAULT_CATEGORIES)
    assert all(g > 0 for g in codes.values())
    claims = LabelClaims("elm", "H1", "ABCDEF1234")
    payload = encode_label(private, claims)
    assert verify_label(payload, public_key_from_text(public)) == claims


def test_two_communities_get_different_keys(app):
    with db.begin() as s:
        a = registry.create_community(s, "a1", "A")
        b = registry.create_community(s, "b1", "B")
        assert sealed.label_signing_key(a).private_bytes_raw() != (
            sealed.label_signing_key(b).private_bytes_raw()
        )


def test_category_specs_override_and_add(app):
    with db.begin() as s:
        c = registry.create_community(
            s, "elm", "Elm", categories=["plastic:8000", "ewaste:3000", "cans"]
        )
        got = {cat.code: cat.max_plausible_g for cat in registry.list_categories(s, c)}
    assert got["plastic"] == 8000
    assert got["ewaste"] == 3000
    assert got["cans"] > 0
    assert got["paper"] == registry.DEFAULT_CATEGORIES["paper"][1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"slug": "Bad Slug"}, "community slug"),
        ({"slug": "x" * 41}, "community slug"),
        ({"timezone": "Mars/Olympus"}, "time zone"),
        ({"timezone": "../etc/passwd"}, "time zone"),
        ({"name": "  "}, "name"),
        ({"categories": ["plastic:0"]}, "maximum grams"),
        ({"categories": ["Plastic"]}, "category code"),
    ],
)
def test_create_community_refuses_bad_input(app, kwargs, message):
    args = {"slug": "ok", "name": "OK", "timezone": "Asia/Shanghai"} | kwargs
    with pytest.raises(InvalidInput, match=message):
        with db.begin() as s:
            registry.create_community(s, **args)
    assert _count(Category) == 0


def test_duplicate_community_refused(community):
    with pytest.raises(AlreadyExists):
        with db.begin() as s:
            registry.create_community(s, "oak", "Again")


def test_set_timezone_validates(community):
    with db.begin() as s:
        assert registry.set_timezone(s, "oak", "Europe/London").timezone == "Europe/London"
    with pytest.raises(InvalidInput):
        with db.begin() as s:
            registry.set_timezone(s, "oak", "Nowhere/Special")


def test_a_new_household_reads_a_zero_balance_until_its_first_entry(community):
    # the registry knows nothing of the ledger (one-way layers): the account
    # opens with the household's first entry, and reads as 0 before it
    with db.begin() as s:
        h = registry.add_household(s, "oak", "B1-101", "B1", "101")
        assert s.get(Account, h.id) is None
        assert ledger.read_accounts(s, [h.id]) == {h.id: ledger.AccountState(0, 0)}


def test_add_household_errors(community):
    with db.begin() as s:
        registry.add_household(s, "oak", "H1", "B1")
    with pytest.raises(AlreadyExists):
        with db.begin() as s:
            registry.add_household(s, "oak", "H1", "B2")
    with pytest.raises(NotFound, match="building"):
        with db.begin() as s:
            registry.add_household(s, "oak", "H2", "B9")
    with pytest.raises(InvalidInput, match="household code"):
        with db.begin() as s:
            registry.add_household(s, "oak", "H 3", "B1")
    with pytest.raises(NotFound, match="community"):
        with db.begin() as s:
            registry.add_household(s, "pine", "H4", "B1")


def test_duplicate_building_refused(community):
    with pytest.raises(AlreadyExists):
        with db.begin() as s:
            registry.add_building(s, "oak", "B1", "again")


# ------------------------------------------------------------------ CSV import


def test_csv_import_adds_every_row_with_accounts(community):
    text = "code,building,unit\nH1,B1,101\nH2,B1,102\nH3,B2,\n\n"
    rows = registry.parse_household_csv(text)
    ticks = []
    with db.begin() as s:
        assert registry.import_households(s, "oak", rows, progress=ticks.append) == 3
    assert sum(ticks) == 3
    assert _count(Household) == 3
    with db.begin() as s:
        assert registry.get_household(s, registry.get_community(s, "oak"), "H3").unit == ""


def test_csv_import_handles_bom_and_header_case(community):
    rows = registry.parse_household_csv("\ufeffCode,Building,Unit\r\nH1,B1,1\r\n")
    assert [(r.line, r.code, r.building, r.unit) for r in rows] == [(2, "H1", "B1", "1")]


@pytest.mark.parametrize(
    "text, line",
    [
        ("code,building,unit\nH1,B1,1\nH 2,B1,2\n", 3),
        ("code,building,unit\nH1,B1,1\nH2,,2\n", 3),
        ("code,building,unit\nH1,B1,1\nH2,B1,2\nH1,B2,3\n", 4),
        ("code,building,unit\nH1,B1,1,extra\n", 2),
        ("name,unit\nH1,1\n", 1),
    ],
)
def test_csv_parse_names_the_bad_line(text, line):
    with pytest.raises(InvalidInput, match=rf"^line {line}:"):
        registry.parse_household_csv(text)


def test_csv_import_is_all_or_nothing(community):
    with db.begin() as s:
        registry.add_household(s, "oak", "H3", "B1")
    # line 4 names an unknown building, line 5 an existing household
    for text, line in (
        ("code,building,unit\nH1,B1,1\nH2,B1,2\nH9,B7,3\n", 4),
        ("code,building,unit\nH1,B1,1\nH2,B1,2\nH4,B1,3\nH3,B1,4\n", 5),
    ):
        rows = registry.parse_household_csv(text)
        with pytest.raises(InvalidInput, match=rf"^line {line}:"):
            with db.begin() as s:
                registry.import_households(s, "oak", rows)
        assert _count(Household) == 1


def test_csv_import_of_many_rows_in_chunks(community):
    text = "code,building,unit\n" + "".join(f"H{i},B{1 + i % 2},{i}\n" for i in range(1234))
    with db.begin() as s:
        assert registry.import_households(s, "oak", registry.parse_household_csv(text)) == 1234
    assert _count(Household) == 1234
    with db.begin() as s:
        oak = registry.get_community(s, "oak")
        h = registry.get_household(s, oak, "H1233")
        assert (h.building_id, h.unit) == (registry.get_building(s, oak, "B2").id, "1233")


# ---------------------------------------------------------------------- kiosks


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("1=plastic", registry.DoorSpec(1, "plastic", registry.DEFAULT_DOOR_CAPACITY_G)),
        ("2=paper:40000", registry.DoorSpec(2, "paper", 40000)),
        (" 12=metal:1 ", registry.DoorSpec(12, "metal", 1)),
    ],
)
def test_parse_door_spec(spec, expected):
    assert registry.parse_door_spec(spec) == expected


@pytest.mark.parametrize(
    "spec",
    ["plastic", "1:plastic", "0=plastic", "1=plastic:0", "1=Plastic", "a=paper", "1=paper:-5"],
)
def test_parse_door_spec_refuses(spec):
    with pytest.raises(InvalidInput):
        registry.parse_door_spec(spec)


def test_register_kiosk(community):
    with db.begin() as s:
        k = registry.register_kiosk(s, "oak", "Gate", ["2=paper", "1=plastic:40000"])
        info = registry.kiosk_info(s, k, with_secret=True)
    assert info["kiosk_id"].startswith("k_") and len(info["kiosk_id"]) == 14
    assert info["kiosk_id"][2:].isalnum() and info["kiosk_id"] == info["kiosk_id"].lower()
    assert len(info["secret"]) >= 40
    assert info["doors"] == [
        {"door": 1, "category": "plastic", "capacity_g": 40000},
        {"door": 2, "category": "paper", "capacity_g": registry.DEFAULT_DOOR_CAPACITY_G},
    ]
    assert info["enabled"] is True


def test_kiosks_get_distinct_ids_and_secrets(community):
    with db.begin() as s:
        a = registry.register_kiosk(s, "oak", "A", ["1=paper"])
        b = registry.register_kiosk(s, "oak", "B", ["1=paper"])
        assert a.id != b.id and sealed.kiosk_secret(a) != sealed.kiosk_secret(b)


@pytest.mark.parametrize(
    "doors, error",
    [
        ([], InvalidInput),
        (["1=paper", "1=plastic"], InvalidInput),
        (["1=wood"], NotFound),
        (["1=paper:x"], InvalidInput),
    ],
)
def test_register_kiosk_refuses(community, doors, error):
    with pytest.raises(error):
        with db.begin() as s:
            registry.register_kiosk(s, "oak", "Gate", doors)
    assert _count(Kiosk) == 0


def test_disable_kiosk_and_list(community):
    with db.begin() as s:
        kid = registry.register_kiosk(s, "oak", "Gate", ["1=paper"]).id
    with db.begin() as s:
        kiosk, changed = registry.disable_kiosk(s, kid)
        assert changed and not kiosk.enabled and kiosk.disabled_at is not None
    with db.begin() as s:
        _, changed = registry.disable_kiosk(s, kid)
        assert not changed
        listed = registry.list_kiosks(s, "oak")
        assert [k.id for k in listed] == [kid] and not listed[0].enabled
    with pytest.raises(NotFound):
        with db.begin() as s:
            registry.disable_kiosk(s, "k_doesnotexist")


def test_find_household_across_communities(community):
    with db.begin() as s:
        registry.create_community(s, "elm", "Elm")
        registry.add_building(s, "elm", "B1", "B1")
        registry.add_household(s, "oak", "H1", "B1")
        registry.add_household(s, "elm", "H1", "B1")
        registry.add_household(s, "elm", "H2", "B1")
    with db.begin() as s:
        assert registry.find_household(s, "H2").code == "H2"
        assert (
            registry.find_household(s, "H1", "oak").community_id
            != registry.find_household(s, "H1", "elm").community_id
        )
        with pytest.raises(InvalidInput, match="several"):
            registry.find_household(s, "H1")
        with pytest.raises(NotFound):
            registry.find_household(s, "H9")
