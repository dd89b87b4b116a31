"""The ``newsletter`` command: thin wrappers over the library, one group, an Example in each help."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text
from rich.table import Table
from sqlalchemy.engine import Engine

from . import audience, deliver, outbox, store
from .config import Config, config_path, load_config
from .content import Issue, find_issue, issue_files, load_issue
from .errors import NewsletterError
from .preview import write_preview
from .render import Renderer, normalize_areas
from .smtp import Outcome

console = Console(highlight=False)
_STATUSES = ("pending", "active", "unsubscribed", "bounced", "blocked")


class _Group(click.Group):
    """Turns a user's mistake (NewsletterError) into a one-line error and exit 1, no traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            raise click.ClickException(str(exc)) from None


class State:
    """What every command may need, made on first use."""

    def __init__(self, config_file: str | None) -> None:
        self._config_file = config_file
        self._config: Config | None = None
        self._engine: Engine | None = None

    @property
    def config_file(self) -> str | None:
        return self._config_file

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self._config_file)
        return self._config

    @property
    def engine(self) -> Engine:
        """The database, checked to be at the latest schema (SQLite is migrated on the spot)."""
        if self._engine is None:
            self._engine = store.connect(store.engine_for(self.config.database_url))
        return self._engine

    def close(self) -> None:
        """Give the database connections back when the command ends (PostgreSQL notices leaks)."""
        if self._engine is not None:
            self._engine.dispose()

    @property
    def areas(self) -> list[str]:
        return self.config.newsletter.areas


pass_state = click.make_pass_decorator(State)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="NEWSLETTER_CONFIG",
              help="Config file (default: ./config.toml; env NEWSLETTER_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Weekly email digest of curated machine-learning papers."""
    ctx.obj = State(config_file)
    ctx.call_on_close(ctx.obj.close)


def parse_areas(config: Config, value: str | None) -> tuple[str, ...] | None:
    """``--areas LLM,RL`` → the group, checked against the configured areas."""
    if value is None:
        return None
    wanted = [a.strip() for a in value.replace(";", ",").split(",") if a.strip()]
    known = {a.casefold() for a in config.newsletter.areas}
    unknown = [a for a in wanted if a.casefold() not in known]
    if unknown:
        raise click.BadParameter(f"unknown area {unknown[0]!r} (choose from {', '.join(config.newsletter.areas)})",
                                 param_hint="--areas")
    return normalize_areas(wanted, config.newsletter.areas)


# --- issues ----------------------------------------------------------------------------------


@cli.group(cls=_Group)
def issue() -> None:
    """Weekly issue files in issues/."""


@issue.command("list")
@pass_state
def issue_list(state: State) -> None:
    """List the issue files, newest last.

    Example: newsletter issue list
    """
    table = Table("issue", "title", "papers", "ready")
    for path in issue_files(state.config.path("issues")):
        try:
            item = load_issue(path, state.config.newsletter.areas)
            table.add_row(item.slug, item.title, str(len(item.papers)), "yes" if item.ready else "no")
        except NewsletterError as exc:
            table.add_row(path.stem, f"[red]invalid: {exc}[/red]", "", "")
    console.print(table)


@issue.command("check")
@click.argument("ref", metavar="[ISSUE]", required=False)
@pass_state
def issue_check(state: State, ref: str | None) -> None:
    """Validate one issue file (a stem like 2026-05-17, or latest) or all of them.

    Example: newsletter issue check 2026-05-28
    """
    issues_dir = state.config.path("issues")
    paths = [find_issue(issues_dir, ref)] if ref else issue_files(issues_dir)
    errors = 0
    for path in paths:
        try:
            item = load_issue(path, state.config.newsletter.areas)
            console.print(f"ok  {path.name}: {len(item.papers)} papers, {'ready' if item.ready else 'draft'}")
        except NewsletterError as exc:
            errors += 1
            click.echo(f"error: {exc}", err=True)
    if errors:
        raise SystemExit(1)


@issue.command("approve")
@click.argument("ref", metavar="ISSUE")
@pass_state
def issue_approve(state: State, ref: str) -> None:
    """Mark an issue ready for the weekly send without editing its file.

    Example: newsletter issue approve 2026-05-28
    """
    from . import schedule

    item = load_issue(find_issue(state.config.path("issues"), ref), state.areas)
    with state.engine.begin() as conn:
        schedule.approve(conn, item.slug, outbox.utcnow())
    click.echo(f"Approved {item.slug}: the weekly send of its week will send it.")


