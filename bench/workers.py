"""Several `newsletter worker` processes on PostgreSQL, one SIGKILLed mid-run: throughput and at-most-once.

Measures the wall time and message rate of W worker processes draining one issue's outbox of N rows
into an in-process counting aiosmtpd server, while one worker is SIGKILLed after K messages have
arrived. Then checks what the test suite checks on a smaller run (tests/test_workers.py): no address
got two copies, only rows marked ``unknown`` may have missed out, at most one unknown row per SMTP
connection of the killed worker, and the report's sent + unknown covers every row with the issue sent.

    .venv/bin/python bench/workers.py                                      # 20,000 rows, 4 workers
    .venv/bin/python bench/workers.py --rows 300 --workers 2 --kill-after 60   # the suite's smoke run

Each run uses a fresh schema (nl_bench_<hex>), dropped at the end even on failure. Prints a table
with PASS/FAIL per invariant; exits 1 if any fails.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from aiosmtpd.smtp import Envelope

from newsletter.mailsink import EmlHandler, start
from newsletter.store import tables as t

REPO = Path(__file__).resolve().parent.parent
ISSUE = "2026-06-04"
CONNECTIONS = 2  # [smtp] connections per worker: the most rows a killed worker can leave mid-transfer ...
COMMIT_EVERY = 8  # ... times [smtp] commit_every, PostgreSQL's default (rows marked sending per commit)
SMALL_ISSUE = """\
title = "A small week"
date = 2026-06-04
week = { start = 2026-05-29, end = 2026-06-04 }
ready = true

[[papers]]
title = "One paper for every area"
authors = ["A. Author"]
arxiv = "2606.00001"
areas = ["LLM", "Vision", "RL", "Agents"]

[[papers.sections]]
heading = "Method"
body = "Short, so the test server is not the bottleneck."
"""


class CountingHandler(EmlHandler):
    """Counts what each recipient got and keeps no message (20,000 of them would fill memory)."""

    def store(self, envelope: Envelope) -> None:
        with self._lock:
            for rcpt in envelope.rcpt_tos:
                self.received[rcpt.casefold()] += 1

    def total(self) -> int:
        with self._lock:
            return sum(self.received.values())


@contextmanager
def fresh_schema(base_url: str) -> Iterator[str]:
    """A URL whose search_path is a new, empty schema; the schema is dropped afterwards."""
    admin = sa.create_engine(base_url)
    schema = f"nl_bench_{secrets.token_hex(4)}"
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{base_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def clean_env(config: Path) -> dict[str, str]:
    """The environment without the shell's NEWSLETTER_* overrides, pointing at this run's config."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NEWSLETTER_")}
    return {**env, "NEWSLETTER_CONFIG": str(config)}


