"""Shared fixtures and helpers: the repository's own config and content, temp configs, the CLI runner,
a TLS relay's certificate, a DKIM key, headless Chromium, PostgreSQL schemas."""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import shutil
import ssl
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from newsletter.cli import cli
from newsletter.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
AREAS = ["LLM", "Vision", "RL", "Agents"]  # config.toml's areas, in order


class ManualClock:
    """A clock tests move themselves: ``sleep`` advances it at once, so retries and backoffs take no wall time."""

    def __init__(self, start: datetime | None = None) -> None:
        self.at = start or datetime(2026, 5, 28, 9, 0, tzinfo=UTC)
        self.slept: list[float] = []

    def now(self) -> datetime:
        return self.at

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        self.slept.append(seconds)
        self.at += timedelta(seconds=max(seconds, 0))


def need(reason: str) -> None:
    """Skip a test whose service is missing, saying why; in CI a missing service is a failure."""
    if IN_CI:
        pytest.fail(f"CI must run this test, but: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no NEWSLETTER_* variables from the shell that started them, but one: a send delivers in one
    process (a helper process per core and per send would slow the suite); tests/test_fanout.py lifts it."""
    for key in list(os.environ):
        if key.upper().startswith("NEWSLETTER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NEWSLETTER_SMTP__PROCESSES", "1")


@pytest.fixture
def repo_config() -> Config:
    return load_config(REPO / "config.toml")


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a config file into tmp_path whose paths point at the repo's templates and issues."""

    def make(extra: str = "", name: str = "config.toml") -> Path:
        path = tmp_path / name
        body = textwrap.dedent(extra)
        if "[paths]" not in body:
            body += textwrap.dedent(f"""
                [paths]
                issues = "{REPO / 'issues'}"
                templates = "{REPO / 'templates' / 'email'}"
                preview = "{tmp_path / 'preview'}"
                """)
        if "[database]" not in body:
            body += f'\n[database]\nurl = "sqlite:///{tmp_path / "newsletter.db"}"\n'
        path.write_text(body, encoding="utf-8")
        return path

    return make


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, config: Path, *args: str, code: int = 0) -> Result:
    """``newsletter --config CONFIG ARGS…`` through Click's runner; the exit code must be ``code``."""
    result = runner.invoke(cli, ["--config", str(config), *args])
    assert result.exit_code == code, result.output + repr(result.exception)
    return result


def parse(data: bytes) -> EmailMessage:
    """A message as a mail client reads it (Python's parser, the modern policy)."""
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def tls_relay(tmp_path: Path, password_ok: Callable[[bytes, bytes], bool]) -> tuple[dict[str, Any], Path]:
    """aiosmtpd arguments for a STARTTLS + AUTH relay with a certificate from a CA of our own, and the CA file."""
    import trustme
    from aiosmtpd.smtp import AuthResult

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    def authenticator(server: object, session: object, envelope: object, mechanism: str, auth_data: Any) -> AuthResult:
        return AuthResult(success=password_ok(auth_data.login, auth_data.password), handled=False)

    kwargs = {"tls_context": server_ctx, "require_starttls": True, "auth_require_tls": True,
              "authenticator": authenticator, "auth_required": True}
    return kwargs, ca_file


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Callable[..., bytes]]:
    """A fresh RSA key as a PEM file, and a DNS lookup for dkimpy that serves its public half for
    selector ``nl2026`` at example.org (the only name it answers)."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"nl2026._domainkey.example.org."
        return b"v=DKIM1; k=rsa; p=" + public

    return pem, dns


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        need("Debian's chromium is not installed (bash .ci/run installs it)")
    return path


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield browser
        browser.close()


@contextlib.contextmanager
def live_server(app: Any, port: int, **options: Any) -> Iterator[str]:
    """``app`` under a real uvicorn on 127.0.0.1:``port`` in a thread, for browser tests: its base URL, then stopped."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


PG_URL = os.environ.get("NEWSLETTER_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL for a fresh, empty PostgreSQL schema (its own search_path), dropped afterwards."""
    import secrets

    import sqlalchemy as sa

    admin = sa.create_engine(PG_URL)
    schema = f"nl_test_{secrets.token_hex(4)}"
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        need(f"PostgreSQL is not reachable at {PG_URL}: {str(exc.orig).strip().splitlines()[0]}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a real SQLite file and on a real PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")
