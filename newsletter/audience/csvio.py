"""Subscriber lists as CSV files: import (streamed, in batches) and export.

Import runs in one transaction: a file that turns out not to be UTF-8 halfway, ``--strict`` with a
bad row, or ``--dry-run`` roll back and leave the list as it was. Rows are written in batches of
``BATCH`` with one lookup query per batch, never one query per row.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..clock import utcnow
from ..errors import AudienceError
from ..store import keyset_pages, meta_secret
from ..store import tables as t
from ..store.oncursor import OnCursor
from .events import CAUSE_MAX, note_imported
from .subscribers import (
    INACTIVE,
    _Rejected,
    clean_name,
    email_key,
    join_areas,
    needs_smtputf8,
    normalize_email,
    parse_areas,
    suppressed_hashes,
)

BATCH = 1000
COLUMNS = ("email", "name", "areas")


@dataclass
class ImportResult:
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    not_reactivated: int = 0   # unsubscribed / bounced / blocked rows left as they are
    suppressed: int = 0        # erased addresses, recognised by their hash
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    needs_smtputf8: list[int] = field(default_factory=list)  # lines whose local part is not ASCII
    ignored_columns: list[str] = field(default_factory=list)
    written: bool = False


@dataclass(frozen=True)
class _Good:
    email: str
    name: str
    areas: str


def import_csv(conn: Connection, path: Path, known: Sequence[str], *, strict: bool = False,
               dry_run: bool = False, progress: Callable[[int], None] | None = None, cause: str = "") -> ImportResult:
    """Import a CSV file inside the caller's transaction; roll back yourself unless ``result.written``.

    ``cause`` is the first event of each new subscriber (default: ``imported from <file name>``).
    """
    result = ImportResult()
    now = utcnow()
    cause = cause or f"imported from {path.name}"
    pending: list[tuple[int, _Good]] = []
    with _Seen() as seen:
        for line, item in _rows(path, known, result):
            result.rows += 1
            if isinstance(item, str):
                result.rejected.append((line, item))
            else:
                pending.append((line, item))
                if needs_smtputf8(item.email):
                    result.needs_smtputf8.append(line)
            if len(pending) >= BATCH:
                _write_batch(conn, seen.first_of_each(pending, result), result, now, cause)
                pending = []
            if progress and result.rows % BATCH == 0:
                progress(result.rows)
        _write_batch(conn, seen.first_of_each(pending, result), result, now, cause)
    result.rejected.sort()
    if progress:
        progress(result.rows)
    result.written = not dry_run and not (strict and result.rejected)
    return result


def check(engine: Engine, path: Path, known: Sequence[str]) -> ImportResult:
    """What importing ``path`` would do, with its line errors, in a transaction of its own that is always rolled
    back: the console's preview before its import and the API's ``dry_run``."""
    with engine.connect() as conn, conn.begin() as txn:
        result = import_csv(conn, path, known, dry_run=True)
        txn.rollback()
    return result


class _Seen:
    """The addresses of the file so far and the line each first came on, for "duplicate of line N".

    Kept in a private temporary SQLite database (the empty file name: on disk, deleted when closed)
    rather than a dict, so memory stays flat however long the file: a dict of every address took
    the import of 1,000,000 rows to 227 MB, this keeps it at 94 MB for a cost of about 4 µs a row.
    It holds SHA-256 digests, never the addresses.
    """

    def __enter__(self) -> _Seen:
        self.db = sqlite3.connect("")
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE seen (digest BLOB PRIMARY KEY, line INTEGER NOT NULL) WITHOUT ROWID")
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    def first_of_each(self, rows: list[tuple[int, _Good]], result: ImportResult) -> list[_Good]:
        """The rows whose address is new to the file; the others are rejected as duplicates."""
        digests = [hashlib.sha256(email_key(good.email).encode()).digest() for _, good in rows]
        first: dict[bytes, int] = {}
        for (line, _), digest in zip(rows, digests, strict=True):
            first.setdefault(digest, line)
        before = self.db.total_changes
        self.db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)", first.items())
        earlier: dict[bytes, int] = {}
        if self.db.total_changes - before < len(first):  # some came on an earlier batch's line: which
            marks = ",".join("?" * len(first))
            earlier = {digest: line for digest, line in self.db.execute(
                f"SELECT digest, line FROM seen WHERE digest IN ({marks})", list(first)) if line != first[digest]}
        fresh = []
        for (line, good), digest in zip(rows, digests, strict=True):
            if (was := earlier.get(digest, first[digest])) != line:
                result.rejected.append((line, f"duplicate of line {was} ({good.email})"))
            else:
                fresh.append(good)
        return fresh


def _rows(path: Path, known: Sequence[str], result: ImportResult) -> Iterator[tuple[int, _Good | str]]:
    """(line, good row or reason) for each data row; a file that is not CSV/UTF-8 is an error."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            yield from _parse(path, handle, known, result)
    except UnicodeDecodeError as exc:
        raise AudienceError(f"{path}: not UTF-8 text (byte {exc.start}); save it as CSV UTF-8") from None
    except OSError as exc:
        raise AudienceError(f"{path}: cannot read: {exc.strerror}") from None


