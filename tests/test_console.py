"""The operator's console (#22): accounts, sessions, roles, lock-out, API tokens and the audit log, through real
requests on a real SQLite file, the users made by the same library functions `newsletter admin` calls."""

from __future__ import annotations

from datetime import timedelta

import pytest

from newsletter import accounts, audit

from .conftest import invoke
from .console import PASSWORD, SECRET, Console, csrf, login, post


@pytest.fixture
def console(make_config):
    made = Console(make_config(f'[newsletter]\nsecret_key = "{SECRET}"\n'))
    yield made
    made.close()


def test_signing_in_opens_the_console_and_signing_out_closes_it(console):
    """A right password gets a session cookie (HttpOnly, SameSite=Strict) and the dashboard; after sign-out the
    same client gets the sign-in form (401)."""
    client = console.client()
    assert client.get("/admin/").status_code == 401
    answer = login(client, "ada-operator", PASSWORD)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/"
    cookie = answer.headers["set-cookie"]
    assert "nl_admin=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    page = client.get("/admin/")
    assert page.status_code == 200 and "ada-operator (operator)" in page.text
    assert post(client, "/admin/logout", {}).status_code == 303
    assert client.get("/admin/").status_code == 401


def test_a_wrong_password_is_refused_and_the_account_locks_after_five(console):
    """Five wrong passwords lock the account for 15 minutes even against the right one; then it opens again.
    Each refusal is in the audit log."""
    client = console.client()
    for _ in range(accounts.MAX_FAILURES):
        assert login(client, "ada-admin", "wrong password!").status_code == 401
    locked = login(client, "ada-admin", PASSWORD)
    assert locked.status_code == 401 and "locked until" in locked.text
    console.clock.at += accounts.LOCK_FOR + timedelta(seconds=1)
    assert login(client, "ada-admin", PASSWORD).status_code == 303
    with console.engine.connect() as conn:
        actions = [e.action for e in audit.recent(conn, 20)]
    assert actions.count("login.refused") == accounts.MAX_FAILURES + 1 and actions[0] == "login"


def test_logging_out_everywhere_ends_every_session_of_the_user(console):
    """Two browsers of one user: "sign out everywhere" in one ends the other's session too."""
    first, second = console.signed_in("admin"), console.signed_in("admin")
    assert second.get("/admin/").status_code == 200
    assert post(first, "/admin/logout-everywhere", {}).status_code == 303
    assert second.get("/admin/").status_code == 401


def test_a_form_without_its_csrf_field_is_refused(console):
    """A console POST without the CSRF field of the signed-in browser changes nothing (403)."""
    client = console.signed_in("admin")
    answer = client.post("/admin/users", data={"name": "mallory", "role": "admin", "password": PASSWORD})
    assert answer.status_code == 403
    with console.engine.connect() as conn:
        assert "mallory" not in [u.name for u in accounts.users(conn)]


def test_admins_add_users_and_tokens_and_every_action_is_audited(console):
    """An admin adds a user and an API token (shown once) and revokes it; each is one audit line naming them."""
    client = console.signed_in("admin")
    assert post(client, "/admin/users", {"name": "bob", "role": "editor", "password": PASSWORD},
                "/admin/users").status_code == 303
    made = post(client, "/admin/tokens", {"name": "ci", "role": "operator"}, "/admin/users")
    secret = made.text.split('<code id="new-token">')[1].split("</code>")[0]
    assert secret.startswith("nl_")
    assert client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"}).json() == \
        {"name": "ci", "role": "operator"}
    with console.engine.connect() as conn:
        tid = accounts.tokens(conn)[0].id
    assert post(client, f"/admin/tokens/{tid}/revoke", {}, "/admin/users").status_code == 303
    assert client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    log = client.get("/admin/audit").text
    assert "user:ada-admin" in log and "user.add" in log and "token.create" in log and "token.revoke" in log
    assert secret not in log


def test_admin_cli_adds_a_user_from_stdin_and_never_asks_a_script(make_config, runner):
    """`admin add-user --password-stdin` reads the password from a pipe; without it a script is refused, not asked."""
    config = make_config(f'[newsletter]\nsecret_key = "{SECRET}"\n')
    from newsletter.cli import cli
    done = runner.invoke(cli, ["--config", str(config), "admin", "add-user", "ada", "--role", "admin",
                               "--password-stdin"], input=PASSWORD + "\n")
    assert done.exit_code == 0, done.output
    refused = runner.invoke(cli, ["--config", str(config), "admin", "add-user", "bob", "--role", "editor"])
    assert refused.exit_code == 1 and "--password-stdin" in refused.output
    short = runner.invoke(cli, ["--config", str(config), "admin", "add-user", "cy", "--role", "editor",
                                "--password-stdin"], input="short\n")
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    assert "ada  admin" in invoke(runner, config, "admin", "users").output
    token = invoke(runner, config, "admin", "token", "ci", "--role", "editor").output.splitlines()[0]
    assert token.startswith("nl_")
    assert "cli  user.add  ada" in invoke(runner, config, "admin", "audit").output


def test_the_login_form_sends_you_back_only_within_the_console(console):
    """After sign-in the browser goes to the console page it asked for, never to another site."""
    client = console.client()
    data = {"csrf": csrf(client), "name": "ada-editor", "password": PASSWORD}
    assert client.post("/admin/login", data={**data, "next": "//evil.example/x"}).headers["location"] == "/admin/"
    client = console.client()
    data["csrf"] = csrf(client)
    assert client.post("/admin/login", data={**data, "next": "/audit"}).headers["location"] == "/admin/audit"