# --- preview ---------------------------------------------------------------------------------


@cli.command()
@click.argument("ref", metavar="ISSUE", default="latest")
@click.option("--areas", help="Only this group, e.g. LLM,RL (default: every group).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Folder to write to.")
@pass_state
def preview(state: State, ref: str, areas: str | None, out: Path | None) -> None:
    """Write the HTML and text of each group of an issue, with an index page. No database, no SMTP.

    Example: newsletter preview latest --areas LLM,RL
    """
    index = _preview(state.config, ref, areas, out)
    click.echo(f"Preview written: {index}")


def _preview(config: Config, ref: str, areas: str | None, out: Path | None) -> Path:
    path = find_issue(config.path("issues"), ref)
    item = load_issue(path, config.newsletter.areas)
    group = parse_areas(config, areas)
    target = out or config.path("preview") / item.slug
    return write_preview(Renderer(config), item, target, [group] if group else None)


# --- database and subscribers ----------------------------------------------------------------


@cli.command()
@pass_state
def init(state: State) -> None:
    """Create the database or bring it to the latest schema; harmless to run again.

    Example: newsletter init
    """
    engine = store.engine_for(state.config.database_url)
    try:
        before, after = store.migrate(engine)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    if before == after:
        click.echo(f"Database {where} is up to date (schema {after}).")
    else:
        click.echo(f"Database {where}: schema {before or 'empty'} -> {after}.")


@cli.group(cls=_Group)
def subscribers() -> None:
    """The subscriber list: add, import, export, list, choose areas, unsubscribe, erase."""


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="Display name used in the greeting and the To header.")
@click.option("--areas", default="", help="Chosen areas, e.g. LLM,RL (default: all areas).")
@pass_state
def subscribers_add(state: State, email: str, name: str, areas: str) -> None:
    """Add one active subscriber.

    Example: newsletter subscribers add ada@example.org --name "Ada Lovelace" --areas LLM,RL
    """
    with state.engine.begin() as conn:
        sub = audience.add(conn, email, name, areas, state.areas, source="cli")
    click.echo(f"Added {sub.email} ({_areas_label(sub.areas)}).")


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and count what would change; write nothing.")
@click.option("--strict", is_flag=True, help="Import nothing unless every row is good.")
@pass_state
def subscribers_import(state: State, file: Path, dry_run: bool, strict: bool) -> None:
    """Import a CSV file with the header email,name,areas (areas separated by ';', empty = all).

    New addresses are added, known ones get the file's name and areas; unsubscribed, bounced,
    blocked and erased addresses are never made active again. Bad rows are listed with their
    line numbers and not imported; the command then exits with status 1.

    Example: newsletter subscribers import subscribers/sample.csv --dry-run
    """
    engine = state.engine
    with engine.connect() as conn, _progress(f"Importing {file.name}") as tick:
        with conn.begin() as txn:
            result = audience.import_csv(conn, file, state.areas, strict=strict, dry_run=dry_run, progress=tick)
            if not result.written:
                txn.rollback()
    _print_import(file, result, dry_run, strict)
    if result.rejected:
        raise SystemExit(1)


def _print_import(file: Path, result: audience.ImportResult, dry_run: bool, strict: bool) -> None:
    for line, reason in result.rejected:
        click.echo(f"{file}: line {line}: {reason}", err=True)
    if result.ignored_columns:
        click.echo(f"{file}: ignored column(s): {', '.join(result.ignored_columns)}", err=True)
    verb = "would add" if dry_run else "added"
    summary = (f"{result.rows} rows: {verb} {result.added}, updated {result.updated}, unchanged {result.unchanged}, "
               f"kept unsubscribed/bounced/blocked {result.not_reactivated}, suppressed {result.suppressed}, "
               f"rejected {len(result.rejected)}")
    if dry_run:
        summary += " (dry run: nothing written)"
    elif not result.written:
        summary = f"{result.rows} rows, rejected {len(result.rejected)}: --strict, so nothing was imported"
    click.echo(summary)


@subscribers.command("export")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--status", default="active", show_default=True, type=click.Choice(_STATUSES),
              help="Which subscribers to export.")
