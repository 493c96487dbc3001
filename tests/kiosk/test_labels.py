"""Offline label verification: genuine, forged, tampered, foreign, revoked."""

from __future__ import annotations

import pytest

from kiosk.labels import LabelRevoked, LabelVerifier, LabelWrongCommunity
from protocol.labels import (
    LabelClaims,
    LabelError,
    LabelFormatError,
    LabelSignatureError,
    encode_label,
    generate_private_key,
    public_key_to_text,
)

KEY = generate_private_key()
OTHER_KEY = generate_private_key()


def label(
    community: str = "maple", household: str = "B1-101", serial: str = "ABCDEF1234", key=KEY
) -> str:
    return encode_label(key, LabelClaims(community, household, serial))


@pytest.fixture
def verifier():
    return LabelVerifier(public_key_to_text(KEY), "maple", revoked_serials=["RVKD000001"])


def test_genuine_label_gives_its_claims(verifier):
    assert verifier.verify(label()) == LabelClaims("maple", "B1-101", "ABCDEF1234")
    # scanners may add a line ending
    assert verifier.verify(label() + "\r\n").serial == "ABCDEF1234"


def test_label_signed_by_another_key_is_forged(verifier):
    with pytest.raises(LabelSignatureError):
        verifier.verify(label(key=OTHER_KEY))


def test_tampered_household_fails_the_signature(verifier):
    tampered = label().replace("B1-101", "B1-102")
    with pytest.raises(LabelSignatureError):
        verifier.verify(tampered)


def test_label_of_another_community_is_named_as_such(verifier):
    with pytest.raises(LabelWrongCommunity, match="'oak'") as info:
        verifier.verify(label(community="oak", key=OTHER_KEY))
    assert info.value.code == "label_wrong_community"
    assert isinstance(info.value, LabelError)


def test_revoked_serial_is_refused(verifier):
    with pytest.raises(LabelRevoked) as info:
        verifier.verify(label(serial="RVKD000001"))
    assert info.value.code == "label_revoked"


def test_forged_label_with_a_revoked_serial_reports_the_forgery(verifier):
    with pytest.raises(LabelSignatureError):
        verifier.verify(label(serial="RVKD000001", key=OTHER_KEY))


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "hello",
        "SP1.maple.B1.ABCDEF.xyz",
        "SP2." + "a" * 20,
        "SP1.maple.B1-101.ABCDEF1234." + "é" * 86,
    ],
)
def test_garbage_is_a_format_error(verifier, payload):
    with pytest.raises(LabelFormatError):
        verifier.verify(payload)


def test_from_backend_config_prefers_the_fetched_key_and_revocations():
    cached = {
        "label_public_key": public_key_to_text(KEY),
        "community": "maple",
        "revoked_serials": ["ABCDEF1234"],
    }
    verifier = LabelVerifier.from_backend_config(
        cached, community="maple", fallback_public_key=public_key_to_text(OTHER_KEY)
    )
    with pytest.raises(LabelRevoked):
        verifier.verify(label())
    assert verifier.verify(label(serial="ZZZZZZ9999")).household == "B1-101"


def test_from_backend_config_falls_back_to_the_bootstrap_key():
    verifier = LabelVerifier.from_backend_config(
        None, community="maple", fallback_public_key=public_key_to_text(KEY)
    )
    assert verifier.verify(label()).serial == "ABCDEF1234"
    with pytest.raises(ValueError, match="no label public key"):
        LabelVerifier.from_backend_config({}, community="maple", fallback_public_key=None)


def test_bad_public_key_text_is_a_value_error():
    with pytest.raises(ValueError, match="label public key"):
        LabelVerifier("not-a-key", "maple")
