"""Finding subscribers: ``subscribers list`` (every match, counted) and the console's and the API's keyset pages
(``page``: 50 at a time after a cursor, never counting them all).

``search`` is a piece of the address or the name, in any case, ``%`` and ``_`` literal. A LIKE '%…%' reads
every row: at 1,000,000 subscribers a rare piece took 300-400 ms on SQLite and on PostgreSQL (a common one stops
at the 51st match in 1 ms). So migration 0008 indexes the pieces of every address and name:

- SQLite: ``subscribers_search``, an FTS5 table with the trigram tokenizer over ``email_key`` and ``name``
  (external content, kept in step by triggers). A phrase of three or more characters is an exact substring match;
  FTS5 gives its matches in rowid order, so the page joins them in id order and stops at the 51st: 0.4-6 ms at
  the 95th percentile at 1M (bench/subscribers_search.py; 21 ms for a piece in every address with a status and an
  area filter). It costs 138 MB at 1M subscribers (256 MB without it). Its case folding is Unicode's, where SQL
  ``lower()`` folds ASCII only. One or two characters have no trigram: they fall back to LIKE, which stops early
  for a common piece and reads every row for a rare one (600 ms on SQLite, 370 ms on PostgreSQL at 1M).
- PostgreSQL: pg_trgm GIN indexes on ``email_key`` and ``lower(name)``, which the planner uses for the very same
  LIKE. Only a custom plan can: psycopg prepares a statement run five times, and PostgreSQL's generic plan for
  it scans the primary key whatever the pattern (430 ms for a rare piece), so a search runs with
  ``plan_cache_mode = force_custom_plan`` for its transaction (0.8-2.2 ms at the 95th percentile at 1M).

Without the index (a database whose owner may not create pg_trgm, an SQLite without FTS5) every query still
works, by the scan.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import AudienceError
from ..store import keyset_pages
from ..store import tables as t
from .subscribers import Subscriber, _record, _Rejected, parse_areas, split_areas

PAGE = 50
FTS = "subscribers_search"  # migration 0008, SQLite only
_fts = sa.table(FTS, sa.column("rowid", sa.Integer))


@dataclass(frozen=True)
class Query:
    """What the console's and the API's list asks for; empty fields ask nothing."""

    search: str = ""
    status: str = ""
    area: str = ""


@dataclass(frozen=True)
class Found:
    subscribers: list[Subscriber]
    after: int | None   # the cursor of the next page (the last id shown), None on the last page


@dataclass(frozen=True)
class Listing:
    subscribers: list[Subscriber]
    matching: int                      # how many match the filters (the list may be truncated)
    by_status: dict[str, int]          # over the whole list
    by_area: dict[str, int]            # active subscribers who get each area in full


def page(conn: Connection, known: Sequence[str], query: Query, after: int | None = None,
         size: int = PAGE) -> Found:
    """The ``size`` subscribers matching ``query`` after id ``after``, in id order, read through the index.

    Nothing is counted: one row more than the page is read to know whether there is a next one.
    """
    s = t.subscribers.c
    where = _filters(known, query.area or None, query.status or None, None)
    needle = query.search.strip()
    select = sa.select(t.subscribers)
    if needle and _indexed(conn, needle):
        order: sa.ColumnElement[int] = _fts.c.rowid
        select = select.join(_fts, _fts.c.rowid == s.id).where(_match(needle))
    else:
        order = s.id
        where += _search(needle, False) if needle else []
        _custom_plans(conn)
    if after is not None:
        where.append(order > after)
    rows = conn.execute(select.where(*where).order_by(order).limit(size + 1)).all()
    found = [_record(r) for r in rows[:size]]
    return Found(found, found[-1].id if len(rows) > size else None)


def status_counts(conn: Connection) -> dict[str, int]:
    """Subscribers by status over the whole list: the few statuses counted on ix_subscribers_status_id's ranges,
    ``active`` (nine in ten) as the total less them. At 1M the total is SQLite's b-tree count (7 ms) and a parallel
    index-only scan on PostgreSQL (62 ms); one GROUP BY over every row took 110 and 98 ms."""
    s = t.subscribers.c
    few = [status for status in t.SUBSCRIBER_STATUSES if status != "active"]
    counts = dict.fromkeys(t.SUBSCRIBER_STATUSES, 0)
    counts.update(dict(conn.execute(sa.select(s.status, sa.func.count()).where(s.status.in_(few))
                                    .group_by(s.status)).all()))
    total = conn.scalar(sa.select(sa.func.count()).select_from(t.subscribers)) or 0
    counts["active"] = total - sum(counts[status] for status in few)
    return counts


def listing(conn: Connection, known: Sequence[str], area: str | None = None, status: str | None = None,
            limit: int | None = 100, search: str | None = None) -> Listing:
    """The first ``limit`` matches (None: all) in id order, how many match, and the whole list's counts."""
    where = _filters(known, area, status, search, _indexed(conn, search or ""))
    _custom_plans(conn)
    s = t.subscribers.c
    rows = conn.execute(sa.select(t.subscribers).where(*where).order_by(s.id).limit(limit)).all()
    matching = conn.scalar(sa.select(sa.func.count()).select_from(t.subscribers).where(*where)) or 0
    return Listing([_record(r) for r in rows], matching, status_counts(conn), _area_counts(conn, known))