@pass_state
def subscribers_export(state: State, file: Path | None, status: str) -> None:
    """Write the list as CSV (email,name,areas) to FILE, or to stdout.

    Example: newsletter subscribers export list.csv
    """
    with state.engine.connect() as conn:
        if file is None:
            audience.export_csv(conn, sys.stdout, status)
            return
        partial = file.with_name(file.name + ".part")
        with partial.open("w", encoding="utf-8", newline="") as out:
            count = audience.export_csv(conn, out, status)
        partial.replace(file)  # a crash never leaves a half-written file under the real name
    click.echo(f"Exported {count} subscribers to {file}.", err=True)


@subscribers.command("list")
@click.option("--area", help="Only subscribers who get this area in full.")
@click.option("--status", type=click.Choice(_STATUSES), help="Only subscribers with this status.")
@click.option("--limit", default=100, show_default=True, help="Show at most this many rows.")
@pass_state
def subscribers_list(state: State, area: str | None, status: str | None, limit: int) -> None:
    """Show subscribers and the counts by status and by area.

    Example: newsletter subscribers list --area RL --status active
    """
    with state.engine.connect() as conn:
        found = audience.listing(conn, state.areas, area, status, limit)
    table = Table("email", "name", "areas", "status", "source", "since")
    for sub in found.subscribers:
        table.add_row(sub.email, sub.name, _areas_label(sub.areas), sub.status, sub.source,
                      f"{sub.created_at:%Y-%m-%d}")
    console.print(table)
    shown = len(found.subscribers)
    console.print(f"{found.matching} matching" + (f" (showing {shown})" if shown < found.matching else ""))
    console.print("By status: " + ", ".join(f"{k} {v}" for k, v in found.by_status.items()))
    console.print("Active, by area: " + ", ".join(f"{k} {v}" for k, v in found.by_area.items()))


@subscribers.command("set-areas")
@click.argument("email")
@click.argument("areas")
@pass_state
def subscribers_set_areas(state: State, email: str, areas: str) -> None:
    """Choose a subscriber's areas (comma- or ;-separated; 'all' or '' for every area).

    Example: newsletter subscribers set-areas ada@example.org LLM,Agents
    """
    with state.engine.begin() as conn:
        sub = audience.set_areas(conn, email, "" if areas.strip().casefold() == "all" else areas, state.areas)
    click.echo(f"{sub.email}: {_areas_label(sub.areas)}.")


@subscribers.command("unsubscribe")
@click.argument("email")
@pass_state
def subscribers_unsubscribe(state: State, email: str) -> None:
    """Unsubscribe an address; it is kept, so no later import makes it active again.

    Example: newsletter subscribers unsubscribe ada@example.org
    """
    with state.engine.begin() as conn:
        sub = audience.unsubscribe(conn, email)
    click.echo(f"{sub.email}: {sub.status}.")


@subscribers.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def subscribers_delete(state: State, email: str, yes: bool) -> None:
    """Erase a subscriber: personal data removed, a keyed hash kept so no import re-adds them.

    Example: newsletter subscribers delete ada@example.org --yes
    """
    if not yes:
        click.confirm(f"Erase {email} and its delivery history? This cannot be undone", abort=True)
    with state.engine.begin() as conn:
        audience.delete(conn, email)
    click.echo(f"Erased {email}; its hash stays on the suppression list.")


def _areas_label(areas: tuple[str, ...]) -> str:
    return ", ".join(areas) if areas else "all areas"


@contextmanager
def _progress(label: str, total: int | None = None, rate: bool = False) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal; silent when output goes to a file or a test runner.

    ``rate``: the callback gets increments (messages done) and the bar shows rate and ETA;
    otherwise it gets the running total (rows read).
    """
    if not console.is_terminal:
        yield lambda _n: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if rate:
        columns += [_RateColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=total)
        if rate:
            yield lambda n: bar.advance(task, n)
        else:
            yield lambda n: bar.update(task, completed=n)


class _RateColumn(ProgressColumn):
    """Messages per second, from rich's own moving estimate."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} msg/s" if task.speed else "", style="progress.data.speed")


# --- sending -----------------------------------------------------------------------------------


@cli.command()
@click.argument("ref", metavar="ISSUE")
@click.option("--dry-run", is_flag=True, help="Say how many would get which group and how many are skipped.")
@click.option("--test-to", metavar="ADDRESS", help="Send one [Test] copy to this address only; the outbox is untouched.")
@click.option("--areas", help="With --test-to: the group to send (default: all areas).")
@click.option("--resend-unknown", is_flag=True,
              help="Also resend rows whose fate is unknown (the process died during their SMTP transfer).")
