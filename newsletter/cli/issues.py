"""``newsletter issue …`` and ``newsletter preview``: the editor's commands."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from .. import lifecycle, spamcheck
from ..clock import utcnow
from ..config import base_url_warning
from ..content import find_issue, issue_files, load_issue, new_issue_text
from ..errors import NewsletterError
from ..lifecycle import Readiness
from ..preview import write_preview
from ..render import Renderer
from ..send.campaign import issue_warnings
from .base import Group, State, cli, console, group_option, pass_state

READY_WORDS = {Readiness.FILE: "yes (file)", Readiness.APPROVED: "yes (approved)",
               Readiness.CHANGED: "no: changed since approval", Readiness.DRAFT: "no"}


@cli.group(cls=Group)
def issue() -> None:
    """Weekly issue files in issues/."""


@issue.command("list")
@pass_state
def issue_list(state: State) -> None:
    """List the issue files, newest last.

    Example: newsletter issue list
    """
    table = Table("issue", "title", "papers", "ready")
    with state.engine.connect() as conn:
        approved = lifecycle.approved_hashes(conn)
    for path in issue_files(state.config.path("issues")):
        try:
            item = load_issue(path, state.areas)
            ready = READY_WORDS[lifecycle.readiness(item, approved)]
            table.add_row(item.slug, item.title, str(len(item.papers)), ready)
        except NewsletterError as exc:
            table.add_row(path.stem, f"[red]invalid: {escape(str(exc).splitlines()[0])}[/red]", "", "")
    console.print(table)


@issue.command("new")
@click.argument("day", metavar="[DATE]", required=False, type=click.DateTime(formats=["%Y-%m-%d"]))
@pass_state
def issue_new(state: State, day: datetime | None) -> None:
    """Write a draft issue file for DATE (default: the day of the next weekly send) to fill in.

    Example: newsletter issue new 2026-06-04
    """
    from .. import schedule

    config = state.config
    date = day.date() if day else schedule.next_runs(config.schedule, utcnow(), 1)[0].date()
    files = issue_files(config.path("issues"))
    try:
        title = load_issue(files[-1], state.areas).title if files else "Paper Digest"
    except NewsletterError:  # the latest file is broken: its title is not worth copying
        title = "Paper Digest"
    path = config.path("issues") / f"{date.isoformat()}.toml"
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(new_issue_text(date, title, state.areas))
    except FileExistsError:
        raise click.ClickException(f"{path} exists already: edit it, or name another date") from None
    click.echo(f"Wrote {path}: a draft (ready = false) with one example paper; replace every EXAMPLE: value "
               f"(`newsletter issue check {date}` names those left), `newsletter preview {date} --serve` "
               f"shows it as you edit.")


@issue.command("check")
@click.argument("ref", metavar="[ISSUE]", required=False)
@click.option("--spam", is_flag=True, help="Also score each group's message with SpamAssassin (local tests).")
@pass_state
def issue_check(state: State, ref: str | None, spam: bool) -> None:
    """Validate one issue file (a stem like 2026-05-17, or latest) or all of them.

    Example: newsletter issue check 2026-05-28 --spam
    """
    if spam and not spamcheck.spamassassin():
        click.echo("spamassassin is not installed: no spam scores (apt-get install spamassassin)")
        spam = False
    issues_dir = state.config.path("issues")
    paths = [find_issue(issues_dir, ref)] if ref else issue_files(issues_dir)
    errors = 0
    if warning := base_url_warning(state.config.newsletter.base_url):
        click.echo(warning, err=True)
    for path in paths:
        try:
            item = load_issue(path, state.areas)
            console.print(f"ok  {path.name}: {len(item.papers)} papers, {'ready' if item.ready else 'draft'}")
            for line in issue_warnings(state.config, item):  # a group's message Gmail would clip
                click.echo(line, err=True)
            for score in spamcheck.score_issue(state.config, item) if spam else ():
                click.echo(f"    spam {score.line()}")
        except NewsletterError as exc:  # every mistake of the file, one line each
            for line in str(exc).splitlines():
                errors += 1
                click.echo(f"error: {line}", err=True)
    if errors:
        raise SystemExit(1)


@issue.command("approve")
@click.argument("ref", metavar="ISSUE")
@pass_state
def issue_approve(state: State, ref: str) -> None:
    """Mark an issue ready for the weekly send without editing its file: these bytes of it, so an edit
    after approval needs approving again (`issue list` shows it as changed since approval).

    Approved after its slot, within [schedule] grace_hours, it is sent at once; later, it says how to send it.

    Example: newsletter issue approve 2026-05-28
    """
    from .. import schedule

    item = load_issue(find_issue(state.config.path("issues"), ref), state.areas)
    with state.engine.begin() as conn:
        lifecycle.approve(conn, item, utcnow())
    click.echo(schedule.after_approval(state.config, state.engine, item.slug, utcnow()))


@cli.command()
@click.argument("ref", metavar="ISSUE", default="latest")
@click.option("--areas", help="Only this group, e.g. LLM,RL (default: every group).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder to write to.")
@click.option("--mjml", "with_mjml", is_flag=True, help="Also write each group's MJML source (<group>.mjml).")
@click.option("--serve", is_flag=True, help="Open a live page on 127.0.0.1 that re-renders on each save.")
@click.option("--port", type=click.IntRange(1, 65535), default=8025, show_default=True, help="Port for --serve.")
@pass_state
def preview(state: State, ref: str, areas: str | None, out: Path | None, with_mjml: bool, serve: bool,
            port: int) -> None:
    """Write the HTML and text of each group of an issue, with an index page. No database, no SMTP.

    With --serve, a live page instead: every group, desktop and phone widths, the text part, sizes,
    spam scores, the file's mistakes, and a "send me a test" button ([newsletter] editor).

    Example: newsletter preview latest --areas LLM,RL
    """
    config = state.config
    if serve:
        from ..areas import group_key
        from ..web import live

        path = find_issue(config.path("issues"), ref)
        chosen = group_option(config, areas)
        click.echo(f"Live preview of {path.name}: http://{live.HOST}:{port}/ (Ctrl-C stops it)")
        live.serve(config, path, port, lambda: state.engine,
                   group_key(chosen, state.areas) if chosen else "all")
        return
    item = load_issue(find_issue(config.path("issues"), ref), state.areas)
    group = group_option(config, areas)
    target = out or config.path("preview") / item.slug
    index = write_preview(Renderer(config), item, target, [group] if group else None, mjml=with_mjml)
    click.echo(f"Preview written: {index}")