def newsletter(config: Path, *args: str) -> str:
    """Run one CLI command as a subprocess; its stdout, or SystemExit with its output on failure."""
    done = subprocess.run([sys.executable, "-m", "newsletter", "--config", str(config), *args], check=False,
                          cwd=REPO, env=clean_env(config), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"newsletter {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


def run(args: argparse.Namespace, url: str, tmp: Path) -> list[tuple[str, bool]]:
    """Set up, deliver with one worker killed, and return the invariants as (name, held)."""
    (tmp / "issues").mkdir()
    (tmp / "issues" / f"{ISSUE}.toml").write_text(SMALL_ISSUE, encoding="utf-8")
    handler = CountingHandler()
    controller = start(handler)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        config = tmp / "config.toml"
        config.write_text(f"""\
[newsletter]
secret_key = "worker-bench-secret-0123456789abcdef0123456789"
[paths]
issues = "{tmp / 'issues'}"
templates = "{REPO / 'templates' / 'email'}"
[database]
url = "{url}"
[smtp]
port = {controller.port}
connections = {CONNECTIONS}
timeout = 10
""", encoding="utf-8")
        people = tmp / "people.csv"
        people.write_text("email,name,areas\n" + "".join(f"w{i}@example.org,W {i},\n" for i in range(args.rows)),
                          encoding="utf-8")
        newsletter(config, "init")
        newsletter(config, "subscribers", "import", str(people))
        if f"{args.rows} queued" not in newsletter(config, "send", ISSUE, "--enqueue"):
            raise SystemExit(f"send --enqueue did not queue {args.rows} rows")

        logs = [(tmp / f"worker{i}.err").open("wb") for i in range(args.workers)]
        started = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-m", "newsletter", "worker", "--exit-when-idle"], cwd=REPO,
                                  env=clean_env(config), stdout=subprocess.DEVNULL, stderr=log) for log in logs]
        deadline = started + 600
        while (handler.total() < args.kill_after and time.monotonic() < deadline
               and any(p.poll() is None for p in procs)):
            time.sleep(0.01)
        alive_at_kill = procs[0].poll() is None
        if alive_at_kill:
            os.kill(procs[0].pid, signal.SIGKILL)
        at_kill = handler.total()
        for proc in procs:
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        wall = time.monotonic() - started
        for log in logs:
            log.close()
        clean_exit = procs[0].returncode in (0, -signal.SIGKILL) and all(p.returncode == 0 for p in procs[1:])
        if not clean_exit:
            for i, proc in enumerate(procs):
                print(f"worker {i} exited {proc.returncode}:\n{(tmp / f'worker{i}.err').read_text()[-2000:]}",
                      file=sys.stderr)

        engine = sa.create_engine(url)
        with engine.connect() as conn:
            states = dict(conn.execute(sa.select(t.outbox.c.email, t.outbox.c.state)).all())
        engine.dispose()
        report = json.loads(newsletter(config, "report", ISSUE, "--json"))
    finally:
        for proc in procs:  # only if something above failed: no worker outlives the run
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        controller.stop()

    received = dict(handler.received)
    unknown = {email for email, state in states.items() if state == "unknown"}
    sent = {email for email, state in states.items() if state == "sent"}
    duplicates = sum(1 for n in received.values() if n > 1)
    messages = sum(received.values())
    counts = report["counts"]
    print(f"{'rows':<12}{args.rows:>12,}\n{'workers':<12}{args.workers:>12}\n{'wall s':<12}{wall:>12.2f}\n"
          f"{'messages/s':<12}{messages / wall:>12,.0f}\n{'killed at':<12}{at_kill:>12,}\n"
          f"{'unknown':<12}{len(unknown):>12}\n{'duplicates':<12}{duplicates:>12}")
    return [
        ("kill landed mid-run", alive_at_kill and args.kill_after <= at_kill < args.rows),
        ("workers exited 0 (the killed one by SIGKILL)", clean_exit),
        ("no address received twice", duplicates == 0),
        ("only unknown rows missed out", set(states) - set(received) <= unknown),
        (f"unknown <= {CONNECTIONS * COMMIT_EVERY} (connections x commit_every of the killed worker)",
         len(unknown) <= CONNECTIONS * COMMIT_EVERY),
        ("every sent row reached the server", sent <= set(received)
         and counts["sent"] == len(sent) == len(received) - len(unknown & set(received))),
        ("report sent + unknown == rows, state sent",
         counts["sent"] + counts["unknown"] == args.rows and report["state"] == "sent"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="subscribers, one outbox row each")
    parser.add_argument("--workers", type=int, default=4, help="`newsletter worker` processes")
    parser.add_argument("--kill-after", type=int, default=4_000, help="SIGKILL worker 0 once this many arrived")
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with fresh_schema(args.pg_url) as url, tempfile.TemporaryDirectory(prefix="nl_bench_") as tmp:
        invariants = run(args, url, Path(tmp))
    for name, held in invariants:
        print(f"{'PASS' if held else 'FAIL'}  {name}")
    return 0 if all(held for _, held in invariants) else 1


if __name__ == "__main__":
    sys.exit(main())
