"""``newsletter send``, ``report``, ``worker`` and ``schedule``: thin wrappers over ``send.Campaign``."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ..audience import normalize_email
from ..clock import utcnow
from ..content import find_issue, load_issue
from ..links import links_for
from ..mailsink import write_private
from ..send import Campaign, Events, Mode, Options, Outcome, Plan, Report, Run, Started, Worker, report
from ..send.clickreport import ClickReport, click_report
from ..send.insights import Insights, insights, sparkline
from ..send.outbox import worker_name
from ..send.report import COMPLAINT_LINE
from ..send.report_page import render_page
from .base import (
    State,
    ask_first,
    cli,
    console,
    db_label,
    group_option,
    log_to_stdout,
    pass_state,
    progress,
    stop_on_signals,
    yes_option,
)


class CliEvents(Events):
    """What a send prints as it goes: what was queued or found, a progress bar on a terminal."""

    def __init__(self, slug: str) -> None:
        self.slug = slug

    def started(self, started: Started) -> None:
        if started.created is not None:
            click.echo(f"{self.slug}: {started.created.queued} queued, {started.created.skipped} skipped "
                       "(no paper this week meets their areas).")
        if started.recovered_unknown:
            click.echo(f"{started.recovered_unknown} row(s) were mid-transfer when a send stopped: marked unknown, "
                       "not resent (use --resend-unknown to resend them).", err=True)

    def progress(self, started: Started) -> contextlib.AbstractContextManager[Callable[[int], None]]:
        return progress(f"Sending {self.slug}", total=started.due, rate=True)

    def warning(self, line: str) -> None:
        click.echo(line, err=True)


@cli.command()
@click.argument("ref", metavar="ISSUE")
@click.option("--dry-run", is_flag=True, help="Say how many would get which group and how many are skipped.")
@click.option("--test-to", metavar="ADDRESS", help="Send one [Test] copy to this address only (drafts too); "
              "the outbox is untouched.")
@click.option("--areas", help="With --test-to: the group to send (default: all areas).")
@click.option("--resend-unknown", is_flag=True,
              help="Also resend rows whose fate is unknown (the process died during their SMTP transfer, "
                   "or the relay gave no usable answer after the message's final dot).")
@click.option("--no-wait", is_flag=True, help="Do not wait for deferred rows to come due; a later run retries them.")
@click.option("--enqueue", is_flag=True, help="Only create the outbox; `newsletter worker` processes deliver it.")
@click.option("--new-subscribers", is_flag=True,
              help="Send an issue sent before to the active subscribers it has not reached (joined since).")
@yes_option("Do not ask for confirmation on a terminal (scripts never are asked).")
@pass_state
def send(state: State, ref: str, dry_run: bool, test_to: str | None, areas: str | None, resend_unknown: bool,
         no_wait: bool, enqueue: bool, new_subscribers: bool, yes: bool) -> None:
    """Send an issue to every active subscriber, or resume its send. A sent row is never sent again.

    Only a ready issue (ready = true, or `newsletter issue approve`) goes to the list. On a terminal
    it first shows the issue, its groups and the number of recipients and asks to go on. A send that
    would reach no one is refused and the issue stays unsent.

    Example: newsletter send 2026-05-28 --new-subscribers
    """
    config = state.config
    path = find_issue(config.path("issues"), ref)
    item = load_issue(path, state.areas)
    if areas and not test_to:
        raise click.UsageError("--areas goes with --test-to (a real send gives each subscriber their own group)")
    if new_subscribers and test_to:
        raise click.UsageError("--new-subscribers goes to the list, --test-to to one address: choose one")
    mode = Mode.TEST if test_to else Mode.DRY_RUN if dry_run else Mode.ENQUEUE if enqueue else Mode.SEND
    options = Options(resend_unknown=resend_unknown, wait=not no_wait, test_to=_address(test_to),
                      test_areas=group_option(config, areas) or (), new_subscribers=new_subscribers)
    campaign = Campaign(config, state.engine, item, path=path, events=CliEvents(item.slug))
    if mode in (Mode.SEND, Mode.ENQUEUE):
        if not new_subscribers and _already_sent(state, item.slug, resend_unknown):
            return
        if ask_first(yes):
            _confirm(state, campaign, mode, options)
    print_run(item.slug, campaign.run(mode, options), options)


def _already_sent(state: State, slug: str, resend_unknown: bool) -> bool:
    """An issue whose send finished: say so (with its report) instead of reprinting it as if it had just run."""
    with state.engine.connect() as conn:
        found = report(conn, slug)
    if found is None or found.state != "sent" or (resend_unknown and found.counts.get("unknown")):
        return False
    click.echo(f"{slug} was sent already: nothing more to send (--resend-unknown resends rows whose fate is "
               "unknown; --new-subscribers sends it to those who joined since). Its report:")
    print_report(found)
    return True


def _confirm(state: State, campaign: Campaign, mode: Mode, options: Options) -> None:
    """On a terminal: what is about to go out, and a question; no answer, nothing sent. A send that would
    reach no one is not asked about: the library refuses it in one line."""
    plan = campaign.plan(options.new_subscribers)
    if not plan.groups:
        return
    table = Table("group", "subscribers")
    for key, count in plan.groups.items():
        table.add_row(key, str(count))
    click.echo(f"{campaign.issue.slug}: {campaign.issue.title}")
    console.print(table)
    total = sum(plan.groups.values())
    where = "the outbox, for `newsletter worker`" if mode is Mode.ENQUEUE else _relay(state)
    who = "new subscriber(s)" if options.new_subscribers else "subscriber(s)"
    click.confirm(f"Send {campaign.issue.slug} to {total} {who} ({plan.skipped} skipped) via {where}?", abort=True)


def _relay(state: State) -> str:
    transport = state.config.transport
    if transport.kind == "directory":
        return f"files in {transport.directory}"
    return f"{state.config.smtp.host}:{state.config.smtp.port}"


def _address(test_to: str | None) -> str:
    if not test_to:
        return ""
    try:
        return normalize_email(test_to)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--test-to") from None


def print_run(slug: str, run: Run, options: Options) -> None:
    if run.plan is not None:
        _print_plan(slug, run.plan, options.new_subscribers)
    elif run.test is not None:
        if run.test.outcome is not Outcome.SENT:
            code = f"{run.test.code} " if run.test.code else ""
            hint = " (no relay there? `newsletter sink` runs a local one)" if run.test.code is None else ""
            raise click.ClickException(f"test copy to {options.test_to} not accepted: {code}{run.test.answer}{hint}")
        group = ", ".join(options.test_areas) or "all areas"
        click.echo(f"Test copy of {slug} ({group}) sent to {options.test_to}.")
    elif run.report is None and run.started is not None:
        created = run.started.created
        made = f"{created.queued} queued, {created.skipped} skipped" if created else "found"
        click.echo(f"{slug}: outbox {made}; {run.started.due} due for `newsletter worker`.")
    elif run.report is not None:
        print_report(run.report)
        if run.report.state == "paused":
            raise SystemExit(1)


def _print_plan(slug: str, found: Plan, new_subscribers: bool) -> None:
    who = "new subscribers" if new_subscribers else "subscribers"
    table = Table("group", who, title=f"{slug}: dry run, nothing sent")
    for key, count in found.groups.items():
        table.add_row(key, str(count))
    table.add_row("[dim]skipped: no paper meets their areas[/dim]", str(found.skipped))
    console.print(table)
    click.echo(f"Would send {sum(found.groups.values())} messages; {found.skipped} skipped.")
    if found.sent_before is not None and not new_subscribers:
        click.echo(f"{slug} has an outbox already ({found.sent_before}): `send` resumes it and mails no one twice; "
                   "`--new-subscribers --dry-run` counts who it has not reached.")


@cli.command("report")
@click.argument("ref", metavar="ISSUE", default="latest")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--html", "html", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write the report as one self-contained HTML page with charts.")
@pass_state
def report_cmd(state: State, ref: str, as_json: bool, html: Path | None) -> None:
    """Counts by state, the send rate, every failure with the server's answer, the outcome by receiving
    domain, the sends per minute, and the papers' click counts ([tracking] clicks).

    Example: newsletter report 2026-05-28 --json
    """
    slug = find_issue(state.config.path("issues"), ref).stem if ref == "latest" else ref
    with state.engine.connect() as conn:
        found = report(conn, slug)
        more = insights(conn, slug)
        clicks = click_report(conn, state.config, slug)
    if found is None or more is None or clicks is None:
        raise click.ClickException(f"issue {slug!r} has not been sent (no outbox in {db_label(state.engine)})")
    if html is not None:
        try:
            write_private(html, render_page(found, more, utcnow(), clicks).encode())  # it lists addresses: owner only
        except OSError as exc:
            raise click.ClickException(f"cannot write {html}: {exc.strerror or exc}") from None
        click.echo(f"Report page written to {html}", err=True)
    if as_json:
        click.echo(json.dumps({**found.as_json(), **more.as_json(), **clicks.as_json()}, indent=2, ensure_ascii=False))
    else:
        print_report(found, more)
        print_clicks(clicks)


def print_report(found: Report, more: Insights | None = None) -> None:
    table = Table(*found.counts, title=f"{found.issue}: {found.state}")
    table.add_row(*(str(n) for n in found.counts.values()))
    console.print(table)
    if found.rate:
        console.print(f"Send rate: {found.rate} messages/s")
    if any(found.feedback.values()):
        rates = found.rates()
        console.print("Came back: " + ", ".join(
            f"{k.replace('_', ' ')} {n}" + (f" ({rates[k]:.2%})" if rates[k] is not None else "")
            for k, n in found.feedback.items()))
        if (rates["complained"] or 0) >= COMPLAINT_LINE:
            line = f"Complaints at {rates['complained']:.2%}: above Gmail's {COMPLAINT_LINE:.1%} line"
            console.print(f"[red]{line}[/red]")
    if more is not None:
        _print_insights(more)
    if found.pause_reason:  # a fault's or an operator's pause, or an operator's cancel ("cancelled by …")
        label = "Paused: " if found.state == "paused" else ""
        console.print(f"[red]{label}{escape(found.pause_reason)}[/red]", markup=True)
    if found.failures:
        failures = Table("email", "code", "answer", title="Failures")
        for failure in found.failures:
            failures.add_row(escape(failure.email), str(failure.code or ""), escape(failure.answer))
        console.print(failures)
    if found.unknown:
        unknown = Table("email", "message id", "reason", title="Unknown: the relay may have them (not resent)")
        for row in found.unknown:
            unknown.add_row(escape(row.email), escape(row.message_id or ""), escape(row.answer))
        console.print(unknown)


def print_clicks(clicks: ClickReport) -> None:
    """The click counts ([tracking] clicks): the papers most clicked by link kind, then each area's."""
    if not clicks.total:
        off = "" if clicks.tracking else " ([tracking] clicks is off)"
        console.print(f"Clicks: none counted{off}")
        return
    kinds = clicks.by_kind()
    console.print(f"Clicks: {clicks.total} counted (" + ", ".join(f"{k} {n}" for k, n in kinds.items()) + ")")
    table = Table("paper", "areas", *kinds, "total", title=f"Most clicked papers (top {len(clicks.top())})")
    for paper in clicks.top():
        table.add_row(escape(paper.title), ", ".join(paper.areas), *(str(n) for n in paper.kinds.values()),
                      str(paper.total))
    console.print(table)
    for area in clicks.areas:
        top = "; ".join(escape(p.title) for p in area.top)
        console.print(f"  {escape(area.area)}: {area.clicks}" + (f" (most: {top})" if top else ""), highlight=False)


