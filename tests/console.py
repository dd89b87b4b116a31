"""The console under test: the web app on a real SQLite file (or PostgreSQL), users of each role made through the
library the CLI uses, and TestClients signed in as them (their session cookie from a real POST /admin/login)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from newsletter import accounts, store
from newsletter.config import load_config
from newsletter.web import create_app

from .conftest import ManualClock

SECRET = "console-test-secret-0123456789abcdef"
PASSWORD = "correct horse battery"
HOST = "http://localhost"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Console:
    """The app, its database, a clock tests move, and one user per role (``ada-editor``, …)."""

    def __init__(self, config_path: Path, roles: tuple[str, ...] = accounts.ROLES) -> None:
        self.config = load_config(config_path)
        self.engine = store.engine_for(self.config.database_url)
        store.migrate(self.engine)
        self.clock = ManualClock()
        self.app = create_app(self.config, self.engine, now=self.clock)
        with self.engine.begin() as conn:
            for role in roles:
                accounts.add_user(conn, f"ada-{role}", role, PASSWORD, self.clock.now())

    def client(self, peer: str = "127.0.0.1") -> TestClient:
        return TestClient(self.app, base_url=HOST, client=(peer, 50000), follow_redirects=False)

    def signed_in(self, role: str) -> TestClient:
        """A client with the session of ``ada-<role>``, from the login form."""
        client = self.client()
        login(client, f"ada-{role}", PASSWORD)
        return client

    def close(self) -> None:
        self.engine.dispose()


def csrf(client: TestClient, path: str = "/admin/login") -> str:
    """The CSRF field of the page at ``path`` (getting it sets the CSRF cookie too)."""
    page = client.get(path)
    found = _CSRF.search(page.text)
    assert found, f"{path}: no CSRF field ({page.status_code})"
    return found.group(1)


def login(client: TestClient, name: str, password: str) -> Any:
    return client.post("/admin/login", data={"csrf": csrf(client), "name": name, "password": password, "next": "/"})


def post(client: TestClient, path: str, data: dict[str, str], page: str = "/admin/") -> Any:
    """A console form POST with a CSRF field taken from ``page``."""
    return client.post(path, data={"csrf": csrf(client, page), **data})
