"""``newsletter init`` and ``newsletter subscribers …``: the list and the database it lives in."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import click
from rich.table import Column, Table
from sqlalchemy.engine import Connection

from .. import areas as area_names
from .. import audience, store
from ..audience import csvio
from ..audience import search as audience_search
from ..errors import AudienceError
from ..store.tables import SUBSCRIBER_STATUSES
from .base import Group, State, cli, confirm, console, pass_state, progress, yes_option


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


@cli.group(cls=Group)
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
        sub = audience.add(conn, email, name, areas, state.areas, source="cli", cause="added by cli")
    click.echo(f"Added {sub.email} ({area_names.label(sub.areas)}).")
    if audience.needs_smtputf8(sub.email):
        click.echo(f"Note: {sub.email} has a non-ASCII local part: only a relay offering SMTPUTF8 can deliver to it.",
                   err=True)


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
    with engine.connect() as conn, progress(f"Importing {file.name}") as tick:
        with conn.begin() as txn:
            result = audience.import_csv(conn, file, state.areas, strict=strict, dry_run=dry_run, progress=tick,
                                         cause=f"imported by cli from {file.name}")
            if not result.written:
                txn.rollback()
    _print_import(file, result, dry_run, strict)
    if result.rejected:
        raise SystemExit(1)


def _print_import(file: Path, result: audience.ImportResult, dry_run: bool, strict: bool) -> None:
    for line, reason in result.rejected:
        click.echo(f"{file}: line {line}: {reason}", err=True)
    if result.needs_smtputf8:
        shown = result.needs_smtputf8[:10]
        lines = ", ".join(str(n) for n in shown) + (" …" if len(result.needs_smtputf8) > len(shown) else "")
        click.echo(f"{file}: {len(result.needs_smtputf8)} address(es) with a non-ASCII local part (line {lines}): "
                   "only a relay offering SMTPUTF8 can deliver to them", err=True)
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
@click.option("--status", default="active", show_default=True, type=click.Choice(SUBSCRIBER_STATUSES),
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
        partial.unlink(missing_ok=True)  # a stale one keeps its old mode; O_EXCL also refuses a planted symlink
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # owner-only from the first byte
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            count = audience.export_csv(conn, out, status)
        partial.replace(file)  # a crash never leaves a half-written file under the real name
    click.echo(f"Exported {count} subscribers to {file}.", err=True)


@subscribers.command("list")
@click.option("--search", metavar="TEXT", help="Only addresses or names containing TEXT, in any case.")
@click.option("--area", help="Only subscribers who get this area in full.")
@click.option("--status", type=click.Choice(SUBSCRIBER_STATUSES), help="Only subscribers with this status.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(0),
              help="Show at most this many rows (0: all).")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines: one object per subscriber, nothing else.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row, nothing else.")
@pass_state
def subscribers_list(state: State, search: str | None, area: str | None, status: str | None, limit: int,
                     as_json: bool, as_csv: bool) -> None:
    """Show subscribers and the counts by status and by area.

    --json and --csv are for scripts: the matching rows only, streamed, in id order; a note on
    stderr when --limit stopped them.

    Example: newsletter subscribers list --search lovelace --status active
    """
    if as_json and as_csv:
        raise click.UsageError("--json and --csv: choose one.")
    with state.engine.connect() as conn:
        if as_json or as_csv:
            found = audience_search.iter_listing(conn, state.areas, area, status, limit or None, search)
            shown = _write_json(found) if as_json else _write_csv(found)
            if limit and shown == limit:
                click.echo(f"Stopped at --limit {limit}: there may be more; --limit 0 gives all.", err=True)
            return
        listing = audience.listing(conn, state.areas, area, status, limit or None, search)
    _print_table(listing)


LIST_COLUMNS = ("email", "name", "areas", "status", "source", "created_at", "confirmed_at", "unsubscribed_at")


def _fields(sub: audience.Subscriber) -> dict[str, object]:
    """One subscriber for scripts, as the API gives it (``Subscriber.as_json``)."""
    return sub.as_json()


def _write_json(found: Iterable[audience.Subscriber]) -> int:
    count = 0
    for sub in found:
        click.echo(json.dumps(_fields(sub), ensure_ascii=False))
        count += 1
    return count


def _write_csv(found: Iterable[audience.Subscriber]) -> int:
    """email,name,areas first (areas ';'-joined, empty = all), so the file imports back as it is; a cell that a
    spreadsheet would run as a formula gets a ' first (``csvio.escape``), which the import takes off."""
    writer = csv.writer(sys.stdout, lineterminator="\r\n")
    writer.writerow(LIST_COLUMNS)
    count = 0
    for sub in found:
        row = _fields(sub) | {"areas": audience.join_areas(sub.areas), "email": csvio.escape(sub.email),
                              "name": csvio.escape(sub.name)}
        writer.writerow("" if row[k] is None else row[k] for k in LIST_COLUMNS)
        count += 1
    return count


