"""Workers on PostgreSQL against one SQLite process, and the claim's cost at 10,000 and 1,000,000 due rows (#16).

    .venv/bin/python bench/postgres.py              # 100,000 subscribers; claims at 10,000 and 1,000,000 due rows
    .venv/bin/python bench/postgres.py --large --commit-every 8   # 1,000,000 subscribers
    .venv/bin/python bench/postgres.py --subscribers 300 --claims-small 200 --claims-large 2000 \\
        --claim-calls 5 --sink aiosmtpd             # the suite's smoke run

One run, this machine, into Postfix's smtp-sink (bench/run.py's sink and helpers):

1. PostgreSQL, a fresh schema (nl_bench_<hex>, dropped at the end even on failure): N subscribers
   imported with `newsletter subscribers import`, an earlier issue's N rows in the outbox already sent
   (enqueued, then one UPDATE and a VACUUM ANALYZE, as a database that has sent before holds them),
   `newsletter send ISSUE --enqueue`, then two `newsletter worker --exit-when-idle` processes of
   [smtp] connections = 4 each: wall time from their start to the last one's exit, messages/s, and
   PostgreSQL's table rows read per message delivered: the change of pg_stat_database's
   tup_returned + tup_fetched for the whole database over the worker phase (other sessions on the
   database count too), and the same counters summed over this schema's tables and indexes only.
2. SQLite, the same list and the same earlier issue: one `newsletter send ISSUE` process with the
   same connections (its time includes its own enqueue, about a second at 100,000), and the ratio
   PG-two-workers / SQLite (target: at least 0.8).
3. The claim: for each size a fresh schema holding an earlier issue's rows (sent), a tenth of the size
   sent ahead of this issue's due rows, and the due rows themselves (generate_series), ANALYZEd; then
   ``outbox.claim`` of 50 rows, each call in a transaction that is rolled back, so every call sees the
   same table: the median ms per claim at each size (target: the large size within 2x of the small).

Prints a table and one met/MISSED line per target; exits 0 whether targets are met or not (a
measurement), 1 on an error. ``--json PATH`` also writes the figures.

``--lease SECONDS`` starts the workers with send.pool.LEASE set to it (a heartbeat every quarter of
it). This script found a deadlock between a worker's heartbeat (``outbox.renew``) and one of its own
sending transactions, which paused every 100,000-message run; renew now skips locked rows.
``--commit-every N`` sets the workers' ``[smtp] commit_every`` (rows marked sending per commit).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench.run's sink and list, bench.workers' fresh schema

from bench.run import CONNECTIONS, ensure_postfix_tools, measured, sink, write_config, write_list  # noqa: E402
from bench.workers import fresh_schema, newsletter  # noqa: E402
from newsletter import store  # noqa: E402
from newsletter.clock import utcnow  # noqa: E402
from newsletter.send import outbox  # noqa: E402
from newsletter.store import tables as t  # noqa: E402

EARLIER, ISSUE = "2026-05-17", "2026-05-28"
WORKERS = 2
CLAIM = 50
RATIO_TARGET = 0.8  # PG with two workers against one SQLite process
READS_TARGET = 50  # table and index rows PostgreSQL reads per message delivered (pg_stat_database)
CLAIM_TARGET = 2.0  # the large queue's claim against the small one's


def pg_config(folder: Path, url: str, port: int) -> Path:
    """bench/run.py's config for this sink, with the database pointed at PostgreSQL."""
    config = write_config(folder, port)
    text = config.read_text(encoding="utf-8")
    sqlite_url = f'url = "sqlite:///{folder / "bench.db"}"'
    assert sqlite_url in text, text
    config.write_text(text.replace(sqlite_url, f'url = "{url}"'), encoding="utf-8")
    return config


def earlier_issue_sent(config: Path, url: str) -> dict[str, Any]:
    """Enqueue the earlier issue and mark all its rows sent in one UPDATE, as if it went out last week."""
    enqueued = measured(["send", EARLIER, "--enqueue"], config)
    engine = store.engine_for(url)
    now = utcnow()
    with engine.begin() as conn:
        iid = conn.scalar(sa.select(t.issues.c.id).where(t.issues.c.slug == EARLIER))
        rows = conn.execute(t.outbox.update().where(t.outbox.c.issue_id == iid)
                            .values(state="sent", sent_at=now, updated_at=now)).rowcount
        conn.execute(t.issues.update().where(t.issues.c.id == iid).values(state="sent", finished_at=now))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE outbox" if engine.dialect.name == "postgresql" else "ANALYZE")
    engine.dispose()
    return {"rows": rows, "enqueue_seconds": enqueued["seconds"]}


