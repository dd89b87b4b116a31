"""deploy/: the systemd units run commands the CLI has, with the settings the README promises, and
systemd itself accepts them; the timer runs `bounces fetch` every 5 minutes; the CLI wrapper runs a command as the
units do; the reverse-proxy examples send what [web] trusted_proxies believes; and `pip install .` carries every
file the package reads."""

from __future__ import annotations

import configparser
import fnmatch
import itertools
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

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
ONESHOTS = {"newsletter-bounces-fetch.service": ["bounces", "fetch"]}  # started by the timer of the same name
RUNS = COMMANDS | ONESHOTS
BINARY = "/srv/newsletter/.venv/bin/newsletter"
DATA = "/var/lib/newsletter"


def unit(name: str) -> configparser.RawConfigParser:
    """A unit file as configparser reads it: keys keep their case, values are taken as written."""
    parser = configparser.RawConfigParser(strict=True, delimiters=("=",), comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / name, encoding="utf-8")
    return parser


def test_deploy_holds_exactly_the_units_and_the_timer():
    """One unit per long-running command and one for the timer's `bounces fetch`, no more and no fewer."""
    assert sorted(p.name for p in DEPLOY.glob("*.service")) == sorted(RUNS)
    assert sorted(p.name for p in DEPLOY.glob("*.timer")) == ["newsletter-bounces-fetch.timer"]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_execstart_runs_a_command_the_cli_has(name):
    """ExecStart is the venv's newsletter with --config and a subcommand whose --help Click answers."""
    argv = shlex.split(unit(name)["Service"]["ExecStart"])
    assert argv[0] == BINARY and argv[1] == "--config" and argv[2].endswith(".toml")
    assert argv[3:] == RUNS[name]
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


def test_the_fetch_unit_is_a_oneshot_with_the_same_settings_that_ends_before_its_next_run():
    """`bounces fetch` runs once per start, as the services' user with their env file and hardening, and a hung run
    is stopped before the timer's next one is due."""
    fetch, web = unit("newsletter-bounces-fetch.service")["Service"], unit("newsletter-web.service")["Service"]
    assert fetch["Type"] == "oneshot" and "Restart" not in fetch and "Install" not in \
        unit("newsletter-bounces-fetch.service")
    assert fetch["TimeoutStartSec"] == "4min"
    shared = set(web) - {"Type", "ExecStart", "Restart", "RestartSec", "TimeoutStopSec"}
    assert {k: fetch.get(k) for k in shared} == {k: web[k] for k in shared}


def test_the_timer_starts_bounces_fetch_every_five_minutes():
    """The timer names the fetch unit, is wanted by timers.target, and systemd reads its OnCalendar as every 5
    minutes of the wall clock (systemd-analyze calendar)."""
    timer = unit("newsletter-bounces-fetch.timer")
    assert timer["Timer"]["Unit"] == "newsletter-bounces-fetch.service" and (DEPLOY / timer["Timer"]["Unit"]).exists()
    assert timer["Install"]["WantedBy"] == "timers.target"
    tool = shutil.which("systemd-analyze")
    if tool is None:
        need("systemd-analyze is not installed (Debian's systemd package)")
    done = subprocess.run([str(tool), "calendar", "--iterations=4", timer["Timer"]["OnCalendar"]],
                          capture_output=True, text=True, timeout=60, check=True)
    minutes = [int(m) for m in re.findall(r"(?:Next elapse|Iter\. #\d): \w+ \S+ \d+:(\d+):00", done.stdout)]
    assert len(minutes) == 4 and all((b - a) % 60 == 5 for a, b in itertools.pairwise(minutes))


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


