"""The signing key (issue #21): a published placeholder or a short key, two processes with different keys, a
stale previous key, and the rotation window. Through the CLI (Click's runner) and the library, on real SQLite
files, with the clock moved by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from newsletter import keys, store
from newsletter.cli import cli
from newsletter.config import load_config
from newsletter.errors import BadToken, ConfigError
from newsletter.links import UNSUBSCRIBE, Links, links_for, verp_address
from newsletter.store import tables as t
from newsletter.web import create_app

from ..conftest import REPO, ManualClock, invoke

ISSUE = "2026-05-28"
BASE = "https://news.example.org"
BOUNCES = "bounces@bounces.example.org"
KEY_A = "secrets-test-key-A-0123456789abcdefghij"
KEY_B = "secrets-test-key-B-0123456789abcdefghij"
ENV, PREVIOUS_ENV = "NEWSLETTER_NEWSLETTER__SECRET_KEY", "NEWSLETTER_NEWSLETTER__PREVIOUS_SECRET_KEY"


def example_key() -> str:
    """The secret_key deploy/newsletter.env.example ships."""
    lines = (REPO / "deploy" / "newsletter.env.example").read_text(encoding="utf-8").splitlines()
    return next(line.split("=", 1)[1] for line in lines if line.startswith(ENV + "="))


def refused(result: Result, *named: str, secrets: tuple[str, ...] = ()) -> str:
    """The one line a refusal prints, checked: exit non-zero, no traceback, names ``named``, shows no secret."""
    out = result.output
    assert result.exit_code != 0 and out.count("\n") == 1 and "Traceback" not in out, out + repr(result.exception)
    assert all(n in out for n in named), out
    assert not any(s in out for s in secrets), out
    return out


def engine_of(config: Path) -> sa.Engine:
    engine = store.engine_for(load_config(config).database_url)
    store.migrate(engine)
    return engine


def status_of(config: Path, sid: int) -> str:
    engine = engine_of(config)
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.select(t.subscribers.c.status).where(t.subscribers.c.id == sid)) or ""
    finally:
        engine.dispose()


@pytest.mark.attack(edge="secrets", attack="deploy example's placeholder key", held="refused at start, one line")
@pytest.mark.parametrize("value", [example_key(), "change-me-to-a-long-random-string", "your-secret-key",
                                   "a-placeholder-that-is-long-enough-to-pass-32"])
def test_the_env_examples_placeholder_key_is_refused_in_one_line(
        value: str, make_config: Callable[..., Path], runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A known placeholder in NEWSLETTER_NEWSLETTER__SECRET_KEY stops any command in one line that names the var."""
    config = make_config()
    monkeypatch.setenv(ENV, value)
    out = refused(runner.invoke(cli, ["--config", str(config), "issue", "list"]), ENV, "placeholder",
                  secrets=(value,))
    assert "secrets.token_urlsafe" in out


@pytest.mark.attack(edge="secrets", attack="31-byte secret_key", held="refused, 32 bytes needed")
def test_a_31_byte_key_is_refused_and_32_bytes_run(make_config: Callable[..., Path], runner: CliRunner) -> None:
    """A 31-byte secret_key in the config file is refused in one line naming the file; 32 bytes run."""
    short = "k" * 31
    config = make_config(f'[newsletter]\nsecret_key = "{short}"\n')
    refused(runner.invoke(cli, ["--config", str(config), "issue", "list"]), str(config), "newsletter.secret_key",
            "32 bytes", secrets=(short,))
    invoke(runner, make_config(f'[newsletter]\nsecret_key = "{short}k"\n'), "issue", "list")


