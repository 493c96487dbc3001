"""Property and example tests of the pure indicator-frame parsers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hardware.scale_frames import (
    ContinuousFrame,
    FrameError,
    SicsReply,
    format_continuous,
    format_sics_weight,
    parse_continuous,
    parse_sics,
    to_grams,
)

GRAMS = st.integers(min_value=-999_999_999, max_value=999_999_999)
SEPARATORS = st.sampled_from([",", " ", ", ", ",  ", "  ", ";", ":"])


@given(
    grams=GRAMS,
    status=st.sampled_from(["ST", "US"]),
    kind=st.sampled_from(["GS", "NT"]),
    unit=st.sampled_from(["kg", "g"]),
)
@example(grams=12345, status="ST", kind="GS", unit="kg")
def test_formatted_continuous_frame_parses_back(grams, status, kind, unit):
    frame = parse_continuous(format_continuous(grams, status=status, kind=kind, unit=unit))
    assert frame == ContinuousFrame(status, kind, grams)
    assert frame.stable is (status == "ST")


@given(
    grams=GRAMS,
    sep1=SEPARATORS,
    sep2=SEPARATORS,
    sign_gap=st.sampled_from(["", " ", "  "]),
    zero_pad=st.integers(0, 4),
    unit_gap=st.sampled_from(["", " "]),
    framing=st.sampled_from(["", "\r", "\n", "\r\n", "\x02", "\x00"]),
    explicit_plus=st.booleans(),
)
def test_vendor_spacing_variants_parse_to_the_same_grams(
    grams, sep1, sep2, sign_gap, zero_pad, unit_gap, framing, explicit_plus
):
    magnitude = f"{Decimal(abs(grams)) / 1000:.3f}".zfill(zero_pad + 5)
    sign = "-" if grams < 0 else ("+" if explicit_plus else "")
    line = f"ST{sep1}GS{sep2}{sign}{sign_gap}{magnitude}{unit_gap}kg{framing}"
    assert parse_continuous(line).grams == grams


@given(grams=GRAMS, stable=st.booleans(), unit=st.sampled_from(["g", "kg"]))
def test_formatted_sics_weight_parses_back(grams, stable, unit):
    reply = parse_sics(format_sics_weight(grams, stable=stable, unit=unit))
    assert reply == SicsReply("S", "S" if stable else "D", grams)


@given(kilograms=st.decimals(min_value=-(10**6), max_value=10**6, places=3, allow_nan=False))
def test_kilograms_with_three_decimals_are_exact_grams(kilograms):
    line = f"ST,GS,{kilograms:+.3f}kg"
    assert parse_continuous(line).grams == int(kilograms * 1000)


@given(data=st.binary(max_size=120))
@example(data=b"ST,GS,+ 1" + b"9" * 80 + b"kg")
@example(data=b"S S 1e999 g")
@example(data=b"ST,GS,+ NaNkg")
def test_random_bytes_raise_only_frame_error(data):
    for parse in (parse_continuous, parse_sics):
        try:
            result = parse(data)
        except FrameError:
            continue
        assert isinstance(result, (ContinuousFrame, SicsReply))
        assert result.grams is None or isinstance(result.grams, int)


@given(text=st.text(max_size=80))
def test_random_text_raises_only_frame_error(text):
    for parse in (lambda t: parse_continuous(t, default_unit="g"), parse_sics):
        try:
            result = parse(text)
        except FrameError:
            continue
        assert isinstance(result, (ContinuousFrame, SicsReply))


@given(
    prefix=st.sampled_from(["ST", "US", "S S", "Z", "OL"]), junk=st.binary(min_size=1, max_size=20)
)
def test_frames_with_trailing_junk_do_not_crash(prefix, junk):
    for parse in (parse_continuous, parse_sics):
        try:
            result = parse(prefix.encode() + b" 1.000kg" + junk)
        except FrameError:
            continue
        assert isinstance(result, (ContinuousFrame, SicsReply))
        assert result.grams is None or isinstance(result.grams, int)


# -- examples -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("ST,GS,+ 12.345kg", ContinuousFrame("ST", "GS", 12345)),
        ("ST,GS,  18.000kg", ContinuousFrame("ST", "GS", 18000)),
        ("US,NT,-  0.200kg", ContinuousFrame("US", "NT", -200)),
        ("st,gs,+0.5kg", ContinuousFrame("ST", "GS", 500)),
        ("OL,GS,+ --.---kg", ContinuousFrame("OL", "", None)),
        ("OL", ContinuousFrame("OL", "", None)),
        ("ST,+  7.000 kg", ContinuousFrame("ST", "", 7000)),
        ("ST,GS,+ 1.000lb", ContinuousFrame("ST", "GS", 454)),  # 453.59237
        ("ST,GS,+ 2.5 lbs", ContinuousFrame("ST", "GS", 1134)),  # 1133.980925
        ("ST,GS,+ 1.0oz", ContinuousFrame("ST", "GS", 28)),
        ("ST,GS,+ 0.0025kg", ContinuousFrame("ST", "GS", 2)),  # 2.5 g, half to even
        ("ST,GS,+ 0.0035kg", ContinuousFrame("ST", "GS", 4)),  # 3.5 g, half to even
    ],
)
def test_continuous_examples(line, expected):
    assert parse_continuous(line) == expected


@pytest.mark.parametrize(
    "line",
    [
        "",
        "\r\n",
        "ST,GS,+ 12.345",
        "XX,GS,+ 1.000kg",
        "ST,GS,+ 1.000 stone",
        "ST,GS,++1kg",
        "ST,GS,+ 1.2.3kg",
        "OLD,GS,+ 1kg",
        "ST,GS,+ 1kg\x07",
        "ST,GS,+ " + "1" * 70 + "kg",
    ],
)
def test_continuous_rejects(line):
    with pytest.raises(FrameError):
        parse_continuous(line)


def test_bare_number_needs_a_unit():
    assert parse_continuous("  1234 ", default_unit="g") == ContinuousFrame("", "", 1234)
    assert parse_continuous("-0.250", default_unit="kg").grams == -250
    assert parse_continuous("1.5 kg", default_unit="g").grams == 1500  # the frame's unit wins
    with pytest.raises(FrameError, match="no unit"):
        parse_continuous("1234")


@pytest.mark.parametrize(
    "line, expected",
    [
        ("S S     100.00 g", SicsReply("S", "S", 100)),
        ("S D       1.234 kg", SicsReply("S", "D", 1234)),
        ("S S    -0.20 g", SicsReply("S", "S", 0)),  # -0.2 g rounds to zero
        ("S S  -   5.00 g", SicsReply("S", "S", -5)),
        ("S S  250 mg", SicsReply("S", "S", 0)),
        ("S I", SicsReply("S", "I")),
        ("S +", SicsReply("S", "+")),
        ("S -", SicsReply("S", "-")),
        ("Z A", SicsReply("Z", "A")),
        ("Z I", SicsReply("Z", "I")),
        ("Z +", SicsReply("Z", "+")),
        ("ES", SicsReply("ES", "ES")),
        ("ET\r\n", SicsReply("ET", "ET")),
        ("EL", SicsReply("EL", "EL")),
    ],
)
def test_sics_examples(line, expected):
    reply = parse_sics(line)
    assert reply == expected
    assert reply.is_error is (expected.command in ("ES", "ET", "EL"))


@pytest.mark.parametrize(
    "line", ["S", "S A", "S S g", 'I4 A "123"', "Z", "ZA", "E", "S S 1 furlong"]
)
def test_sics_rejects(line):
    with pytest.raises(FrameError):
        parse_sics(line)


def test_to_grams_is_exact_where_floats_are_not():
    assert int(float("1.005") * 1000) == 1004  # the reason for Decimal
    assert to_grams("+", "1.005", "kg", None) == 1005
    assert to_grams("+", "12.345", "kg", None) == 12345
    assert to_grams("-", "0.001", "kg", None) == -1
    with pytest.raises(FrameError, match="unsupported unit"):
        to_grams(None, "1", "stone", None)
