"""The console's subscriber search and pages at 1,000,000 subscribers, on SQLite and on PostgreSQL (#22).

    .venv/bin/python bench/subscribers_search.py                   # 1,000,000 subscribers, both databases
    .venv/bin/python bench/subscribers_search.py --subscribers 2000 --runs 3     # the suite's smoke run

For each database: a fresh store at the latest schema (SQLite: a file in a temporary folder; PostgreSQL: a fresh
schema nl_bench_<hex>, dropped at the end even on failure), N subscribers loaded in one go (SQLite: executemany
through the FTS5 triggers of migration 0008; PostgreSQL: COPY, its pg_trgm indexes kept up as it goes), then
ANALYZE. Addresses are first.last<n>@<one of 8 domains>, names "First Last" from 36 first and 34 last names, so
a last name is a common piece (1 in 34), "zebulon" a rare one (10 at 1M), an address up to its number a prefix
of a few. Status 90 % active, areas one of 8 sets. One subscriber has 40 status events, 12 messages and 6 notices.

Timed, ``--runs`` times each after one warm-up, as the median and the 95th percentile in ms:

- ``audience.search.page``, the query alone (50 rows after a cursor), for a common piece, a rare one, one that is
  nowhere, an address prefix, a piece in every address with a status and an area filter, and a two-letter piece
  (too short for a trigram: the scan);
- the console's pages through Starlette's TestClient with an operator's session (the request, the queries with
  the status counts, the template): the list, the list searched (common, rare, prefix), its page after id N/2,
  and a subscriber's page with its history.

Target: every search and page below 200 ms at the 95th percentile (met/MISSED per line). Exits 0 whether
targets are met or not (a measurement), 1 on an error. ``--json PATH`` also writes the figures.

A run of 2026-12-04 on this 2-core machine (shared with other work), 1,000,000 subscribers, 50 runs, p95 in ms
(median in brackets), SQLite 3.40 / PostgreSQL 15:

    query: common 'garcia'               1.3 (0.8)     2.2 (1.6)
    query: rare 'zebulon'                1.9 (0.5)     0.9 (0.7)
    query: nowhere 'qqqq'                0.4 (0.2)     0.8 (0.6)
    query: prefix 'maria.garcia12'       5.9 (1.2)     1.5 (1.2)
    query: 'example'+blocked+Vision     21.4 (14.1)    1.7 (1.3)
    query: two letters (a scan)        898 (599)     476 (370)      no target: no trigram to index
    page: the list, with its counts     39.3 (24.3)   96.5 (75.9)   the counts are most of it
    page: searched (3 kinds)          9.6-12.8       11.7-13.4
    page: after id 500,000              11.7 (8.3)     9.2 (7.3)
    page: a subscriber's                12.2 (8.4)    12.0 (8.5)

Every target met. Before migration 0008 a rare piece took 300-400 ms (SQLite) and 290-430 ms (PostgreSQL), and the
list's counts by one GROUP BY 110 and 98 ms, on every page.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.workers import fresh_schema  # noqa: E402
from newsletter import accounts, store  # noqa: E402
from newsletter.audience import search  # noqa: E402
from newsletter.store import tables as t  # noqa: E402

TARGET_MS = 200.0
PASSWORD = "bench password 0123"
FIRST = ("anna maria john james mary robert linda michael sarah david laura peter olga ivan chen wei yuki hana omar "
         "fatima lucas emma noah mia liam sofia ada grace alan edsger barbara ken dennis bjarne guido linus").split()
LAST = ("smith garcia mueller rossi kowalski novak tanaka kim nguyen silva jones brown martin bernard dubois schmidt "
        "fischer weber meyer wagner becker hoffmann lovelace hopper turing dijkstra liskov thompson ritchie "
        "stroustrup rossum torvalds kernighan pike").split()
DOMAINS = ("example.org", "example.com", "mail.example", "uni.example.edu", "corp.example.net", "post.example.de",
           "lab.example.ac.uk", "inbox.example.fr")
AREA_SETS = ("", "LLM", "RL", "LLM;RL", "Vision", "Agents", "LLM;Vision;RL;Agents", "RL;Agents")
STATUSES = ("active",) * 90 + ("unsubscribed",) * 4 + ("bounced",) * 3 + ("pending",) * 2 + ("blocked",)
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def people(n: int, seed: int = 22) -> Iterator[tuple[Any, ...]]:
    """(id, email, email_key, name, areas, status) for ids 1..n, the same on every run."""
    pick = random.Random(seed)
    for i in range(1, n + 1):
        first, last = pick.choice(FIRST), pick.choice(LAST)
        if i % 100_000 == 7 or (n < 100_000 and i % max(1, n // 10) == 7):
            first = "zebulon"
        email = f"{first}.{last}{i}@{pick.choice(DOMAINS)}"
        yield i, email, email.casefold(), f"{first.title()} {last.title()}", pick.choice(AREA_SETS), \
            pick.choice(STATUSES)


def load_sqlite(engine: sa.Engine, n: int) -> None:
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.executemany("INSERT INTO subscribers (id, email, email_key, name, areas, status, source, created_at, "
                        "updated_at, bounce_score) VALUES (?, ?, ?, ?, ?, ?, 'import', ?, ?, 0)",
                        (row + (NOW.isoformat(" "), NOW.isoformat(" ")) for row in people(n)))
        raw.commit()
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


def load_postgresql(engine: sa.Engine, n: int) -> None:
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert conn is not None
        with conn.cursor() as cur:
            with cur.copy("COPY subscribers (id, email, email_key, name, areas, status, source, created_at, "
                          "updated_at) FROM STDIN") as copy:
                for row in people(n):
                    copy.write_row(row + ("import", NOW, NOW))
            cur.execute("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), %s)", (n,))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE subscribers")
        conn.autocommit = False
    finally:
        raw.close()


def add_history(engine: sa.Engine, sid: int) -> None:
    """40 status events, 12 issues' messages and 6 notices for subscriber ``sid`` (the subscriber's page)."""
    with engine.begin() as conn:
        conn.execute(t.subscriber_events.insert(), [
            {"subscriber_id": sid, "at": NOW + timedelta(hours=h), "status": "active", "cause": f"bench {h}"}
            for h in range(40)])
        for week in range(12):
            iid = conn.execute(t.issues.insert().values(slug=f"2026-{week + 1:02d}-01", title="Bench", state="sent",
                                                        created_at=NOW)).inserted_primary_key[0]
            oid = conn.execute(t.outbox.insert().values(
                issue_id=iid, subscriber_id=sid, email="x", name="", group_key="all", state="sent", attempts=1,
                created_at=NOW, updated_at=NOW, sent_at=NOW)).inserted_primary_key[0]
            if week % 2:
                conn.execute(t.bounce_log.insert().values(
                    received_at=NOW, source="bench", kind="bounce", recipient="x", domain="example.org",
                    status="4.2.2", diagnostic="452 4.2.2 Mailbox full", subscriber_id=sid, issue_id=iid,
                    outbox_id=oid, action="soft bounce score 1/5", proof="verp", **{"class": "soft"}))


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    fn()  # warm-up: the caches a running server would have
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    p95 = statistics.quantiles(times, n=20, method="inclusive")[18] if runs > 1 else times[0]
    return {"median_ms": round(statistics.median(times), 2), "p95_ms": round(p95, 2)}


QUERIES = {  # name: (search, status, area)
    "common piece 'garcia'": ("garcia", "", ""),
    "rare piece 'zebulon'": ("zebulon", "", ""),
    "nowhere 'qqqq'": ("qqqq", "", ""),
    "address prefix 'maria.garcia12'": ("maria.garcia12", "", ""),
    "'example' + blocked + Vision": ("example", "blocked", "Vision"),
    "two letters 'zq' (no trigram)": ("zq", "", ""),
}


def measure(url: str, n: int, runs: int, known: tuple[str, ...]) -> dict[str, dict[str, float]]:
    from starlette.testclient import TestClient

    from newsletter.config import Config
    from newsletter.web.app import create_app

    engine = store.engine_for(url)
    store.migrate(engine)
    started = time.perf_counter()
    (load_sqlite if url.startswith("sqlite") else load_postgresql)(engine, n)
    loaded = time.perf_counter() - started
    add_history(engine, n // 2)
    figures: dict[str, dict[str, float]] = {"load": {"seconds": round(loaded, 1)}}
    with engine.connect() as conn:
        for name, (piece, status, area) in QUERIES.items():
            query = search.Query(piece, status, area)
            figures[f"query: {name}"] = timed(lambda q=query: search.page(conn, known, q), runs)
            conn.rollback()
    config = Config(newsletter={"secret_key": "bench-secret-0123456789abcdef0123456789"}, database={"url": url})
    with engine.begin() as conn:
        accounts.add_user(conn, "bench", "operator", PASSWORD, NOW)
    client = TestClient(create_app(config, engine), base_url="http://localhost", follow_redirects=False)
    form = client.get("/admin/login").text.split('name="csrf" value="')[1].split('"')[0]
    assert client.post("/admin/login", data={"csrf": form, "name": "bench", "password": PASSWORD}).status_code == 303
    pages = {"list page": "/admin/subscribers", "list searched 'garcia'": "/admin/subscribers?q=garcia",
             "list searched 'zebulon'": "/admin/subscribers?q=zebulon",
             "list searched 'maria.garcia12'": "/admin/subscribers?q=maria.garcia12",
             f"list page after id {n // 2}": f"/admin/subscribers?after={n // 2}",
             "a subscriber's page": f"/admin/subscribers/{n // 2}"}
    for name, path in pages.items():
        def get(path: str = path) -> None:
            assert client.get(path).status_code == 200, path
        figures[f"page: {name}"] = timed(get, runs)
    engine.dispose()
    return figures


def report(label: str, figures: dict[str, dict[str, float]]) -> list[str]:
    print(f"\n{label}: loaded in {figures['load']['seconds']} s")
    print(f"  {'':48} {'median ms':>10} {'p95 ms':>8}")
    lines = []
    for name, got in figures.items():
        if name == "load":
            continue
        print(f"  {name:48} {got['median_ms']:>10.2f} {got['p95_ms']:>8.2f}")
        if "two letters" not in name:
            met = "met" if got["p95_ms"] < TARGET_MS else "MISSED"
            lines.append(f"{met}: {label}, {name}: p95 {got['p95_ms']:.1f} ms (target < {TARGET_MS:.0f})")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50, help="timed runs of each query and page")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--skip-pg", action="store_true", help="SQLite only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    known = ("LLM", "Vision", "RL", "Agents")
    results: dict[str, Any] = {"subscribers": args.subscribers, "runs": args.runs}
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        results["sqlite"] = measure(f"sqlite:///{folder}/bench.db", args.subscribers, args.runs, known)
        lines += report(f"SQLite, {args.subscribers:,} subscribers", results["sqlite"])
    if not args.skip_pg:
        with fresh_schema(args.pg_url) as url:
            results["postgresql"] = measure(url, args.subscribers, args.runs, known)
        lines += report(f"PostgreSQL, {args.subscribers:,} subscribers", results["postgresql"])
    print()
    print("\n".join(lines))
    results["targets"] = lines
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