@pytest.mark.attack(edge="secrets", attack="env key beside the database's key", held="refused at start, one line")
def test_a_process_whose_key_is_not_the_databases_refuses_to_start(
        make_config: Callable[..., Path], runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """Links were signed with the database's own key; a send or a web app with an env key refuses in one line
    instead of signing links the other rejects ("This link does not work")."""
    config = make_config(f'[newsletter]\nbase_url = "{BASE}"\n')
    invoke(runner, config, "subscribers", "add", "ada@example.org")
    engine = engine_of(config)
    signed = links_for(load_config(config), engine).token(UNSUBSCRIBE, 1)  # a link in a mail already sent
    monkeypatch.setenv(ENV, KEY_B)
    refused(runner.invoke(cli, ["--config", str(config), "send", ISSUE, "--dry-run"]), ENV,
            "differs from the one the database signs with", "keys rotate", secrets=(KEY_B,))
    with pytest.raises(ConfigError, match="differs from the one the database signs with"):
        create_app(load_config(config), engine)
    monkeypatch.delenv(ENV)
    assert links_for(load_config(config), engine).verify(UNSUBSCRIBE, signed) == 1  # the database's key still runs
    engine.dispose()


@pytest.mark.attack(edge="secrets", attack="no key beside a process with one", held="refused at start, one line")
def test_a_process_without_secret_key_beside_one_with_it_refuses_to_start(
        make_config: Callable[..., Path], runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database signs with the env key; a process started without it would sign with the database's own
    key: it refuses, saying its key is the database's own and differs."""
    config = make_config()
    invoke(runner, config, "subscribers", "add", "ada@example.org")
    monkeypatch.setenv(ENV, KEY_A)
    invoke(runner, config, "send", ISSUE, "--dry-run")
    monkeypatch.delenv(ENV)
    refused(runner.invoke(cli, ["--config", str(config), "send", ISSUE, "--dry-run"]), "secret_key is empty",
            "differs from the one the database signs with")


@pytest.mark.attack(edge="secrets", attack="unsubscribe forged with the placeholder", held="nobody changed")
def test_tokens_forged_with_the_placeholder_key_change_nobody(
        make_config: Callable[..., Path], runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Knowing the example's key, a stranger signs an unsubscribe link and a VERP unsubscribe address for
    subscriber 1: no process runs with that key, and one with a real key answers 400 and changes nothing."""
    placeholder = example_key()
    config = make_config(f'[newsletter]\nbase_url = "{BASE}"\n[bounces]\naddress = "{BOUNCES}"\n')
    invoke(runner, config, "subscribers", "add", "ada@example.org")
    forged = Links(placeholder, BASE)
    mail = tmp_path / "unsubscribe.eml"
    mail.write_bytes(f"From: x@evil.example\nTo: {verp_address(BOUNCES, forged.verp_token('u', 1))}\n"
                     "Subject: unsubscribe\n\nunsubscribe\n".encode())
    monkeypatch.setenv(ENV, placeholder)
    refused(runner.invoke(cli, ["--config", str(config), "bounces", "ingest", str(mail)]), ENV, secrets=(placeholder,))
    with pytest.raises(ConfigError, match="placeholder"):
        load_config(config)
    monkeypatch.setenv(ENV, KEY_A)
    engine = engine_of(config)
    with TestClient(create_app(load_config(config), engine), base_url="http://localhost",
                    client=("127.0.0.1", 50000)) as client:
        answer = client.post(f"/unsubscribe/{forged.token(UNSUBSCRIBE, 1)}", data={"List-Unsubscribe": "One-Click"})
    engine.dispose()
    assert answer.status_code == 400 and status_of(config, 1) == "active"


@pytest.mark.attack(edge="secrets", attack="old key's links after rotation", held="verify only previous_key_days")
def test_after_a_rotation_old_links_verify_for_previous_key_days_and_then_no_more(
        make_config: Callable[..., Path], caplog: pytest.LogCaptureFixture) -> None:
    """Rotated from A to B: links, VERP and confirm tokens signed with A verify for 30 days (in a process that
    keeps running, too), not after; new links are signed with B alone."""
    clock = ManualClock()
    old_cfg = load_config(make_config(f'[newsletter]\nsecret_key = "{KEY_A}"\nbase_url = "{BASE}"\n', "a.toml"))
    engine = store.engine_for(old_cfg.database_url)
    store.migrate(engine)
    old = links_for(old_cfg, engine, clock)
    unsub, verp, confirm = old.token(UNSUBSCRIBE, 7), old.verp_token("u", 7), old.confirm_url(7).rsplit("/", 1)[1]
    new_cfg = load_config(make_config(f'[newsletter]\nsecret_key = "{KEY_B}"\nprevious_secret_key = "{KEY_A}"\n'
                                      f'base_url = "{BASE}"\n', "b.toml"))
    keys.rotate(new_cfg, engine, clock.now())
    with pytest.raises(ConfigError, match="differs"):
        links_for(old_cfg, engine, clock)  # a process still keyed with A no longer starts
    new = links_for(new_cfg, engine, clock)
    assert new.token(UNSUBSCRIBE, 7) == Links(KEY_B, BASE).token(UNSUBSCRIBE, 7) != unsub
    with pytest.raises(BadToken):
        old.verify(UNSUBSCRIBE, new.token(UNSUBSCRIBE, 7))
    clock.at += timedelta(days=30, minutes=-1)
    assert (new.verify(UNSUBSCRIBE, unsub), new.verify_verp(verp), new.verify_confirm(confirm, 3600)) == \
        (7, ("u", 7), 7)
    clock.at += timedelta(minutes=2)
    for check in (lambda: new.verify(UNSUBSCRIBE, unsub), lambda: new.verify_verp(verp),
                  lambda: new.verify_confirm(confirm, 3600), lambda: links_for(new_cfg, engine, clock).verify(
                      UNSUBSCRIBE, unsub)):
        with pytest.raises(BadToken):
            check()
    assert "no longer used" in caplog.text and KEY_A not in caplog.text
    engine.dispose()


@pytest.mark.attack(edge="secrets", attack="extra previous key, no rotation", held="refused at start, one line")
def test_a_previous_key_that_no_rotation_retired_is_refused(
        make_config: Callable[..., Path], runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """A previous_secret_key slipped into the environment, never retired by `keys rotate`, would verify links
    signed with it: the process refuses to start, in one line naming the variable."""
    config = make_config()
    invoke(runner, config, "subscribers", "add", "ada@example.org")
    monkeypatch.setenv(ENV, KEY_A)
    invoke(runner, config, "send", ISSUE, "--dry-run")
    monkeypatch.setenv(PREVIOUS_ENV, KEY_B)
    refused(runner.invoke(cli, ["--config", str(config), "send", ISSUE, "--dry-run"]), PREVIOUS_ENV,
            "keys rotate", secrets=(KEY_A, KEY_B))


@pytest.mark.attack(edge="secrets", attack="placeholder as previous key", held="refused at start, one line")
def test_a_placeholder_previous_key_is_refused(
        make_config: Callable[..., Path], runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rotating away from the example's key must not keep it verifying for 30 days: refused as a previous key."""
    monkeypatch.setenv(ENV, KEY_A)
    monkeypatch.setenv(PREVIOUS_ENV, example_key())
    refused(runner.invoke(cli, ["--config", str(make_config()), "keys", "rotate"]), PREVIOUS_ENV, "placeholder",
            secrets=(example_key(), KEY_A))


@pytest.mark.attack(edge="secrets", attack="rotate from a key never used", held="refused, database unchanged")
def test_rotate_refuses_an_old_key_the_database_never_signed_with(
        make_config: Callable[..., Path], runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    """`keys rotate` naming as old a key that is not the database's is refused; the database keeps signing with A."""
    config, engine = make_config(), engine_of(make_config(f'[newsletter]\nsecret_key = "{KEY_A}"\n', "a.toml"))
    links_a = links_for(load_config(make_config(f'[newsletter]\nsecret_key = "{KEY_A}"\n', "a.toml")), engine)
    monkeypatch.setenv(ENV, KEY_B)
    monkeypatch.setenv(PREVIOUS_ENV, "someone-elses-key-0123456789abcdefghij")
    refused(runner.invoke(cli, ["--config", str(config), "keys", "rotate"]), PREVIOUS_ENV,
            "not the key the database signs with", secrets=(KEY_B,))
    with engine.connect() as conn:
        assert store.meta_get(conn, keys.FINGERPRINT) == keys.fingerprint(KEY_A)
        assert store.meta_get(conn, keys.RETIRED) is None
    assert links_a.secret == KEY_A
    engine.dispose()
