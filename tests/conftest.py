"""Shared fixtures: the repository's own config and content, temp configs, headless Chromium."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(reason: str) -> None:
    """Skip a test whose service is missing, saying why; in CI a missing service is a failure."""
    if IN_CI:
        pytest.fail(f"CI must run this test, but: {reason}")
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no NEWSLETTER_* variables from the shell that started them."""
    for key in list(os.environ):
        if key.upper().startswith("NEWSLETTER_"):
            monkeypatch.delenv(key)


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