def _print_insights(more: Insights) -> None:
    """The outcome by receiving domain (top ones, then the rest together) and the sends per minute."""
    if more.domains:
        table = Table("domain", "messages", "sent", "deferred", "failed", "bounced",
                      title=f"By receiving domain (top {len(more.domains)} of {more.domain_count})",
                      caption="deferred: once or more; bounced: 5xx or hard bounce")
        for d in more.domains + ([more.other] if more.other else []):
            table.add_row(escape(d.domain), *(str(n) for n in (d.messages, d.sent, d.deferred, d.failed, d.bounced)))
        console.print(table)
    if more.per_minute:
        (at, peak), counts = max(more.per_minute, key=lambda m: m[1]), [n for _, n in more.per_minute]
        console.print(f"Sends per minute: peak {peak} at {at:%H:%M} UTC, mean {sum(counts) / len(counts):.1f} "
                      f"over {len(counts)} minute(s) with sends")
        console.print(f"  {sparkline(more.per_minute)}", highlight=False)


@cli.command("schedule")
@click.option("--show", is_flag=True, help="Print the next run times in the configured time zone and exit.")
@pass_state
def schedule_cmd(state: State, show: bool) -> None:
    """Run the weekly send (APScheduler) until SIGTERM or Ctrl-C; the job is kept in the database.

    Example: newsletter schedule --show
    """
    from .. import schedule
    from ..config import config_path

    cfg = state.config.schedule
    if show:
        click.echo(f"Weekly send: {cfg.day} {cfg.time} {cfg.timezone}, grace {cfg.grace_hours:g} h. Next runs:")
        for runtime in schedule.next_runs(cfg, utcnow()):
            click.echo(f"  {runtime:%a %Y-%m-%d %H:%M %Z (UTC%z)}")
        return
    links_for(state.config, state.engine)  # a key that is not the database's is refused now, not at the send
    log_to_stdout()
    schedule.run(state.config, config_path(state.config_file).resolve())