def _parse(path: Path, handle: IO[str], known: Sequence[str],
           result: ImportResult) -> Iterator[tuple[int, _Good | str]]:
    reader = csv.reader(handle, strict=True)
    try:
        header = [h.strip().casefold() for h in next(reader, [])]
        if "email" not in header or "\x00" in "".join(header):
            found = ",".join(header)[:60]
            raise AudienceError(f"{path}: not a subscriber CSV: line 1 must be the header email,name,areas"
                                f" (found {found!r})")
        result.ignored_columns = [h for h in header if h not in COLUMNS]
        index = {name: header.index(name) for name in COLUMNS if name in header}
        line = reader.line_num + 1
        for fields in reader:
            if fields:  # a blank line is not a row
                yield line, _check(fields, header, index, known)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise AudienceError(f"{path}: line {reader.line_num}: not valid CSV: {exc}") from None


def _check(fields: list[str], header: list[str], index: dict[str, int], known: Sequence[str]) -> _Good | str:
    if len(fields) < len(header):
        return f"missing column {header[len(fields)]!r} ({len(fields)} fields, the header has {len(header)})"
    if len(fields) > len(header):
        return f"{len(fields)} fields, the header has {len(header)}"
    try:
        email = normalize_email(unescape(fields[index["email"]]))
        name = clean_name(unescape(fields[index["name"]])) if "name" in index else ""
        areas = join_areas(parse_areas(fields[index["areas"]], known)) if "areas" in index else ""
    except _Rejected as exc:
        return str(exc)
    return _Good(email, name, areas)


# Run on the DBAPI cursor: the insert took 14.8 µs a row through Core's executemany, 9.6 µs this way
# (50 batches of 1,000 into a fresh SQLite file, SQLite's own index work included).
_IMPORTED = OnCursor(t.subscribers.insert().values(
    email=sa.bindparam("email"), email_key=sa.bindparam("email_key"), name=sa.bindparam("name"),
    areas=sa.bindparam("areas"), status="active", source="import", created_at=sa.bindparam("now"),
    updated_at=sa.bindparam("now")))


