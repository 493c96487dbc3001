"""Kiosk secrets and label keys sealed at rest (backend.core.secrets, backend.registry.sealed, Alembic 0004).

A database dump holds neither a kiosk secret nor a label key; signed requests
and labels work as before; rotation re-seals under the newest key; missing or
wrong keys fail with a message naming the setting, never a traceback.
"""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import inspect, select, text

from backend import create_app, migrations
from backend.core import secrets
from backend.core.db import db, make_engine
from backend.core.secrets import Keyring, SecretsError
from backend.registry import labels as labels_service
from backend.registry import sealed
from backend.registry import services as registry
from backend.registry.models import Community, Kiosk
from protocol import labels as plabels
from tests.clitools import fails
from tests.factories import signed

CONFIG = "/api/v1/kiosk/config"


def _keyring(*keys: str) -> Keyring:
    return Keyring(tuple(secrets.parse_keys(",".join(keys), "test")), "test")


# ------------------------------------------------------------------- the format


def test_a_sealed_value_opens_only_in_its_own_context():
    ring = _keyring(secrets.new_key())
    stored = ring.seal("the secret", "kiosks.secret:k_a")
    assert stored.startswith(f"spenc1:{ring.primary_id}:") and "the secret" not in stored
    assert ring.open(stored, "kiosks.secret:k_a") == "the secret"
    assert ring.seal("the secret", "kiosks.secret:k_a") != stored  # a fresh nonce each time
    with pytest.raises(SecretsError, match="kiosks.secret:k_b does not open"):
        ring.open(stored, "kiosks.secret:k_b")  # copied into another row


def test_newest_key_seals_and_every_key_opens():
    old, new = secrets.new_key(), secrets.new_key()
    before = _keyring(old).seal("x", "c")
    both = _keyring(new, old)
    assert both.open(before, "c") == "x" and not both.is_current(before)
    after = both.seal("x", "c")
    assert both.is_current(after) and secrets.sealed_key_id(after) == both.primary_id
    with pytest.raises(SecretsError, match=f"sealed under key {both.primary_id}, which is not"):
        _keyring(old).open(after, "c")


def test_altered_and_clear_values_are_refused_by_name():
    ring = _keyring(secrets.new_key())
    stored = ring.seal("x", "c")
    flipped = stored[:-2] + ("A" if stored[-2] != "A" else "B") + stored[-1]
    with pytest.raises(SecretsError, match="altered"):
        ring.open(flipped, "c")
    with pytest.raises(SecretsError, match="in clear.*sortpoint secrets rotate"):
        ring.open("Zq3v8-a-secret-in-clear", "c")


def test_keys_parse_from_text_and_bad_ones_are_named_not_echoed():
    a, b = secrets.new_key(), Fernet.generate_key().decode()  # a Fernet key is a key too
    ring = Keyring(tuple(secrets.parse_keys(f"# comment\n{a}\n\n{b}  # old\n", "F")), "F")
    assert ring.ids == [secrets.key_id(base64.urlsafe_b64decode(a + "=")), ring.ids[1]]
    with pytest.raises(SecretsError, match=r"SORTPOINT_SECRET_KEYS: key 2 is not a key") as exc:
        secrets.parse_keys(f"{a},not-a-key-but-a-password", "SORTPOINT_SECRET_KEYS")
    assert "password" not in exc.value.message and a not in exc.value.message
    with pytest.raises(SecretsError, match="holds no key"):
        secrets.parse_keys("# nothing\n", "F")