def _print_table(found: audience.Listing) -> None:
    """Long addresses and names fold onto more lines, never cut: a cut address is a wrong address."""
    table = Table(Column("email", overflow="fold"), Column("name", overflow="fold"),
                  Column("areas", overflow="fold"), Column("status", no_wrap=True),
                  Column("source", no_wrap=True), Column("since", no_wrap=True))
    for sub in found.subscribers:
        table.add_row(sub.email, sub.name, area_names.label(sub.areas), sub.status, sub.source,
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
    click.echo(f"{sub.email}: {area_names.label(sub.areas)}.")


@subscribers.command("unsubscribe")
@click.argument("email")
@pass_state
def subscribers_unsubscribe(state: State, email: str) -> None:
    """Unsubscribe an address; it is kept, so no later import makes it active again.

    Example: newsletter subscribers unsubscribe ada@example.org
    """
    with state.engine.begin() as conn:
        sub = audience.unsubscribe(conn, email, cause="unsubscribed by cli")
    click.echo(f"{sub.email}: {sub.status}.")


@subscribers.command("block")
@click.argument("email")
@click.option("--reason", default="", help="Why, kept in the subscriber's history.")
@pass_state
def subscribers_block(state: State, email: str, reason: str) -> None:
    """Block an address: it is never mailed, and no import, sign-up or link makes it active, until unblocked.

    Example: newsletter subscribers block spam@example.org --reason "signed up others"
    """
    with state.engine.begin() as conn:
        sub = audience.block(conn, _id_of(conn, email), "blocked by cli" + (f": {reason}" if reason else ""))
    click.echo(f"{sub.email}: {sub.status}.")


@subscribers.command("unblock")
@click.argument("email")
@pass_state
def subscribers_unblock(state: State, email: str) -> None:
    """Lift a block: the address gets back the status it had before it.

    Example: newsletter subscribers unblock ada@example.org
    """
    with state.engine.begin() as conn:
        sub = audience.unblock(conn, _id_of(conn, email), "unblocked by cli")
    click.echo(f"{sub.email}: {sub.status}.")


def _id_of(conn: Connection, email: str) -> int:
    found = audience.get(conn, email)
    if found is None:
        raise AudienceError(f"{email}: not on the list")
    return found.id


@subscribers.command("delete")
@click.argument("email")
@yes_option("Do not ask for confirmation (a script without a terminal must pass it).")
@pass_state
def subscribers_delete(state: State, email: str, yes: bool) -> None:
    """Erase a subscriber: personal data removed, a keyed hash kept so no import re-adds them.

    On a terminal it asks first; a script (no terminal) must pass --yes.

    Example: newsletter subscribers delete ada@example.org --yes
    """
    confirm(f"Erase {email} and its delivery history? This cannot be undone", yes, f"erase {email}")
    with state.engine.begin() as conn:
        audience.delete(conn, email)
    click.echo(f"Erased {email}; its hash stays on the suppression list.")
