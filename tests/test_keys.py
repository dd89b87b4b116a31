"""The signing key's fingerprint and rotation (keys.py, `newsletter keys`): real SQLite files, the CLI through
Click's runner."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter import keys, store
from newsletter.config import load_config
from newsletter.links import UNSUBSCRIBE, links_for

from .conftest import ManualClock, invoke

KEY_A = "keys-test-key-A-0123456789abcdefghijkl"
KEY_B = "keys-test-key-B-0123456789abcdefghijkl"
ENV, PREVIOUS_ENV = "NEWSLETTER_NEWSLETTER__SECRET_KEY", "NEWSLETTER_NEWSLETTER__PREVIOUS_SECRET_KEY"


def engine_of(config: Path) -> sa.Engine:
    engine = store.engine_for(load_config(config).database_url)
    store.migrate(engine)
    return engine


def test_a_fingerprint_tells_keys_apart_and_shows_none_of_them() -> None:
    """16 hex digits, the same for the same key, another for another key, with no part of the key in it."""
    assert keys.fingerprint(KEY_A) == keys.fingerprint(KEY_A) != keys.fingerprint(KEY_B)
    assert len(keys.fingerprint(KEY_A)) == 16 and int(keys.fingerprint(KEY_A), 16) >= 0
    assert not any(KEY_A[i:i + 4] in keys.fingerprint(KEY_A) for i in range(len(KEY_A) - 3))


def test_the_first_claim_of_a_meta_key_wins(tmp_path: Path) -> None:
    """meta_claim sets a key once; a later claim gets the first value back."""
    engine = store.engine_for(f"sqlite:///{tmp_path / 'm.db'}")
    store.migrate(engine)
    with engine.begin() as conn:
        assert store.meta_claim(conn, "k", "first") == "first"
        assert store.meta_claim(conn, "k", "second") == "first"
        store.meta_put(conn, "k", "third")
        assert store.meta_get(conn, "k") == "third"
    engine.dispose()


def test_keys_rotate_and_status_through_the_cli(
        make_config: Callable[..., Path], runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """status says whose key signs; rotate moves to B, prints fingerprints (never a key), and says so twice not."""
    config = make_config()
    monkeypatch.setenv(ENV, KEY_A)
    assert "not yet used to sign" in invoke(runner, config, "keys", "status").output
    engine = engine_of(config)
    links_for(load_config(config), engine)
    assert "the key the database signs with" in invoke(runner, config, "keys", "status").output
    monkeypatch.setenv(ENV, KEY_B)
    assert "NOT the database's key" in invoke(runner, config, "keys", "status").output
    monkeypatch.setenv(PREVIOUS_ENV, KEY_A)
    done = invoke(runner, config, "keys", "rotate").output
    assert keys.fingerprint(KEY_B) in done and keys.fingerprint(KEY_A) in done and "verify until" in done
    status = invoke(runner, config, "keys", "status").output
    assert "the key the database signs with" in status and "verifies until" in status
    assert "nothing to rotate" in invoke(runner, config, "keys", "rotate", code=1).output
    assert not any(k in done + status for k in (KEY_A, KEY_B))
    engine.dispose()


def test_rotating_away_from_the_databases_own_key_needs_no_previous_key(make_config: Callable[..., Path]) -> None:
    """A database that signed with its own random key moves to secret_key B; its old links verify in the window."""
    clock = ManualClock()
    engine = engine_of(make_config())
    own = links_for(load_config(make_config()), engine, clock)
    token = own.token(UNSUBSCRIBE, 3)
    config_b = load_config(make_config(f'[newsletter]\nsecret_key = "{KEY_B}"\n', "b.toml"))
    keys.rotate(config_b, engine, clock.now())
    links_b = links_for(config_b, engine, clock)
    assert links_b.verify(UNSUBSCRIBE, token) == 3 and links_b.secret == KEY_B
    clock.at += timedelta(days=31)
    assert links_for(config_b, engine, clock).previous == ()
    engine.dispose()


def test_previous_key_days_sets_the_window(make_config: Callable[..., Path]) -> None:
    """previous_key_days = 2: the old key verifies for two days after the rotation, then the ring drops it."""
    clock = ManualClock()
    engine = engine_of(make_config())
    links_for(load_config(make_config(f'[newsletter]\nsecret_key = "{KEY_A}"\n', "a.toml")), engine, clock)
    config_b = load_config(make_config(f'[newsletter]\nsecret_key = "{KEY_B}"\nprevious_secret_key = "{KEY_A}"\n'
                                       "previous_key_days = 2\n", "b.toml"))
    keys.rotate(config_b, engine, clock.now())
    assert links_for(config_b, engine, clock).until == clock.now() + timedelta(days=2)
    clock.at += timedelta(days=2)
    assert links_for(config_b, engine, clock).previous == ()
    engine.dispose()


def test_a_short_previous_key_is_allowed_a_short_current_one_is_not(make_config: Callable[..., Path]) -> None:
    """Moving off a short key keeps its links for the window; only the key that signs must have 32 bytes."""
    config = load_config(make_config(f'[newsletter]\nsecret_key = "{KEY_B}"\nprevious_secret_key = "short-old"\n'))
    assert config.newsletter.previous_secret_key.get_secret_value() == "short-old"