def test_the_migration_spells_the_same_format():
    """Alembic 0004 seals without importing this module: both must agree."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "rev0004", migrations.MIGRATIONS_DIR / "versions" / "0004_seal_secrets.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    key = os.urandom(32)
    assert module._key_id(key) == secrets.key_id(key)
    assert module._SEALED.pattern == secrets._SEALED_RE.pattern
    assert [p[3] for p in module._PLACES] == [
        sealed.kiosk_secret_context(""),
        sealed.label_key_context(""),
    ]


# ------------------------------------------------------------------ the settings


# ------------------------------------------------------------ the database dump


def _world(app):
    with db.begin() as s:
        community = registry.create_community(s, "oak", "Oak")
        registry.add_building(s, "oak", "B1", "B1")
        registry.add_household(s, "oak", "H1", "B1")
        kiosk = registry.register_kiosk(s, "oak", "Gate", ["1=paper"])
        secret = registry.kiosk_info(s, kiosk, with_secret=True)["secret"]
        key = sealed.label_signing_key(community)
        payloads = [lab.payload for lab in labels_service.issue_labels(s, "oak", "H1", 2)]
    return kiosk.id, secret, key, payloads


def _dump(engine) -> str:
    """Every row of every table, as text: what a database dump holds."""
    out = []
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                out.append(repr(tuple(row)))
    return "\n".join(out)


def test_a_database_dump_holds_no_kiosk_secret_and_no_label_key(app):
    kiosk_id, secret, key, _ = _world(app)
    dump = _dump(db.engine)
    seed = key.private_bytes_raw()
    for clear in (
        secret,
        plabels.private_key_to_text(key),
        seed.hex(),
        base64.b64encode(seed).decode(),
    ):
        assert clear not in dump
    with db.engine.connect() as conn:
        stored_secret = conn.execute(text("SELECT secret FROM kiosks")).scalar_one()
        stored_key = conn.execute(text("SELECT label_private_key FROM communities")).scalar_one()
    assert secrets.is_sealed(stored_secret) and secrets.is_sealed(stored_key)


def test_a_request_signed_with_the_real_secret_still_authenticates(app, client):
    kiosk_id, secret, _, _ = _world(app)
    assert client.get(CONFIG, headers=signed(kiosk_id, secret, "GET", CONFIG)).status_code == 200
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT secret FROM kiosks")).scalar_one()
    stolen = client.get(CONFIG, headers=signed(kiosk_id, stored, "GET", CONFIG))
    assert stolen.status_code == 401  # the stored value is no key


def test_labels_verify_with_the_published_key(app):
    _, _, _, payloads = _world(app)
    with db.begin() as s:
        public = registry.get_community(s, "oak").label_public_key
    for payload in payloads:
        assert plabels.verify_label(payload, plabels.public_key_from_text(public)).household == "H1"


# ------------------------------------------------------------------- rotation


def _app_with_keys(database_url: str, *keys: str):
    return create_app(
        {"DATABASE_URL": database_url, "TESTING": True, "SECRET_KEYS": ",".join(keys)}
    )


def test_rotation_reseals_under_the_newest_key_and_everything_keeps_working(app, database_url):
    kiosk_id, secret, _, payloads = _world(app)
    old = os.environ["SORTPOINT_SECRET_KEYS"]
    new = secrets.new_key()
    both = _app_with_keys(database_url, new, old)
    client = both.test_client()
    with both.app_context():
        # before rotating: the old key still opens what it sealed
        assert (
            client.get(CONFIG, headers=signed(kiosk_id, secret, "GET", CONFIG)).status_code == 200
        )
        report = sealed.rotate_secrets().as_dict()
        assert report["resealed"] == 2 and report["was_clear"] == 0
        assert report["sealed_under"] == {secrets.key_id(secrets._b64decode(old)): 2}
        again = sealed.rotate_secrets().as_dict()
        assert again["resealed"] == 0 and again["sealed_under"] == {report["key_id"]: 2}
        assert (
            client.get(CONFIG, headers=signed(kiosk_id, secret, "GET", CONFIG)).status_code == 200
        )
        with db.begin() as s:
            reprinted = {lab.payload for lab in labels_service.household_labels(s, "oak")}
        assert reprinted == set(payloads)
    newest_only = _app_with_keys(database_url, new)
    with newest_only.app_context():
        r = newest_only.test_client().get(CONFIG, headers=signed(kiosk_id, secret, "GET", CONFIG))
        assert r.status_code == 200
    old_only = _app_with_keys(database_url, old)
    with old_only.app_context():
        message = fails(old_only.test_cli_runner(), "labels", "list", "oak")
        assert "not among the secret keys" in message and report["key_id"] in message
        r = old_only.test_client().get(CONFIG, headers=signed(kiosk_id, secret, "GET", CONFIG))
        assert r.status_code == 500 and secret not in r.get_data(as_text=True)
        assert r.get_json()["error"]["code"] == "internal_error"


def test_a_kept_kiosk_copy_is_dropped_when_its_secret_is_resealed(app, database_url):
    kiosk_id, secret, _, _ = _world(app)
    served = _app_with_keys(database_url, secrets.new_key(), os.environ["SORTPOINT_SECRET_KEYS"])
    from backend.kiosk_api import kiosk_cache

    cache = kiosk_cache.for_app(served)
    client = served.test_client()
    with served.app_context():
        assert (
            client.get(CONFIG, headers=signed(kiosk_id, secret, "GET", CONFIG)).status_code == 200
        )
        before = cache.get(kiosk_id).secret_as_stored
        sealed.rotate_secrets()
        assert (
            client.get(CONFIG, headers=signed(kiosk_id, secret, "GET", CONFIG)).status_code == 200
        )
        with db.engine.connect() as conn:
            now_stored = conn.execute(text("SELECT secret FROM kiosks")).scalar_one()
        assert now_stored != before and cache.get(kiosk_id).secret_as_stored == now_stored


def test_rotation_seals_a_value_found_in_clear(app, runner):
    app.config["KIOSK_CACHE_TTL_S"] = 0
    kiosk_id, secret, _, _ = _world(app)
    with db.begin() as s:
        s.execute(text("UPDATE kiosks SET secret = :s"), {"s": secret})
    client = app.test_client()
    r = client.get(CONFIG, headers=signed(kiosk_id, secret, "GET", CONFIG))
    assert r.status_code == 500  # a value in clear is refused, never used
    report = sealed.rotate_secrets().as_dict()
    assert report["was_clear"] == 1 and report["resealed"] == 1
    with db.begin() as s:
        assert sealed.kiosk_secret(s.get(Kiosk, kiosk_id)) == secret


def test_wrong_keys_fail_in_one_line_never_a_traceback(app, database_url):
    _world(app)
    stranger = _app_with_keys(database_url, secrets.new_key())
    with stranger.app_context():
        message = fails(stranger.test_cli_runner(), "labels", "list", "oak")
        with pytest.raises(SecretsError, match="kiosks.secret:k_.*not among the secret keys"):
            sealed.rotate_secrets()
    assert "communities.label_private_key:oak" in message and "not among the secret keys" in message


# ------------------------------------------------------------------ migration


def test_upgrade_seals_clear_values_and_downgrade_opens_them(database_url):
    engine = make_engine(database_url)
    try:
        migrations.upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO communities (slug, name, timezone, label_private_key, "
                    "label_public_key, created_at) VALUES ('elm', 'Elm', 'UTC', :k, :p, :t)"
                ),
                {"k": "clear-key-text", "p": "pub", "t": "2025-01-01 00:00:00"},
            )
            community_id = conn.execute(text("SELECT id FROM communities")).scalar_one()
            conn.execute(
                text(
                    "INSERT INTO kiosks (id, community_id, name, secret, enabled, created_at)"
                    " VALUES ('k_old', :c, 'old', 'clear-secret', :e, :t)"
                ),
                {"c": community_id, "e": True, "t": "2025-01-01 00:00:00"},
            )
        migrations.upgrade(engine)
        with engine.connect() as conn:
            stored_secret = conn.execute(text("SELECT secret FROM kiosks")).scalar_one()
            stored_key = conn.execute(
                text("SELECT label_private_key FROM communities")
            ).scalar_one()
        assert "clear" not in stored_secret + stored_key
        ring = secrets.current()
        assert ring.open(stored_secret, sealed.kiosk_secret_context("k_old")) == "clear-secret"
        assert ring.open(stored_key, sealed.label_key_context("elm")) == "clear-key-text"
        migrations.upgrade(engine)  # again: nothing to do
        migrations.downgrade(engine, "0003")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT secret FROM kiosks")).scalar_one() == "clear-secret"
    finally:
        engine.dispose()


def test_upgrade_without_keys_changes_nothing_and_says_why(database_url, monkeypatch):
    engine = make_engine(database_url)
    try:
        migrations.upgrade(engine, "0003")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO communities (slug, name, timezone, label_private_key, "
                    "label_public_key, created_at) VALUES ('elm', 'Elm', 'UTC', 'k', 'p', :t)"
                ),
                {"t": "2025-01-01 00:00:00"},
            )
        monkeypatch.delenv("SORTPOINT_SECRET_KEYS")
        with pytest.raises(SecretsError, match="SORTPOINT_SECRET_KEYS"):
            migrations.upgrade(engine)
        assert migrations.current_revision(engine) == "0003"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT label_private_key FROM communities")).scalar() == "k"
    finally:
        engine.dispose()


# --------------------------------------------------------------- the console


def test_rows_made_through_the_orm_read_back_sealed(app):
    kiosk_id, secret, _, _ = _world(app)
    with db.begin() as s:
        kiosk = s.scalar(select(Kiosk))
        community = s.scalar(select(Community))
        assert secrets.is_sealed(kiosk.secret_sealed) and sealed.kiosk_secret(kiosk) == secret
        assert secrets.is_sealed(community.label_private_key_sealed)
