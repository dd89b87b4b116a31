"""``newsletter pause``, ``resume`` and ``cancel``: an operator's hand on a running send (send/control.py)."""

from __future__ import annotations

import click

from .. import audit
from ..clock import utcnow
from ..content import find_issue, load_issue
from ..send import Campaign, Mode, Options, control
from .base import State, cli, confirm, pass_state, yes_option
from .sending import CliEvents, print_run

ACTOR = "cli"


@cli.command()
@click.argument("ref", metavar="ISSUE")
@pass_state
def pause(state: State, ref: str) -> None:
    """Pause an issue's send wherever it runs: `newsletter send`, the console, every `newsletter worker`.

    Each stops at its next batch of rows (a send started from this machine's console at once); rows
    claimed but not sent go back to the queue. `newsletter resume ISSUE` goes on.

    Example: newsletter pause 2026-05-28
    """
    slug = _slug(state, ref)
    now = utcnow()
    with state.engine.begin() as conn:
        audit.audited(control.pause, ACTOR, "issue.pause", slug, now)(conn, slug, ACTOR, now)
    click.echo(f"{slug}: paused; every process sending it stops at its next batch (`newsletter resume {slug}` "
               "goes on)")


@cli.command()
@click.argument("ref", metavar="ISSUE")
@click.option("--no-wait", is_flag=True, help="Do not wait for deferred rows to come due; a later run retries them.")
@pass_state
def resume(state: State, ref: str, no_wait: bool) -> None:
    """Go on with a paused send (paused by an operator, or by a fault you have mended): it delivers here, and
    `newsletter worker`s take part too. Rows sent already are never sent again.

    Example: newsletter resume 2026-05-28
    """
    path = find_issue(state.config.path("issues"), ref)
    item = load_issue(path, state.areas)
    now = utcnow()
    with state.engine.begin() as conn:
        due = audit.audited(control.resume, ACTOR, "issue.resume", item.slug, now)(conn, item.slug, now)
    click.echo(f"{item.slug}: sending again, {due} row(s) to deliver.")
    options = Options(wait=not no_wait)
    run = Campaign(state.config, state.engine, item, path=path, events=CliEvents(item.slug)).run(Mode.SEND, options)
    print_run(item.slug, run, options)


@cli.command()
@click.argument("ref", metavar="ISSUE")
@yes_option("Do not ask for confirmation (a script without a terminal must pass it).")
@pass_state
def cancel(state: State, ref: str, yes: bool) -> None:
    """End an issue's send for good: the rows still queued or deferred are skipped and never sent; what was
    sent stays in the report. The issue counts as sent.

    Example: newsletter cancel 2026-05-28 --yes
    """
    slug = _slug(state, ref)
    confirm(f"Cancel the send of {slug}? Its rows still to deliver are never sent", yes, f"cancel {slug}")
    now = utcnow()
    with state.engine.begin() as conn:
        skipped = audit.audited(control.cancel, ACTOR, "issue.cancel", slug, now)(conn, slug, ACTOR, now)
    click.echo(f"{slug}: cancelled; {skipped} row(s) skipped, nothing sent is touched (`newsletter report {slug}`)")


def _slug(state: State, ref: str) -> str:
    """The issue ``ref`` names: a date (its file need not exist any more), or latest."""
    return find_issue(state.config.path("issues"), ref).stem if ref == "latest" else ref