def _write_batch(conn: Connection, batch: list[_Good], result: ImportResult, now: datetime, cause: str) -> None:
    """One lookup of the batch's addresses and hashes, then bulk inserts and updates.

    Which row is added, updated, unchanged, not reactivated or suppressed is decided here, once, for both
    databases; only how the lookup and the insert reach the database differs (``_lookup``, ``_add``).
    """
    if not batch:
        return
    s = t.subscribers.c
    keys = [email_key(g.email) for g in batch]
    secret = meta_secret(conn, "suppression_key").encode()
    hashes = {k: hmac.new(secret, k.encode(), hashlib.sha256).hexdigest() for k in keys}
    existing, suppressed = _lookup(conn, batch, keys, hashes)
    inserts, updates = [], []
    for good, key in zip(batch, keys, strict=True):
        old = existing.get(key)
        if old is None and hashes[key] in suppressed:
            result.suppressed += 1
        elif old is None:
            inserts.append({"email": good.email, "email_key": key, "name": good.name, "areas": good.areas})
        elif old.status in INACTIVE:
            result.not_reactivated += 1
        elif (old.name, old.areas) == (good.name, good.areas):
            result.unchanged += 1
        else:
            updates.append({"b_id": old.id, "b_name": good.name, "b_areas": good.areas, "b_now": now})
    if inserts:
        _add(conn, inserts, now, cause)
    if updates:
        conn.execute(t.subscribers.update().where(s.id == sa.bindparam("b_id")).values(
            name=sa.bindparam("b_name"), areas=sa.bindparam("b_areas"), updated_at=sa.bindparam("b_now")), updates)
    result.added += len(inserts)
    result.updated += len(updates)


