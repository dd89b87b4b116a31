"""``newsletter keys …``: which key the database signs links with, and moving it to a new one (keys.py)."""

from __future__ import annotations

import click

from .. import keys
from ..clock import utcnow
from .base import Group, State, cli, pass_state


@cli.group("keys", cls=Group)
def keys_group() -> None:
    """The key that signs every link: status, rotate. Fingerprints only: a key is never printed."""


@keys_group.command("status")
@pass_state
def keys_status(state: State) -> None:
    """Whether secret_key is the key the database signs with, and the retired key's window.

    Example: newsletter keys status
    """
    for line in _lines(keys.status(state.config, state.engine)):
        click.echo(line)


@keys_group.command("rotate")
@pass_state
def keys_rotate(state: State) -> None:
    """Sign with the new secret_key; the old one (previous_secret_key) verifies for previous_key_days.

    Run it once with both keys set; then restart every service with the new secret_key (and previous_secret_key
    until the window ends). Without previous_secret_key the old key is the database's own, if it had one.

    Example: NEWSLETTER_NEWSLETTER__SECRET_KEY=new NEWSLETTER_NEWSLETTER__PREVIOUS_SECRET_KEY=old newsletter keys rotate
    """
    done = keys.rotate(state.config, state.engine, utcnow())
    assert done.until is not None
    click.echo(f"Rotated: new links are signed with key {done.mine}; links signed with key {done.retired} "
               f"verify until {done.until:%Y-%m-%d %H:%M} UTC. Restart every service with the new secret_key.")


def _lines(now: keys.Status) -> list[str]:
    same = "the key the database signs with" if now.mine == now.signs else \
        "not yet used to sign" if now.signs is None else f"NOT the database's key ({now.signs}): run `keys rotate`"
    lines = [f"secret_key ({now.source}): key {now.mine}, {same}"]
    if now.retired and now.until is not None:
        lines.append(f"previous key {now.retired}: retired {now.retired_at:%Y-%m-%d %H:%M} UTC, "
                     f"verifies until {now.until:%Y-%m-%d %H:%M} UTC")
    return lines
