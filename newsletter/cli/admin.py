"""``newsletter admin …``: the operator's console's users and the API's tokens (accounts.py), and its audit log."""

from __future__ import annotations

import sys

import click

from .. import accounts, audit
from ..clock import utcnow
from .base import Group, State, cli, pass_state

ROLE = click.Choice(accounts.ROLES)


@cli.group("admin", cls=Group)
def admin() -> None:
    """Console users, API tokens and the audit log (the web console is /admin under `newsletter serve`)."""


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise click.ClickException("not a terminal, so not asked: pass --password-stdin and the password on stdin")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@admin.command("add-user")
@click.argument("name")
@click.option("--role", type=ROLE, required=True, help="editor, operator or admin.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@pass_state
def add_user(state: State, name: str, role: str, password_stdin: bool) -> None:
    """Add a console user; asks for the password twice (or reads it with --password-stdin).

    Example: newsletter admin add-user ada --role admin
    """
    password = _password(password_stdin)
    with state.engine.begin() as conn:
        made = accounts.add_user(conn, name, role, password, utcnow())
        audit.record(conn, "cli", "user.add", made.name, utcnow(), f"role {role}")
    click.echo(f"Added {made.name} ({made.role}): log in at /admin of `newsletter serve`.")


@admin.command("users")
@pass_state
def list_users(state: State) -> None:
    """List the console's users and their roles.

    Example: newsletter admin users
    """
    with state.engine.connect() as conn:
        for user in accounts.users(conn):
            locked = f"  locked until {user.locked_until:%Y-%m-%d %H:%M} UTC" if user.locked_until else ""
            click.echo(f"{user.name}  {user.role}{locked}")


@admin.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
@pass_state
def set_password(state: State, name: str, password_stdin: bool) -> None:
    """Set a user's password (and unlock it); every session of the user ends.

    Example: newsletter admin set-password ada
    """
    password = _password(password_stdin)
    with state.engine.begin() as conn:
        user = accounts.by_name(conn, name)
        accounts.set_password(conn, user.id, password)
        audit.record(conn, "cli", "user.password", name, utcnow())
    click.echo(f"Password of {name} set; its sessions have ended.")


@admin.command("remove-user")
@click.argument("name")
@pass_state
def remove_user(state: State, name: str) -> None:
    """Remove a console user (not the last admin).

    Example: newsletter admin remove-user bob
    """
    with state.engine.begin() as conn:
        accounts.remove_user(conn, accounts.by_name(conn, name).id)
        audit.record(conn, "cli", "user.remove", name, utcnow())
    click.echo(f"Removed {name}.")


@admin.command("token")
@click.argument("name")
@click.option("--role", type=ROLE, required=True, help="What the token may do: editor, operator or admin.")
@pass_state
def create_token(state: State, name: str, role: str) -> None:
    """Create an API bearer token; it is printed once, the database keeps only its hash.

    Example: newsletter admin token ci --role operator
    """
    with state.engine.begin() as conn:
        made, secret = accounts.create_token(conn, name, role, "cli", utcnow())
        audit.record(conn, "cli", "token.create", f"token #{made.id}", utcnow(), f"{made.name}, role {role}")
    click.echo(secret)
    click.echo(f"Token #{made.id} ({made.name}, {role}): send it as `Authorization: Bearer …`; it is not shown again.",
               err=True)


@admin.command("tokens")
@pass_state
def list_tokens(state: State) -> None:
    """List API tokens (never the tokens themselves).

    Example: newsletter admin tokens
    """
    with state.engine.connect() as conn:
        for tok in accounts.tokens(conn):
            used = f"last used {tok.last_used_at:%Y-%m-%d %H:%M}" if tok.last_used_at else "never used"
            state_ = f"revoked {tok.revoked_at:%Y-%m-%d}" if tok.revoked_at else used
            click.echo(f"#{tok.id}  {tok.name}  {tok.role}  by {tok.created_by}  {state_}")


@admin.command("revoke")
@click.argument("token_id", type=click.IntRange(1))
@pass_state
def revoke(state: State, token_id: int) -> None:
    """Revoke an API token at once.

    Example: newsletter admin revoke 3
    """
    with state.engine.begin() as conn:
        accounts.revoke_token(conn, token_id, utcnow())
        audit.record(conn, "cli", "token.revoke", f"token #{token_id}", utcnow())
    click.echo(f"Token #{token_id} revoked.")


@admin.command("audit")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@pass_state
def audit_log(state: State, limit: int) -> None:
    """The newest entries of the audit log: who did what, when.

    Example: newsletter admin audit --limit 20
    """
    with state.engine.connect() as conn:
        for entry in audit.recent(conn, limit):
            click.echo(f"{entry.at:%Y-%m-%d %H:%M:%S}  {entry.actor}  {entry.action}  {entry.target}"
                       + (f"  ({entry.detail})" if entry.detail else ""))