@click.option("--no-wait", is_flag=True, help="Do not wait for deferred rows to come due; a later run retries them.")
@click.option("--enqueue", is_flag=True, help="Only create the outbox; `newsletter worker` processes deliver it.")
@pass_state
def send(state: State, ref: str, dry_run: bool, test_to: str | None, areas: str | None, resend_unknown: bool,
         no_wait: bool, enqueue: bool) -> None:
    """Send an issue to every active subscriber, or resume its send. A sent row is never sent again.

    Example: newsletter send 2026-05-28
    """
    config = state.config
    item = load_issue(find_issue(config.path("issues"), ref), state.areas)
    if test_to:
        _send_test(state, item, test_to, areas)
        return
    if areas:
        raise click.UsageError("--areas goes with --test-to (a real send gives each subscriber their own group)")
    engine = state.engine
    groups = deliver.Groups(config, item)
    if dry_run:
        _print_plan(item.slug, deliver.plan(engine, groups))
        return
    if enqueue:
        started = deliver.prepare_send(engine, groups, resend_unknown)
        made = f"{started.created.queued} queued, {started.created.skipped} skipped" if started.created else "found"
        click.echo(f"{item.slug}: outbox {made}; {started.due} due for `newsletter worker`.")
        return
    report = _run_send(config, engine, groups, resend_unknown, not no_wait)
    _print_report(report)
    if report.state == "paused":
        raise SystemExit(1)


def _send_test(state: State, item: Issue, to: str, areas: str | None) -> None:
    try:
        address = audience.normalize_email(to)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--test-to") from None
    group = parse_areas(state.config, areas) or tuple(state.areas)
    result = deliver.send_test(state.config, state.engine, item, address, group)
    if result.outcome is not Outcome.SENT:
        raise click.ClickException(f"test copy to {address} not accepted: {result.code} {result.answer}")
    click.echo(f"Test copy of {item.slug} ({', '.join(group)}) sent to {address}.")


def _run_send(config: Config, engine: Engine, groups: deliver.Groups, resend_unknown: bool,
              wait: bool) -> outbox.Report:
    def on_start(started: deliver.Started) -> None:
        if started.created is not None:
            click.echo(f"{groups.issue.slug}: {started.created.queued} queued, {started.created.skipped} skipped "
                       "(no paper this week meets their areas).")
        if started.recovered_unknown:
            click.echo(f"{started.recovered_unknown} row(s) were mid-transfer when a send stopped: marked unknown, "
                       "not resent (use --resend-unknown to resend them).", err=True)

    return deliver.send_issue(
        config, engine, groups, resend_unknown=resend_unknown, wait=wait, on_start=on_start,
        progress=lambda started: _progress(f"Sending {groups.issue.slug}", total=started.due, rate=True))


def _print_plan(slug: str, found: deliver.Plan) -> None:
    table = Table("group", "subscribers", title=f"{slug}: dry run, nothing sent")
    for key, count in found.groups.items():
        table.add_row(key, str(count))
    table.add_row("[dim]skipped: no paper meets their areas[/dim]", str(found.skipped))
    console.print(table)
    click.echo(f"Would send {sum(found.groups.values())} messages; {found.skipped} skipped.")


@cli.command("report")
@click.argument("ref", metavar="ISSUE", default="latest")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def report_cmd(state: State, ref: str, as_json: bool) -> None:
    """Counts by state, the send rate, and every failure with the server's answer.

    Example: newsletter report 2026-05-28 --json
    """
    slug = find_issue(state.config.path("issues"), ref).stem if ref == "latest" else ref
    with state.engine.connect() as conn:
        found = outbox.report(conn, slug)
    if found is None:
        raise click.ClickException(f"issue {slug!r} has not been sent (no outbox in {_db_label(state.engine)})")
    if as_json:
        click.echo(json.dumps(found.as_json(), indent=2, ensure_ascii=False))
    else:
        _print_report(found)


def _print_report(found: outbox.Report) -> None:
    table = Table(*found.counts, title=f"{found.issue}: {found.state}")
    table.add_row(*(str(n) for n in found.counts.values()))
    console.print(table)
    if found.rate:
        console.print(f"Send rate: {found.rate} messages/s")
    if found.pause_reason:
        console.print(f"[red]Paused:[/red] {found.pause_reason}", markup=True)
    if found.failures:
        failures = Table("email", "code", "answer", title="Failures")
        for failure in found.failures:
            failures.add_row(failure.email, str(failure.code or ""), failure.answer)
        console.print(failures)


