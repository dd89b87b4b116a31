"""deploy/: the systemd units run commands the CLI has, with the settings the README promises, and
systemd itself accepts them."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.cli import cli
from newsletter.config import Config

from .conftest import REPO, need

DEPLOY = REPO / "deploy"
COMMANDS = {  # unit file → the subcommand its ExecStart runs
    "newsletter-schedule.service": ["schedule"],
    "newsletter-worker@.service": ["worker"],
    "newsletter-web.service": ["serve"],
    "newsletter-bounces.service": ["bounces", "receive"],
}
BINARY = "/srv/newsletter/.venv/bin/newsletter"
DATA = "/var/lib/newsletter"


def unit(name: str) -> configparser.RawConfigParser:
    """A unit file as configparser reads it: keys keep their case, values are taken as written."""
    parser = configparser.RawConfigParser(strict=True, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / name, encoding="utf-8")
    return parser


def test_deploy_holds_exactly_the_four_units():
    """One unit per long-running command, no more and no fewer."""
    assert sorted(p.name for p in DEPLOY.glob("*.service")) == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_execstart_runs_a_command_the_cli_has(name):
    """ExecStart is the venv's newsletter with --config and a subcommand whose --help Click answers."""
    argv = shlex.split(unit(name)["Service"]["ExecStart"])
    assert argv[0] == BINARY and argv[1] == "--config" and argv[2].endswith(".toml")
    assert argv[3:] == COMMANDS[name]
    result = CliRunner().invoke(cli, [*argv[1:], "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {' '.join(argv[3:])} [OPTIONS]" in result.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_units_carry_the_promised_settings(name):
    """A dedicated user, the env file, restart on failure, time to stop between messages, the hardening."""
    service = unit(name)["Service"]
    assert service["User"] == "newsletter" and service["WorkingDirectory"] == "/srv/newsletter"
    assert service["EnvironmentFile"] == "/etc/newsletter/env"
    assert service["Restart"] == "on-failure" and service["KillSignal"] == "SIGTERM"
    # a message in flight may wait for [smtp] timeout on each of its SMTP commands before the send stops
    floor = 3 * Config().smtp.timeout if COMMANDS[name][0] in ("schedule", "worker") else 30
    assert int(service["TimeoutStopSec"]) >= floor
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes" and service["UMask"] == "0077"
    assert DATA in service["ReadWritePaths"].split() and service["StateDirectory"] == "newsletter"


def test_env_example_names_real_config_keys():
    """Every NEWSLETTER_<SECTION>__<KEY> in the example env file is a key the config reads."""
    names = [line.split("=", 1)[0].lstrip("#") for line in
             (DEPLOY / "newsletter.env.example").read_text(encoding="utf-8").splitlines()
             if line.lstrip("#").startswith("NEWSLETTER_")]
    assert "NEWSLETTER_NEWSLETTER__SECRET_KEY" in names and "NEWSLETTER_SMTP__PASSWORD" in names
    for env in names:
        section, _, key = env.removeprefix("NEWSLETTER_").lower().partition("__")
        assert section in Config.model_fields, env
        assert key in Config.model_fields[section].annotation.model_fields, env  # type: ignore[union-attr]


def verify(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of ``text`` as unit ``name``, its binary a stand-in (verify checks it exists)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        need("systemd-analyze is not installed (Debian's systemd package)")
    stand_in = tmp_path / "newsletter"
    stand_in.write_text("#!/bin/sh\n", encoding="utf-8")
    stand_in.chmod(0o755)
    (tmp_path / name).write_text(text.replace(BINARY, str(stand_in)), encoding="utf-8")
    return subprocess.run([str(tool), "verify", "--man=no", str(tmp_path / name)], capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_systemd_analyze_verify_accepts_each_unit(name, tmp_path):
    """systemd-analyze verify reports nothing, not even a warning (an unknown key or bad value is one)."""
    instance = name.replace("@.", "@1.")  # a template is verified through one instance
    done = verify(tmp_path, instance, (DEPLOY / name).read_text(encoding="utf-8"))
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr + done.stdout


def test_systemd_analyze_verify_would_catch_a_bad_key(tmp_path):
    """The verify check can fail: a misspelt hardening key is reported."""
    text = (DEPLOY / "newsletter-web.service").read_text(encoding="utf-8")
    done = verify(tmp_path, "bad.service", text.replace("ProtectSystem=", "ProtectSytem="))
    assert "ProtectSytem" in done.stderr