def iter_listing(conn: Connection, known: Sequence[str], area: str | None = None, status: str | None = None,
                 limit: int | None = None, search: str | None = None, batch: int = 1000) -> Iterator[Subscriber]:
    """The same matches as ``listing``, streamed in keyset pages of ``batch`` (a million rows, flat memory)."""
    query = sa.select(t.subscribers).where(*_filters(known, area, status, search, _indexed(conn, search or "")))
    size = batch if limit is None else max(1, min(batch, limit))
    rows = (row for page in keyset_pages(conn, query, t.subscribers.c.id, size) for row in page)
    yield from (_record(r) for r in itertools.islice(rows, limit))


def _filters(known: Sequence[str], area: str | None, status: str | None, search: str | None,
             indexed: bool = False) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of ``subscribers list``, shared by its page, its count and its stream, and the console's."""
    s = t.subscribers.c
    where: list[sa.ColumnElement[bool]] = []
    if status:
        if status not in t.SUBSCRIBER_STATUSES:
            raise AudienceError(f"status: {status!r} is not one of {', '.join(t.SUBSCRIBER_STATUSES)}")
        where.append(s.status == status)
    if area:
        try:
            chosen = parse_areas(area, known)
        except _Rejected as exc:
            raise AudienceError(f"area: {exc}") from None
        if len(chosen) > 1:
            raise AudienceError(f"area: one area at a time (got {area!r})")
        if chosen:  # '' (all areas) receives every area
            where.append(sa.or_(s.areas == "", (sa.literal(";") + s.areas + ";").contains(f";{chosen[0]};")))
    if search and search.strip():
        where += _search(search.strip(), indexed)
    return where


def _search(needle: str, indexed: bool) -> list[sa.ColumnElement[bool]]:
    """The address is matched on ``email_key`` (casefolded in Python, so exact for any script), the name through
    ``lower()`` (on SQLite's LIKE: ASCII letters only) or, with the FTS5 index, in Unicode's folding."""
    s = t.subscribers.c
    if indexed:
        return [s.id.in_(sa.select(_fts.c.rowid).where(_match(needle)))]
    return [sa.or_(s.email_key.contains(needle.casefold(), autoescape=True),
                   sa.func.lower(s.name).contains(needle.lower(), autoescape=True))]


def _match(needle: str) -> sa.ColumnElement[bool]:
    """The FTS5 query: the piece as one phrase (an exact substring under the trigram tokenizer) in either column."""
    def phrase(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'
    query = f"email_key : {phrase(needle.casefold())} OR name : {phrase(needle)}"
    return sa.literal_column(FTS).op("MATCH")(sa.literal(query, sa.Text))


def _indexed(conn: Connection, needle: str) -> bool:
    """Whether SQLite's trigram index can answer: three characters or more, and the table is there."""
    if conn.dialect.name != "sqlite" or len(needle.strip()) < 3:
        return False
    return conn.scalar(sa.text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :n"), {"n": FTS}) == 1


def _custom_plans(conn: Connection) -> None:
    """On PostgreSQL, plan this transaction's queries for their values, so pg_trgm's index is used for a rare
    piece (see the module's docstring)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SET LOCAL plan_cache_mode = force_custom_plan"))


def _area_counts(conn: Connection, known: Sequence[str]) -> dict[str, int]:
    """Active subscribers who get each area: a scan of the active rows (360 ms at 1M), for the CLI only."""
    s = t.subscribers.c
    per_set = conn.execute(sa.select(s.areas, sa.func.count()).where(s.status == "active").group_by(s.areas)).all()
    counts = dict.fromkeys(known, 0)
    for areas, n in per_set:
        for area in split_areas(areas) or known:
            if area in counts:
                counts[area] += n
    return counts


def active_count(conn: Connection) -> int:
    return conn.scalar(sa.select(sa.func.count()).select_from(t.subscribers)
                       .where(t.subscribers.c.status == "active")) or 0
