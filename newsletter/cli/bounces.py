"""``newsletter bounces …``: take in bounces, complaints and auto-replies, and report on them."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table

from ..feedback.ingest import Feedback, Notice, NotStored, describe, judge
from ..feedback.report import bounce_report, notice, printable
from ..feedback.sources import Unreadable, notices
from .base import Group, State, cli, console, log_to_stdout, pass_state, stop_on_signals


@cli.group(cls=Group)
def bounces() -> None:
    """Bounces, complaints and auto-replies: receive (SMTP/LMTP), fetch (IMAP), ingest (files), report."""


@bounces.command("ingest")
@click.argument("paths", nargs=-1)
@click.option("--dry-run", is_flag=True, help="Classify only: change nothing, not even the log.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message on standard output.")
@pass_state
def bounces_ingest(state: State, paths: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Take in notices from .eml files, folders, maildirs, mbox files, or one on standard input.

    Example: newsletter bounces ingest --dry-run --json /var/mail/bounces
    """
    feedback = None if dry_run else Feedback(state.config, state.engine)
    if feedback is not None:
        feedback.expire_raw()
    # Classified here, in order: a process pool for the classifier measured no faster (A/B over 5,000 DSNs:
    # wall ratio 0.99), as storing, not classifying, bounds the rate once notices are stored in batches
    found = notices(paths, sys.stdin.buffer)
    classified = ((item, judge(item)) if isinstance(item, Notice) else item for item in found)
    results = (describe(*i) if isinstance(i, tuple) else i for i in classified) if feedback is None \
        else feedback.handle_all(classified)
    failed = 0
    for done in results:
        if isinstance(done, Unreadable | NotStored):
            failed += 1
            click.echo(f"{done.source}: not {'read' if isinstance(done, Unreadable) else 'stored'}: {done.reason}",
                       err=True)
        elif as_json:
            click.echo(json.dumps(done.as_json(), ensure_ascii=False))
        else:
            click.echo(done.line())
    if failed:
        raise SystemExit(1)


@bounces.command("receive")
@click.option("--host", help="Address to listen on (default: [bounces] listen_host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default: [bounces] listen_port, 2526).")
@click.option("--lmtp", is_flag=True, default=None, help="Speak LMTP instead of SMTP (default: [bounces] lmtp).")
@pass_state
def bounces_receive(state: State, host: str | None, port: int | None, lmtp: bool | None) -> None:
    """Listen for notices that an MTA forwards (Postfix transport_maps); run until SIGTERM or Ctrl-C.

    Example: newsletter bounces receive --port 2526
    """
    from ..feedback import receive

    cfg = state.config.bounces
    log_to_stdout()
    stop = stop_on_signals()
    host, port, lmtp = host or cfg.listen_host, port or cfg.listen_port, cfg.lmtp if lmtp is None else lmtp
    server = receive.start(Feedback(state.config, state.engine), host, port, lmtp)
    click.echo(f"Receiving notices over {'LMTP' if lmtp else 'SMTP'} on {host}:{port}")
    try:
        stop.wait()
    finally:
        server.stop()


@bounces.command("fetch")
@click.option("--limit", type=click.IntRange(1), help="At most this many messages this run.")
@pass_state
def bounces_fetch(state: State, limit: int | None) -> None:
    """Read the bounce mailbox over IMAP; delete (or move) what was stored, move aside what is over
    [bounces] max_size or unreadable (to [bounces] imap_held), leave what the database refused; exit 1 if any was left.

    Example: newsletter bounces fetch
    """
    from ..feedback.fetch import fetch

    cfg = state.config.bounces
    found = fetch(Feedback(state.config, state.engine), cfg, limit)
    for done in found.handled:
        click.echo(done.line())
    for uid, reason in found.held:
        click.echo(f"imap:{cfg.imap_folder}/{uid}: moved to {cfg.imap_held}: {reason}", err=True)
    for uid, reason in found.left:
        click.echo(f"imap:{cfg.imap_folder}/{uid}: left in the mailbox: {reason}", err=True)
    click.echo(f"{len(found.handled)} processed, {len(found.left)} left in the mailbox, "
               f"{len(found.held)} moved to {cfg.imap_held}")
    if found.left:
        raise SystemExit(1)


@bounces.command("report")
@click.option("--issue", help="Only notices about this issue's messages.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def bounces_report(state: State, issue: str | None, as_json: bool) -> None:
    """Notices by verdict, bounces by class, and the recipient domains they came from.

    Example: newsletter bounces report --issue 2026-05-28
    """
    with state.engine.connect() as conn:
        found = bounce_report(conn, issue)
    if as_json:
        click.echo(json.dumps(found.as_json(), indent=2))
        return
    console.print("By verdict: " + (", ".join(f"{k} {v}" for k, v in sorted(found.by_kind.items())) or "none"))
    console.print("Bounces: " + (", ".join(f"{k} {v}" for k, v in sorted(found.by_class.items())) or "none")
                  + f"; ignored (forged, replayed, never sent): {found.ignored}")
    console.print(f"Unproven (named someone without proof the engine mailed them; nothing done): {found.unproven}")
    if found.by_reason:  # Sisimai's reasons: userunknown, hostunknown and hasmoved are hard, the rest soft
        reasons = Table("reason", "hard", "soft", "complaints", title="By reason")
        for reason, hard, soft, complaints in found.by_reason:
            reasons.add_row(printable(reason), str(hard), str(soft), str(complaints))
        console.print(reasons)
    table = Table("domain", "hard", "soft", "complaints", title="By recipient domain")
    for domain, hard, soft, complaints in found.by_domain:
        table.add_row(domain, str(hard), str(soft), str(complaints))
    console.print(table)
    if found.for_a_person:
        click.echo("For a person (unproven or unreadable; `newsletter bounces show ID` prints one):")
        for kept in found.for_a_person:
            click.echo(f"  {kept.line()}")


@bounces.command("show")
@click.argument("notice_id", type=click.IntRange(1))
@pass_state
def bounces_show(state: State, notice_id: int) -> None:
    """Print one logged notice: its verdict, what was done, and its raw text while it is kept.

    Example: newsletter bounces show 42
    """
    with state.engine.connect() as conn:
        found = notice(conn, notice_id)
    if found is None:
        raise click.ClickException(f"no notice #{notice_id} in the bounce log")
    kept, raw = found
    click.echo(printable(kept.line()))
    click.echo(printable(raw.decode("utf-8", "replace")) if raw is not None else "(its raw text is no longer kept)")

