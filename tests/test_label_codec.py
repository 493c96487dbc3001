"""Property tests of the signed label codec (protocol/labels.py)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ProtocolError
from protocol.labels import (
    COMMUNITY_RE,
    HOUSEHOLD_RE,
    MAX_PAYLOAD_LEN,
    SERIAL_RE,
    LabelClaims,
    LabelFormatError,
    LabelSignatureError,
    _parse_parts,
    encode_label,
    new_serial,
    parse_label,
    verify_label,
)

# fixed keys keep every run (and every shrink) deterministic
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))

claims_st = st.builds(
    LabelClaims,
    community=st.from_regex(COMMUNITY_RE, fullmatch=True),
    household=st.from_regex(HOUSEHOLD_RE, fullmatch=True),
    serial=st.from_regex(SERIAL_RE, fullmatch=True),
)
# printable ASCII, control characters, and a few non-ASCII look-alikes
replacement_st = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=127),
    st.sampled_from(["\u00a0", "\u0430", "\u2024", "\uff0e", "\u00e9", "\U0001f600"]),
)


def draw_position(data, payload: str) -> int:
    """Draw a position in ``payload``; the last one often, as it carries the signature's
    unused low bits."""
    last = len(payload) - 1
    return data.draw(st.one_of(st.integers(0, last), st.just(last)), label="index")


@given(claims_st)
def test_round_trip(claims):
    payload = encode_label(KEY, claims)
    assert verify_label(payload, KEY.public_key()) == claims
    assert parse_label(payload)[0] == claims


@given(claims_st)
def test_payload_is_short_ascii(claims):
    payload = encode_label(KEY, claims)
    assert payload.isascii() and payload.isprintable()
    assert len(payload) <= MAX_PAYLOAD_LEN
    assert " " not in payload


@settings(max_examples=500)
@given(claims_st, st.data())
def test_any_single_character_change_is_refused(claims, data):
    payload = encode_label(KEY, claims)
    index = draw_position(data, payload)
    new_char = data.draw(replacement_st.filter(lambda c: c != payload[index]), label="char")
    tampered = payload[:index] + new_char + payload[index + 1 :]
    with pytest.raises(ProtocolError):
        verify_label(tampered, KEY.public_key())


def test_every_single_character_change_of_one_payload_is_refused():
    """Exhaustive for one payload: every position, every printable ASCII character."""
    payload = encode_label(KEY, LabelClaims("oak-gardens", "B1-101", "7XK3M9QPZA"))
    alphabet = [chr(c) for c in range(32, 127)]
    accepted = []
    for index, old in enumerate(payload):
        for new in alphabet:
            if new == old:
                continue
            tampered = payload[:index] + new + payload[index + 1 :]
            try:
                verify_label(tampered, KEY.public_key())
            except ProtocolError:
                continue
            accepted.append(tampered)
    assert accepted == []


@given(claims_st)
def test_another_communitys_key_does_not_verify(claims):
    with pytest.raises(LabelSignatureError):
        verify_label(encode_label(OTHER_KEY, claims), KEY.public_key())


@given(claims_st, claims_st)
def test_a_signature_cannot_be_moved_to_other_claims(claims, other):
    if other == claims:
        return
    signature = encode_label(KEY, claims).rsplit(".", 1)[1]
    body = f"SP1.{other.community}.{other.household}.{other.serial}"
    with pytest.raises(LabelSignatureError):
        verify_label(f"{body}.{signature}", KEY.public_key())


@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_parser(text):
    try:
        claims, signature = parse_label(text)
    except LabelFormatError:
        return
    # anything the parser accepts is a canonical SP1 payload naming exactly these claims
    assert text.strip().startswith(f"SP1.{claims.community}.{claims.household}.{claims.serial}.")
    assert len(signature) == 64


@pytest.mark.parametrize(
    "bad", ["ab", "AB", "I0000000", "L0000000", "O0000000", "U0000000", "0" * 21]
)
def test_serials_outside_crockford_are_refused(bad):
    with pytest.raises(LabelFormatError):
        encode_label(KEY, LabelClaims("c", "h", bad))


def test_new_serials_match_the_format():
    serials = {new_serial() for _ in range(200)}
    assert len(serials) == 200
    assert all(SERIAL_RE.fullmatch(s) for s in serials)


def _parsed(parse, payload):
    try:
        return parse(payload)
    except LabelFormatError as exc:
        return type(exc), str(exc)


@settings(max_examples=500)
@given(claims_st, st.data())
def test_the_one_match_parse_answers_as_the_part_by_part_checks(claims, data):
    """parse_label's single regex accepts exactly what _parse_parts accepts, and nothing else.

    Whitespace around a label is refused by both (a reader removes it, not the codec).
    """
    payload = encode_label(KEY, claims)
    index = draw_position(data, payload)
    new = data.draw(
        st.one_of(replacement_st, st.just("."), st.just(""), st.text(max_size=3)), label="new"
    )
    for text in (payload, payload[:index] + new + payload[index + 1 :], f" {payload}\n"):
        if len(text) > MAX_PAYLOAD_LEN or not text.isascii():
            continue
        assert _parsed(parse_label, text) == _parsed(_parse_parts, text)


def test_every_last_signature_character_parses_as_the_part_by_part_checks():
    """The signature's canonical last characters (A, Q, g, w) and every other one."""
    payload = encode_label(KEY, LabelClaims("oak-gardens", "B1-101", "7XK3M9QPZA"))
    for c in range(32, 127):
        text = payload[:-1] + chr(c)
        assert _parsed(parse_label, text) == _parsed(_parse_parts, text)
