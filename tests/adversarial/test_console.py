"""The console and the API seen by a stranger and by a user of a lower role: every route refuses, none leaks."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.routing import Mount, Route

from newsletter import accounts
from tests.console import PASSWORD, SECRET, Console

# Routes any visitor may reach: the sign-in form, the stylesheet, the API's description of itself.
PUBLIC = {"/admin/login", "/admin/static/admin.css", "/admin/static/admin.js", "/api/v1/openapi.json"}
SAMPLE = {"int": "1", "str": "2026-05-28", "path": "x"}
_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")


@pytest.fixture
def console(make_config):
    made = Console(make_config(f'[newsletter]\nsecret_key = "{SECRET}"\n'))
    yield made
    made.close()


def routes(console: Console) -> Iterator[tuple[str, str, str | None]]:
    """(method, path with sample parameters, the role its endpoint needs) of every console and API route."""
    for mount in console.app.routes:
        if isinstance(mount, Mount) and mount.path in ("/admin", "/api"):
            for route in mount.routes:
                assert isinstance(route, Route)
                path = mount.path + _PARAM.sub(lambda m: SAMPLE[m.group(2) or "str"], route.path)
                for method in sorted((route.methods or set()) - {"HEAD"}):
                    yield method, path, getattr(route.endpoint, "role", None)


@pytest.mark.attack(edge="console", attack="a console or API route added without a role check",
                    held="the route walk names it and fails")
def test_every_route_but_the_sign_in_form_needs_a_role(console):
    """No console or API route is reachable without a role check, except the few public ones named here."""
    unguarded = {path for _, path, role in routes(console) if role is None}
    assert unguarded <= PUBLIC, unguarded - PUBLIC
    assert len(list(routes(console))) >= 15


@pytest.mark.attack(edge="console", attack="every console and API route without a session or token",
                    held="401 on each, no data in the answer")
def test_without_a_session_or_token_every_route_refuses(console):
    """A stranger (no cookie, no token, or a forged one) gets 401 from every guarded route, with nothing of the
    list in the answer."""
    with console.engine.begin() as conn:
        _, secret = accounts.create_token(conn, "ci", "admin", "test", console.clock.now())
    client = console.client()
    forged = {"Authorization": "Bearer nl_" + "A" * 43, "Cookie": "nl_admin=eyJ1IjoxLCJlIjowfQ.forged.sig"}
    for method, path, role in routes(console):
        if role is None:
            continue
        for headers in ({}, forged):
            answer = client.request(method, path, headers=headers)
            assert answer.status_code == 401, (method, path, answer.status_code)
            assert "ada-" not in answer.text and secret not in answer.text and "@" not in answer.text


@pytest.mark.attack(edge="console", attack="every console and API route with a lower role",
                    held="403 on each, nothing done")
def test_a_lower_role_is_refused_everywhere_above_it(console):
    """A signed-in editor (and an editor's API token) gets 403 from every route that needs operator or admin."""
    editor = console.signed_in("editor")
    with console.engine.begin() as conn:
        _, secret = accounts.create_token(conn, "ed", "editor", "test", console.clock.now())
    checked = 0
    for method, path, role in routes(console):
        if role is None or accounts.allows("editor", role):
            continue
        client_headers = {"Authorization": f"Bearer {secret}"} if path.startswith("/api") else {}
        answer = editor.request(method, path, headers=client_headers,
                                data={"csrf": "x"} if method == "POST" and path.startswith("/admin") else None)
        assert answer.status_code == 403, (method, path, answer.status_code)
        checked += 1
    assert checked >= 8
    with console.engine.connect() as conn:
        assert len(accounts.users(conn)) == 3  # no user added or removed by the editor's tries


@pytest.mark.attack(edge="console", attack="guessing console passwords",
                    held="locked after 5 wrong ones; 10 tries per client per 5 minutes")
def test_guessing_passwords_locks_the_account_and_limits_the_client(console):
    """Five wrong passwords lock the account even for the right one; more tries from one client are told 429."""
    client = console.client("203.0.113.9")
    codes = []
    for n in range(11):
        page = client.get("/admin/login")
        field = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert field
        codes.append(client.post("/admin/login", data={"csrf": field.group(1), "name": "ada-admin",
                                                       "password": PASSWORD if n == 5 else f"guess {n}"}).status_code)
    assert codes[:10] == [401] * 10 and codes[10] == 429