def _db_label(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


# --- the weekly schedule -------------------------------------------------------------------------


@cli.command("schedule")
@click.option("--show", is_flag=True, help="Print the next run times in the configured time zone and exit.")
@pass_state
def schedule_cmd(state: State, show: bool) -> None:
    """Run the weekly send (APScheduler) until SIGTERM or Ctrl-C; the job is kept in the database.

    Example: newsletter schedule --show
    """
    import logging

    from . import schedule

    cfg = state.config.schedule
    if show:
        click.echo(f"Weekly send: {cfg.day} {cfg.time} {cfg.timezone}, grace {cfg.grace_hours:g} h. Next runs:")
        for runtime in schedule.next_runs(cfg, outbox.utcnow()):
            click.echo(f"  {runtime:%a %Y-%m-%d %H:%M %Z (UTC%z)}")
        return
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    schedule.run(state.config, config_path(state.config_file).resolve())


@cli.command("worker")
@click.option("--exit-when-idle", is_flag=True, help="Exit after a round that finds nothing to deliver (cron, tests).")
@pass_state
def worker_cmd(state: State, exit_when_idle: bool) -> None:
    """Deliver the outbox of every issue being sent, beside any number of other workers.

    Runs until SIGTERM or Ctrl-C (it finishes the message in flight and gives back its claims).

    Example: newsletter worker
    """
    import logging
    import signal

    from .worker import Worker

    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    worker = Worker(state.config, state.engine)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop.set())
    totals = worker.run(exit_when_idle)
    click.echo(f"worker {outbox.worker_name()}: delivered {totals.delivered} in {totals.rounds} round(s)")


# --- the main job --------------------------------------------------------------------------------


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("build/demo"),
              show_default=True, help="Folder for the demo database and the received .eml files.")
@pass_state
def demo(state: State, out: Path) -> None:
    """The main job end to end on the embedded defaults, with a local SMTP server of its own.

    A fresh SQLite database in OUT, the sample list imported, an aiosmtpd server started on a free
    loopback port that keeps each message as an .eml file, the latest issue sent, the report printed.

    Example: newsletter demo
    """
    from . import mailsink

    out = out.resolve()
    mail = out / "mail"
    for stale in [out / "newsletter.db", out / "newsletter.db-wal", out / "newsletter.db-shm", *mail.glob("*.eml")]:
        stale.unlink(missing_ok=True)
    handler = mailsink.EmlHandler(mail)
    server = mailsink.start(handler)
    try:
        config = demo_config(state.config, out / "newsletter.db", server.port)
        engine = store.engine_for(config.database_url)
        store.migrate(engine)
        sample = config.path("subscribers") / "sample.csv"
        with engine.begin() as conn:
            imported = audience.import_csv(conn, sample, config.newsletter.areas)
        click.echo(f"Imported {imported.added} subscribers from {sample}.")
        item = load_issue(find_issue(config.path("issues"), "latest"), config.newsletter.areas)
        click.echo(f"Sending {item.slug} ({item.title}) to a local SMTP server on 127.0.0.1:{server.port}.")
        report = _run_send(config, engine, deliver.Groups(config, item), False, True)
        engine.dispose()
    finally:
        server.stop()
    _print_report(report)
    click.echo(f"{sum(handler.received.values())} messages received, saved as .eml files in {mail}")


def demo_config(config: Config, database: Path, port: int) -> Config:
    """The config with the demo's own database and local relay (no login, no TLS, no rate limit)."""
    smtp = config.smtp.model_copy(update={"host": "127.0.0.1", "port": port, "security": "none", "username": "",
                                          "rate_per_second": 0, "rate_per_hour": 0})
    return config.model_copy(update={"database": config.database.model_copy(update={"url": f"sqlite:///{database}"}),
                                     "smtp": smtp})


# --- web pages -----------------------------------------------------------------------------------


@cli.command()
@click.option("--host", help="Address to listen on (default: [web] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: [web] port, 8000).")
@pass_state
def serve(state: State, host: str | None, port: int | None) -> None:
    """Serve the web pages: sign-up, confirm, unsubscribe, preferences, archive, editor preview.

    Example: newsletter serve --host 127.0.0.1 --port 8000
    """
    from .web import serve as run_web

    config = state.config
    state.engine  # noqa: B018 (check the database, and migrate SQLite, before listening)
    run_web(config, host or config.web.host, port or config.web.port)


def main() -> None:
    cli(prog_name="newsletter")