# PostgreSQL: each batch goes through COPY into a temporary staging table, and the lookups and the insert are
# joins on it. Measured by bench/import_pg.py (100,000 rows, fresh schema, 2 shared cores): 74.7 s before,
# when SQLite took 10.7 s in the same run. Nearly all of it was the server comparing every row of subscribers
# with each of a batch's 1,000 keys: psycopg prepares a statement run five times and PostgreSQL then uses a
# generic plan, where ``email_key IN ($1 … $1000)`` is an unhashed filter on a sequential scan, so the lookup
# (40 s) and note_imported (24 s) grew with the square of the list. This way: 10.4-12.6 s, with SQLite
# (which keeps its executemany) at 10.3-13.5 s in the same runs; what is left on the server is mostly index upkeep.
_STAGE = "nl_import_stage"
_STAGE_CREATE = (f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (line integer PRIMARY KEY, email text NOT NULL, "
                 "email_key text NOT NULL, name text NOT NULL, areas text NOT NULL, address_hash text NOT NULL) "
                 "ON COMMIT DROP")
_STAGED_EXISTING = sa.text(f"SELECT s.id, s.email_key, s.name, s.areas, s.status FROM {_STAGE} b "
                           "JOIN subscribers s ON s.email_key = b.email_key")
_STAGED_SUPPRESSED = sa.text(f"SELECT x.address_hash FROM {_STAGE} b "
                             "JOIN suppressions x ON x.address_hash = b.address_hash")
# The rows _write_batch chose to insert are those with no subscriber and no suppression: the same two tests,
# in the same transaction, in file order (ids as executemany gives them); each new row's event in the same
# statement, as note_imported writes it. ON CONFLICT only matters when another session added the address since
# the lookup: the count then differs from _write_batch's and _add refuses rather than report a wrong one.
_STAGED_ADD = sa.text(
    "WITH added AS (INSERT INTO subscribers (email, email_key, name, areas, status, source, created_at, updated_at) "
    f"SELECT b.email, b.email_key, b.name, b.areas, 'active', 'import', :now, :now FROM {_STAGE} b "
    "WHERE NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.address_hash = b.address_hash) ORDER BY b.line "
    "ON CONFLICT (email_key) DO NOTHING RETURNING id, status) "
    "INSERT INTO subscriber_events (subscriber_id, at, status, cause) SELECT id, :now, status, :cause FROM added"
).bindparams(sa.bindparam("now", type_=t.When), sa.bindparam("cause", type_=sa.Text))


def _lookup(conn: Connection, batch: list[_Good], keys: list[str],
            hashes: dict[str, str]) -> tuple[dict[str, Any], set[str]]:
    """The batch's existing subscribers by email_key, and which of its hashes are suppressed. On PostgreSQL the
    batch is first copied into the staging table, which ``_add`` then inserts from."""
    if conn.dialect.name != "postgresql":
        s = t.subscribers.c
        existing = {r.email_key: r for r in conn.execute(
            sa.select(s.id, s.email_key, s.name, s.areas, s.status).where(s.email_key.in_(keys)))}
        return existing, suppressed_hashes(conn, list(hashes.values()))
    conn.exec_driver_sql(_STAGE_CREATE)
    conn.exec_driver_sql(f"TRUNCATE {_STAGE}")
    cursor = conn.connection.cursor()
    try:
        with cursor.copy(f"COPY {_STAGE} (line, email, email_key, name, areas, address_hash) FROM STDIN") as copy:
            for line, (good, key) in enumerate(zip(batch, keys, strict=True)):
                copy.write_row((line, good.email, key, good.name, good.areas, hashes[key]))
    finally:
        cursor.close()
    return ({r.email_key: r for r in conn.execute(_STAGED_EXISTING)},
            set(conn.scalars(_STAGED_SUPPRESSED)))


def _add(conn: Connection, inserts: list[dict[str, str]], now: datetime, cause: str) -> None:
    """Insert the batch's new subscribers, each with its first event (see the figures above ``_STAGE``)."""
    if conn.dialect.name != "postgresql":
        _IMPORTED.run_many(conn, inserts, {"now": now})
        note_imported(conn, [row["email_key"] for row in inserts], cause, now)
        return
    added = conn.execute(_STAGED_ADD, {"now": now, "cause": cause[:CAUSE_MAX]}).rowcount
    if added != len(inserts):
        raise AudienceError(f"{len(inserts) - added} of the file's new addresses were added by someone else "
                            "during the import: nothing was imported; run it again")


# --- CSV export --------------------------------------------------------------------------------


def export_csv(conn: Connection, out: IO[str], status: str = "active") -> int:
    """Write ``email,name,areas`` for every subscriber in ``status``, streamed in keyset pages.

    ``out`` is the caller's: ``subscribers export FILE`` creates it readable by its owner only.
    """
    count = 0
    for text, rows in export_chunks(conn, status):
        out.write(text)
        count += rows
    return count


def export_chunks(conn: Connection, status: str = "active") -> Iterator[tuple[str, int]]:
    """The export as CSV text, a header then one chunk per keyset page of ``BATCH`` rows (with its row count): the
    console streams these, ``export_csv`` writes them to a file. Every cell goes through ``escape``."""
    if status not in t.SUBSCRIBER_STATUSES:
        raise AudienceError(f"status: {status!r} is not one of {', '.join(t.SUBSCRIBER_STATUSES)}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    s = t.subscribers.c
    for rows in keyset_pages(conn, sa.select(s.id, s.email, s.name, s.areas).where(s.status == status), s.id, BATCH):
        writer.writerows((escape(r.email), escape(r.name), r.areas) for r in rows)
        yield buffer.getvalue(), len(rows)
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue(), 0


# A cell a spreadsheet would run as a formula (=HYPERLINK(…), +cmd, -1+1, @SUM, a tab or CR first): OWASP's
# "CSV injection". An address may begin with = + - (they are allowed before the @-sign) and a name with anything,
# so the export writes such a cell with a ' before it, which a spreadsheet shows as text, and the import takes
# one ' off again: every cell imports back as it was, a cell that already began with quotes included.
_FORMULA = re.compile(r"'*[=+\-@\t\r]")


def escape(cell: str) -> str:
    """A cell a spreadsheet will not run: ``'`` before one that would start a formula."""
    return "'" + cell if _FORMULA.match(cell) else cell


def unescape(cell: str) -> str:
    """``escape`` undone: the export's leading ``'`` taken off again."""
    return cell[1:] if cell.startswith("'") and _FORMULA.match(cell) else cell