def verify(tmp_path: Path, name: str, text: str, *beside: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` of ``text`` as unit ``name`` (and of the deploy/ units ``beside`` it), its binary a
    stand-in (verify checks it exists)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        need("systemd-analyze is not installed (Debian's systemd package)")
    stand_in = tmp_path / "newsletter"
    stand_in.write_text("#!/bin/sh\n", encoding="utf-8")
    stand_in.chmod(0o755)
    (tmp_path / name).write_text(text.replace(BINARY, str(stand_in)), encoding="utf-8")
    for other in beside:
        (tmp_path / other).write_text((DEPLOY / other).read_text(encoding="utf-8").replace(BINARY, str(stand_in)),
                                      encoding="utf-8")
    return subprocess.run([str(tool), "verify", "--man=no", str(tmp_path / name), *(str(tmp_path / o) for o in beside)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_systemd_analyze_verify_accepts_each_unit(name, tmp_path):
    """systemd-analyze verify reports nothing, not even a warning (an unknown key or bad value is one)."""
    instance = name.replace("@.", "@1.")  # a template is verified through one instance
    done = verify(tmp_path, instance, (DEPLOY / name).read_text(encoding="utf-8"))
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr + done.stdout


def test_systemd_analyze_verify_accepts_the_timer_with_its_unit(tmp_path):
    """The timer and the unit it starts, verified together, report nothing; a misspelt OnCalendar is reported."""
    name = "newsletter-bounces-fetch.timer"
    text = (DEPLOY / name).read_text(encoding="utf-8")
    done = verify(tmp_path, name, text, "newsletter-bounces-fetch.service")
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done.stderr + done.stdout
    assert "OnCalender" in verify(tmp_path, name, text.replace("OnCalendar=", "OnCalender=")).stderr


def test_systemd_analyze_verify_would_catch_a_bad_key(tmp_path):
    """The verify check can fail: a misspelt hardening key is reported."""
    text = (DEPLOY / "newsletter-web.service").read_text(encoding="utf-8")
    done = verify(tmp_path, "bad.service", text.replace("ProtectSystem=", "ProtectSytem="))
    assert "ProtectSytem" in done.stderr


def test_the_cli_wrapper_runs_a_command_as_the_units_run_theirs(tmp_path):
    """deploy/newsletter-cli hands systemd-run the units' user, env file, working directory and ExecStart's binary
    and config, then the operator's arguments as given; with no terminal it pipes (nothing asks)."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "id").write_text("#!/bin/sh\necho 0\n", encoding="utf-8")  # as root, as on the server
    (stubs / "systemd-run").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "argv"}\n', encoding="utf-8")
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    subprocess.run(["sh", str(DEPLOY / "newsletter-cli"), "subscribers", "list", "--search", "a b"], env=env,
                   stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=True)
    argv = (tmp_path / "argv").read_text(encoding="utf-8").splitlines()
    service = unit("newsletter-web.service")["Service"]
    properties = dict(a.removeprefix("--property=").split("=", 1) for a in argv if a.startswith("--property="))
    for key in ("User", "Group", "EnvironmentFile", "WorkingDirectory", "StateDirectory", "UMask"):
        assert properties[key] == service[key], key
    command = argv[argv.index("--") + 1:]
    assert command == shlex.split(service["ExecStart"])[:3] + ["subscribers", "list", "--search", "a b"]
    assert "--pipe" in argv and "--wait" in argv


def covered(path: str, pattern: str) -> bool:
    """setuptools' package-data glob: ``templates/*`` is the files in templates/, not those below it."""
    file, glob = PurePosixPath(path), PurePosixPath(pattern)
    return file.parent == glob.parent and fnmatch.fnmatch(file.name, glob.name)


def test_pip_install_carries_every_file_the_package_reads():
    """Every file of the package that is not Python (templates, the console's pages, migrations) matches a
    package-data pattern, so a plain `pip install .` on a server has it (the console's were missing)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["newsletter"]
    package = REPO / "newsletter"
    data = [p.relative_to(package).as_posix() for p in package.rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts]
    assert "web/templates/admin/bounces.html.j2" in data
    assert [f for f in data if not any(covered(f, pattern) for pattern in patterns)] == []


def test_the_caddy_example_proxies_to_the_web_unit_under_a_host_name():
    """deploy/Caddyfile serves a host name (so Caddy gets its certificate) and proxies to [web]'s default address,
    where newsletter-web.service listens; Caddy sets X-Forwarded-For and -Proto itself."""
    text = (DEPLOY / "Caddyfile").read_text(encoding="utf-8")
    site = re.search(r"^(\S+) \{$", text, re.MULTILINE)
    assert site and "." in site.group(1) and "://" not in site.group(1)
    web = Config().web
    assert re.search(rf"^\s+reverse_proxy {re.escape(web.host)}:{web.port}$", text, re.MULTILINE)


def nginx_headers() -> dict[str, str]:
    """The request headers deploy/nginx.conf sets, each nginx variable filled in as nginx fills it."""
    text = (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    values = {"$host": "news.example.org", "$remote_addr": "203.0.113.7", "$scheme": "https"}
    return {name: values[value] for name, value in re.findall(r"proxy_set_header (\S+) (\$\w+);", text)}


def test_the_nginx_example_names_the_client_and_https_through_trusted_proxies(make_config):
    """The nginx example's headers, from a proxy on 127.0.0.1 with [web] trusted_proxies = ["127.0.0.1"]: the app
    takes the client's address from X-Forwarded-For (the audit line of a refused sign-in names it) and https from
    X-Forwarded-Proto (the CSRF cookie is Secure); it proxies to where newsletter-web.service listens."""
    from starlette.testclient import TestClient

    from newsletter import audit

    from .console import Console
    web = Config().web
    assert f"proxy_pass http://{web.host}:{web.port};" in (DEPLOY / "nginx.conf").read_text(encoding="utf-8")
    headers = nginx_headers()
    assert set(headers) == {"Host", "X-Forwarded-For", "X-Forwarded-Proto"}
    console = Console(make_config('[newsletter]\nsecret_key = "deploy-test-secret-0123456789abcdef"\n'
                                  'base_url = "https://news.example.org"\n[web]\ntrusted_proxies = ["127.0.0.1"]\n'),
                      roles=())
    try:
        # nginx on 127.0.0.1 speaks plain http to the app: only X-Forwarded-Proto says the browser used https
        client = TestClient(console.app, base_url="http://news.example.org", client=("127.0.0.1", 50000),
                            headers=headers)
        form = client.get("/admin/login")
        cookie = form.headers["set-cookie"]
        assert "secure" in cookie.lower()
        field = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert field
        client.post("/admin/login", data={"csrf": field.group(1), "name": "nobody", "password": "x" * 12},
                    headers={"Cookie": cookie.split(";", 1)[0]})
        with console.engine.connect() as conn:
            assert [e.target for e in audit.recent(conn, 5) if e.action == "login.refused"] == ["203.0.113.7"]
    finally:
        console.close()


def test_the_readme_names_every_file_of_deploy():
    """README's Deploying section is the way in: each file of deploy/ is named there."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    deploying = readme.split("\n## Deploying", 1)[1].split("\n## ", 1)[0]
    assert [p.name for p in sorted(DEPLOY.iterdir()) if p.name not in deploying] == []