def read_stats(engine: sa.Engine, schema: str) -> dict[str, int]:
    """Rows read so far: the whole database's (pg_stat_database) and this schema's tables and indexes."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")  # this session's own counts, at once
        conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        database = conn.execute(sa.text(
            "SELECT tup_returned + tup_fetched FROM pg_stat_database WHERE datname = current_database()")).scalar_one()
        # a table's heap rows (sequential scans, and fetched through any index) and each index's entries read
        relations = dict(conn.execute(sa.text(
            "SELECT relname, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_all_tables "
            "WHERE schemaname = :s UNION ALL "
            "SELECT indexrelname, coalesce(idx_tup_read, 0) FROM pg_stat_all_indexes WHERE schemaname = :s"),
            {"s": schema}).all())
        conn.rollback()
    return {"database": int(database), "schema": sum(relations.values()),
            **{f"relation {name}": int(n) for name, n in relations.items()}}


# `newsletter worker` with send.pool.LEASE set from argv[1] (--lease): a heartbeat every quarter of it.
LEASED = ("import sys; from datetime import timedelta; from newsletter.send import pool; "
          "pool.LEASE = timedelta(seconds=float(sys.argv.pop(1))); from newsletter.cli import main; main()")


def run_workers(config: Path, folder: Path, count: int, lease: float | None,
                commit_every: int = 1) -> dict[str, float]:
    """``count`` worker processes until the last exits: wall time, their CPU seconds, the largest peak RSS."""
    env = {**os.environ, "NEWSLETTER_CONFIG": str(config), "NEWSLETTER_SMTP__COMMIT_EVERY": str(commit_every)}
    command = [sys.executable, "-m", "newsletter"] if lease is None else [sys.executable, "-c", LEASED, str(lease)]
    logs = [(folder / f"worker{i}.err").open("wb") for i in range(count)]
    procs: list[subprocess.Popen[bytes]] = []
    cpu, rss, failed = 0.0, 0, []
    try:
        start = time.perf_counter()
        procs = [subprocess.Popen([*command, "worker", "--exit-when-idle"], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=log) for log in logs]
        for i, proc in enumerate(procs):
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
            rss = max(rss, usage.ru_maxrss)
            if proc.returncode != 0:
                failed.append(i)
        wall = time.perf_counter() - start
    finally:
        for proc in procs:  # only if something above failed: no worker outlives the run
            if proc.returncode is None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs:
            log.close()
    if failed:
        raise SystemExit("\n".join(f"worker {i} exited {procs[i].returncode}:\n"
                                   f"{(folder / f'worker{i}.err').read_text()[-2000:]}" for i in failed))
    return {"seconds": round(wall, 3), "cpu_seconds": round(cpu, 3), "peak_rss_mb": round(rss / 1024, 1)}


def sent_count(config: Path, logs: Sequence[Path] = ()) -> int:
    """How many rows of the issue were sent; SystemExit (with the workers' logs) unless the issue is sent."""
    report = json.loads(newsletter(config, "report", ISSUE, "--json"))
    if report["state"] != "sent":
        tails = "".join(f"\n{log.name}:\n{log.read_text()[-3000:]}" for log in logs)
        raise SystemExit(f"{ISSUE} is {report['state']} after delivery, not sent ({report.get('pause_reason')}): "
                         f"{report['counts']}{tails}")
    return int(report["counts"]["sent"])


def postgres_run(pg_url: str, port: int, people: Path, count: int, work: Path,
                 lease: float | None, commit_every: int = 1) -> dict[str, Any]:
    folder = work / "postgres"
    folder.mkdir()
    with fresh_schema(pg_url) as url:
        schema = url.rsplit("%3D", 1)[1]
        config = pg_config(folder, url, port)
        newsletter(config, "init")
        imported = measured(["subscribers", "import", str(people)], config)
        earlier = earlier_issue_sent(config, url)
        enqueue = measured(["send", ISSUE, "--enqueue"], config)
        admin = sa.create_engine(pg_url)
        try:
            before = read_stats(admin, schema)
            delivered = run_workers(config, folder, WORKERS, lease, commit_every)
            time.sleep(1.0)  # the workers' backends flushed their counts on exit; let the last ones land
            after = read_stats(admin, schema)
        finally:
            admin.dispose()
        messages = sent_count(config, [folder / f"worker{i}.err" for i in range(WORKERS)])
    by_relation = {key.split(" ", 1)[1]: round((after[key] - before.get(key, 0)) / messages, 2)
                   for key in after if key.startswith("relation ")}
    return {"subscribers": count, "import": imported, "earlier": earlier, "enqueue": enqueue, "workers": WORKERS,
            "lease_seconds": lease, "commit_every": commit_every,
            "connections_per_worker": CONNECTIONS, "deliver": delivered, "messages": messages,
            "rate": round(messages / delivered["seconds"], 1),
            "cpu_us_per_message": round(delivered["cpu_seconds"] / messages * 1e6, 1),
            "rows_read_per_message": round((after["database"] - before["database"]) / messages, 2),
            "schema_rows_read_per_message": round((after["schema"] - before["schema"]) / messages, 2),
            "rows_read_per_message_by_relation": dict(sorted(by_relation.items(), key=lambda kv: -kv[1]))}


def sqlite_run(port: int, people: Path, count: int, work: Path) -> dict[str, Any]:
    folder = work / "sqlite"
    folder.mkdir()
    config = write_config(folder, port, "processes = 1\n")  # one SQLite process: what the workers are held to
    imported = measured(["subscribers", "import", str(people)], config)
    earlier = earlier_issue_sent(config, f"sqlite:///{folder / 'bench.db'}")
    sent = measured(["send", ISSUE], config)
    messages = sent_count(config)
    return {"subscribers": count, "import": imported, "earlier": earlier, "send": sent, "messages": messages,
            "rate": round(messages / sent["seconds"], 1),
            "cpu_us_per_message": round(sent["cpu_seconds"] / messages * 1e6, 1)}


def claim_run(pg_url: str, due: int, calls: int) -> dict[str, Any]:
    """Median time of ``outbox.claim`` of 50 rows with ``due`` rows queued, each call rolled back."""
    with fresh_schema(pg_url) as url:
        engine = store.engine_for(url)
        try:
            store.migrate(engine)
            now = utcnow()
            started = time.perf_counter()
            row = ("INSERT INTO outbox (issue_id, email, name, group_key, state, attempts, created_at, updated_at) "
                   "SELECT :iid, :prefix || n || '@example.org', '', 'all', :state, 0, :now, :now "
                   "FROM generate_series(1, :n) n")
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO issues (id, slug, title, state, created_at) VALUES "
                                     "(1, 'earlier', 'earlier', 'sent', :now), (2, 'this', 'this', 'sending', :now)"),
                             {"now": now})
                for iid, prefix, state, n in ((1, "e", "sent", due), (2, "a", "sent", due // 10),
                                              (2, "d", "queued", due)):
                    conn.execute(sa.text(row), {"iid": iid, "prefix": prefix, "state": state, "now": now, "n": n})
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE outbox")
            built = time.perf_counter() - started
            times = []
            lease = timedelta(seconds=60)
            with engine.connect() as conn:
                for i in range(calls + 5):  # the first five warm the connection, the plan cache and the pages
                    start = time.perf_counter()
                    taken = outbox.claim(conn, 2, "bench:1:0", CLAIM, lease, now)
                    elapsed = time.perf_counter() - start
                    conn.rollback()
                    if len(taken) != min(CLAIM, due):
                        raise SystemExit(f"a claim at {due:,} due rows took {len(taken)} rows, not {CLAIM}")
                    if i >= 5:
                        times.append(elapsed)
        finally:
            engine.dispose()
    return {"due": due, "rows": due * 2 + due // 10, "calls": calls, "build_seconds": round(built, 2),
            "median_ms": round(statistics.median(times) * 1000, 3), "min_ms": round(min(times) * 1000, 3),
            "max_ms": round(max(times) * 1000, 3)}


def targets(results: dict[str, Any]) -> list[str]:
    ratio = results["ratio"]
    pg, lite = results["postgres"], results["sqlite"]
    small, large = results["claims"]
    claim_ratio = results["claim_ratio"]
    return [
        f"PG {WORKERS} workers ≥ {RATIO_TARGET} × SQLite: {'met' if ratio >= RATIO_TARGET else 'MISSED'} "
        f"({ratio:.2f}: {pg['rate']:,} vs {lite['rate']:,} messages/s)",
        f"PG rows read per message ≤ {READS_TARGET}: "
        f"{'met' if pg['rows_read_per_message'] <= READS_TARGET else 'MISSED'} ({pg['rows_read_per_message']})",
        f"claim at {large['due']:,} due rows within {CLAIM_TARGET:g}× of {small['due']:,}: "
        f"{'met' if claim_ratio <= CLAIM_TARGET else 'MISSED'} "
        f"({claim_ratio:.2f}×: {large['median_ms']} vs {small['median_ms']} ms median)",
    ]


def report(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    pg, lite = results["postgres"], results["sqlite"]
    table = Table(title=f"PostgreSQL workers vs SQLite, claims (one run, {results['cores']} cores, {results['sink']})")
    for col in ("what", "messages/s", "CPU µs/msg", "peak RSS MB", "seconds"):
        table.add_column(col)
    n = f"{pg['subscribers']:,}"
    table.add_row(f"PG: import {n} subscribers", "", "", str(pg["import"]["peak_rss_mb"]),
                  str(pg["import"]["seconds"]))
    table.add_row(f"PG: earlier issue, {pg['earlier']['rows']:,} rows sent", "", "", "",
                  str(pg["earlier"]["enqueue_seconds"]))
    table.add_row(f"PG: send {ISSUE} --enqueue", "", "", str(pg["enqueue"]["peak_rss_mb"]),
                  str(pg["enqueue"]["seconds"]))
    d = pg["deliver"]
    lease = f", lease {pg['lease_seconds']:g} s" if pg["lease_seconds"] else ""
    lease += f", commit_every {pg['commit_every']}" if pg.get("commit_every", 1) != 1 else ""
    table.add_row(f"PG: {WORKERS} workers × {CONNECTIONS} connections{lease}, {pg['messages']:,} messages",
                  f"{pg['rate']:,}",
                  str(pg["cpu_us_per_message"]), str(d["peak_rss_mb"]), str(d["seconds"]))
    table.add_row("PG: rows read per message (pg_stat_database)", str(pg["rows_read_per_message"]), "", "", "")
    table.add_row("PG: rows read per message (this schema only)", str(pg["schema_rows_read_per_message"]), "", "", "")
    table.add_row(f"SQLite: import {n} subscribers", "", "", str(lite["import"]["peak_rss_mb"]),
                  str(lite["import"]["seconds"]))
    s = lite["send"]
    table.add_row(f"SQLite: send, 1 process × {CONNECTIONS} connections, {lite['messages']:,} messages",
                  f"{lite['rate']:,}", str(lite["cpu_us_per_message"]), str(s["peak_rss_mb"]), str(s["seconds"]))
    table.add_row(f"PG {WORKERS} workers / SQLite", f"{results['ratio']:.2f}", "", "", "")
    for claim in results["claims"]:
        table.add_row(f"claim of {CLAIM}, {claim['due']:,} due ({claim['rows']:,} rows; median ms)",
                      str(claim["median_ms"]), "", "", f"{claim['build_seconds']} to build")
    table.add_row("claim, large / small", f"{results['claim_ratio']:.2f}", "", "", "")
    Console(width=max(Console().width, 120)).print(table)
    top = [f"{name} {n}" for name, n in pg["rows_read_per_message_by_relation"].items() if n >= 0.5]
    print(f"PG rows read per message, by table/index of this schema: {', '.join(top) or 'none over 0.5'}")
    for line in results["targets"]:
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000, help="list size for both delivery runs")
    parser.add_argument("--large", action="store_const", dest="subscribers", const=1_000_000,
                        help="1,000,000 subscribers (not run yet; from the 100,000 run, about half an hour here)")
    parser.add_argument("--claims-small", type=int, default=10_000, help="due rows for the small claim")
    parser.add_argument("--claims-large", type=int, default=1_000_000, help="due rows for the large claim")
    parser.add_argument("--claim-calls", type=int, default=50, help="timed claims at each size")
    parser.add_argument("--sink", choices=["smtp-sink", "aiosmtpd"], default="smtp-sink",
                        help="receiving server (aiosmtpd: no Postfix needed)")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--lease", type=float, help="the workers' claim lease in seconds (default: the project's, "
                        "60 s, a heartbeat every 15 s); a long one keeps heartbeats out of the run")
    parser.add_argument("--commit-every", type=int, default=0,
                        help="the workers' [smtp] commit_every (0: the engine's default, 8 on PostgreSQL)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    for key in [k for k in os.environ if k.upper().startswith("NEWSLETTER_")]:
        del os.environ[key]  # the shell's overrides must not redirect the runs
    if args.sink == "smtp-sink":
        ensure_postfix_tools()
    results: dict[str, Any] = {"cores": os.cpu_count(), "sink": args.sink, "connections": CONNECTIONS}
    with tempfile.TemporaryDirectory(prefix="nl-bench-pg-") as tmp, sink(args.sink, Path(tmp)) as port:
        work = Path(tmp)
        people = work / "list.csv"
        write_list(people, args.subscribers)
        results["postgres"] = postgres_run(args.pg_url, port, people, args.subscribers, work, args.lease,
                                           args.commit_every)
        results["sqlite"] = sqlite_run(port, people, args.subscribers, work)
    results["ratio"] = round(results["postgres"]["rate"] / results["sqlite"]["rate"], 3)
    sizes = (args.claims_small, args.claims_large)
    results["claims"] = [claim_run(args.pg_url, due, args.claim_calls) for due in sizes]
    results["claim_ratio"] = round(results["claims"][1]["median_ms"] / results["claims"][0]["median_ms"], 3)
    results["targets"] = targets(results)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
