"""The request-signature scheme of docs/protocol.md, as pure code."""

import hashlib
import hmac

from protocol import signing


def test_string_to_sign_has_five_lines_and_body_hash():
    body = b'{"deposits": []}'
    message = signing.string_to_sign("post", "/api/v1/deposits?x=1", "1700000000", "n" * 16, body)
    lines = message.decode().split("\n")
    assert lines == [
        "POST",
        "/api/v1/deposits?x=1",
        "1700000000",
        "n" * 16,
        hashlib.sha256(body).hexdigest(),
    ]


def test_signature_is_lowercase_hex_hmac_keyed_with_utf8_secret():
    secret = "s3cr\u00e9t"
    sig = signing.sign(secret, "GET", "/p", "1", "abcdefghijklmnop", b"")
    expected = hmac.new(
        secret.encode("utf-8"),
        b"GET\n/p\n1\nabcdefghijklmnop\n" + hashlib.sha256(b"").hexdigest().encode(),
        hashlib.sha256,
    ).hexdigest()
    assert sig == expected and sig == sig.lower() and len(sig) == 64


def test_any_change_changes_the_signature():
    base = ("k", "POST", "/a", "100", "0123456789abcdef", b"{}")
    sig = signing.sign(*base)
    variants = [
        ("K", "POST", "/a", "100", "0123456789abcdef", b"{}"),
        ("k", "GET", "/a", "100", "0123456789abcdef", b"{}"),
        ("k", "POST", "/b", "100", "0123456789abcdef", b"{}"),
        ("k", "POST", "/a", "101", "0123456789abcdef", b"{}"),
        ("k", "POST", "/a", "100", "0123456789abcdeX", b"{}"),
        ("k", "POST", "/a", "100", "0123456789abcdef", b"{ }"),
    ]
    for variant in variants:
        assert signing.sign(*variant) != sig


def test_signed_headers_carry_kiosk_timestamp_nonce_signature():
    headers = signing.signed_headers(
        "k_1", "sec", "POST", "/x", b"body", now=1234.9, nonce="z" * 20
    )
    assert headers[signing.HEADER_KIOSK] == "k_1"
    assert headers[signing.HEADER_TIMESTAMP] == "1234"
    assert headers[signing.HEADER_NONCE] == "z" * 20
    assert headers[signing.HEADER_SIGNATURE] == signing.sign(
        "sec", "POST", "/x", "1234", "z" * 20, b"body"
    )
    fresh = signing.signed_headers("k_1", "sec", "POST", "/x", b"body")
    assert len(fresh[signing.HEADER_NONCE]) >= signing.MIN_NONCE_LEN


def test_signatures_match_is_exact():
    assert signing.signatures_match("ab" * 32, "ab" * 32)
    assert not signing.signatures_match("ab" * 32, "AB" * 32)
    assert not signing.signatures_match("ab" * 32, "\u00e9")