@cli.command("worker")
@click.option("--exit-when-idle", is_flag=True, help="Exit after a round that finds nothing to deliver (cron, tests).")
@pass_state
def worker_cmd(state: State, exit_when_idle: bool) -> None:
    """Deliver the outbox of every issue being sent, beside any number of other workers.

    Runs until SIGTERM or Ctrl-C (it finishes the message in flight and gives back its claims).

    Example: newsletter worker
    """
    links_for(state.config, state.engine)  # a key that is not the database's is refused now, not at the send
    log_to_stdout()
    worker = Worker(state.config, state.engine)
    stop_on_signals(worker.stop)
    totals = worker.run(exit_when_idle)
    click.echo(f"worker {worker_name()}: delivered {totals.delivered} in {totals.rounds} round(s)")


@cli.command("sink")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: [smtp] port, where sends go).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("build/sink"),
              show_default=True, help="Folder for the received messages, one .eml file each.")
@pass_state
def sink_cmd(state: State, host: str, port: int | None, out: Path) -> None:
    """A local SMTP server that keeps every message it is sent as an .eml file: for test sends and previews.

    Example: newsletter sink & newsletter send latest --test-to me@example.org
    """
    from ..mailsink import EmlHandler, start

    port = port or state.config.smtp.port
    stop = stop_on_signals()
    try:
        server = start(EmlHandler(out), host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(f"Receiving mail on {host}:{port}; each message is written to {out.resolve()}/ (Ctrl-C stops)")
    try:
        stop.wait()
    finally:
        server.stop()
