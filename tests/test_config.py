"""config.toml and NEWSLETTER_* overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.cli import cli
from newsletter.config import load_config
from newsletter.errors import ConfigError

from .conftest import REPO


def test_repo_config_loads_with_every_section(repo_config):
    """The shipped config.toml is valid and carries the four areas and every section."""
    assert repo_config.newsletter.areas == ["LLM", "Vision", "RL", "Agents"]
    assert repo_config.newsletter.sender.endswith("<digest@example.org>")
    assert repo_config.smtp.port == 1025 and repo_config.schedule.day == "thu"
    assert repo_config.path("issues") == REPO / "issues"


def test_every_key_in_shipped_config_is_commented():
    """Each key = value line in config.toml has a comment line right above it (or a sibling's)."""
    lines = (REPO / "config.toml").read_text().splitlines()
    for n, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            above = lines[n - 1].lstrip()
            assert above.startswith("#") or ("=" in above and not above.startswith("[")), line


def test_env_overrides_file(make_config, monkeypatch):
    """Env beats the file, the file beats the default, key by key: NEWSLETTER_SMTP__PORT and
    NEWSLETTER_DATABASE__URL win (typed), the file's other [smtp] keys stay, unset keys keep their defaults."""
    path = make_config('[smtp]\nport = 25\nhost = "relay.example"\nconnections = 8\n')
    assert load_config(path).smtp.port == 25
    monkeypatch.setenv("NEWSLETTER_SMTP__PORT", "2525")
    monkeypatch.setenv("NEWSLETTER_DATABASE__URL", "sqlite:///x.db")
    config = load_config(path)
    assert config.smtp.port == 2525 and isinstance(config.smtp.port, int)
    assert (config.smtp.host, config.smtp.connections) == ("relay.example", 8)
    assert config.smtp.timeout == 30.0 and config.schedule.day == "thu"
    assert config.database_url == f"sqlite:///{path.parent / 'x.db'}"


def test_config_option_beats_the_env_variable(make_config, monkeypatch, runner):
    """--config wins over NEWSLETTER_CONFIG, which wins over ./config.toml."""
    chosen = make_config('[newsletter]\nname = "Chosen Weekly"\n', name="chosen.toml")
    other = make_config('[newsletter]\nname = "Other Weekly"\n', name="other.toml")
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(other))
    assert load_config(chosen).newsletter.name == "Chosen Weekly"
    assert load_config().newsletter.name == "Other Weekly"


def test_newsletter_config_env_picks_the_file(make_config, monkeypatch):
    """NEWSLETTER_CONFIG names the config file when --config is not given."""
    path = make_config('[newsletter]\nname = "Other Weekly"\n', name="other.toml")
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(path))
    assert load_config().newsletter.name == "Other Weekly"


@pytest.mark.parametrize(
    ("body", "env", "expected"),
    [
        ("[smtp]\nport = \"many\"\n", {}, "smtp.port"),
        ("[smtp]\nport = 99999\n", {}, "smtp.port"),
        ("[smtp]\nprot = 25\n", {}, "smtp.prot: Extra inputs are not permitted"),
        ("[smtp]\nsecurity = \"ssl\"\n", {}, "smtp.security"),
        ("[schedule]\ntime = \"9am\"\n", {}, "schedule.time"),
        ("[newsletter]\nareas = [\"LLM\", \"llm\"]\n", {}, "newsletter.areas"),
        ("[smtpp]\nport = 1\n", {}, "unknown section [smtpp]"),
        ("[smtp\nport = 1\n", {}, "not valid TOML"),
        ("", {"NEWSLETTER_SMTP__PORT": "abc"}, "env NEWSLETTER_SMTP__PORT: smtp.port"),
        ("[newsletter]\nsecret_key = \"short\"\n", {}, "newsletter.secret_key: Value error, must be at least 32"),
        ("[newsletter]\nsecret_key = 12345\n", {}, "newsletter.secret_key: Input should be a valid string"),
        ("", {"NEWSLETTER_NEWSLETTER__SECRET_KEY": "changeme"},
         "env NEWSLETTER_NEWSLETTER__SECRET_KEY: newsletter.secret_key: Value error, is a known placeholder"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(make_config, monkeypatch, runner, body, env, expected):
    """A bad value, key, section or syntax gives a one-line error naming the key, not a traceback."""
    path = make_config(body)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert not any(secret in str(info.value) for secret in ("short", "12345", "changeme"))  # a key is never shown
    result = runner.invoke(cli, ["--config", str(path), "issue", "list"])
    assert result.exit_code == 1 and expected in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_missing_explicit_config_is_an_error(tmp_path: Path):
    """--config naming a file that does not exist is reported, not silently replaced by defaults."""
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_commit_every_defaults_to_8_on_every_database(make_config):
    """Unset, [smtp] commit_every is 8, on PostgreSQL (#16's measured setting for workers) and SQLite (#23's); a
    value given in the file or the environment is kept."""
    sqlite = load_config(make_config(""))
    pg = load_config(make_config('[database]\nurl = "postgresql+psycopg://postgres@127.0.0.1/test"\n', "pg.toml"))
    told = load_config(make_config('[smtp]\ncommit_every = 1\n[database]\nurl = "postgresql://x/y"\n', "told.toml"))
    assert (sqlite.smtp.commit_every, pg.smtp.commit_every, told.smtp.commit_every) == (8, 8, 1)
