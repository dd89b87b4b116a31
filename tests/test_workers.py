"""Many delivery workers on PostgreSQL: exactly-once under SIGKILL, and one hourly limit for them all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.cli import cli
from newsletter.config import load_config
from newsletter.store import tables as t

from .conftest import PG_URL, REPO
from .sendkit import issue_text
from .smtpd import ScriptedHandler

ISSUE = "2026-06-04"


class CountingHandler(ScriptedHandler):
    """Counts what each recipient got and keeps no message (20,000 of them would fill memory)."""

    def store(self, envelope) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            for rcpt in envelope.rcpt_tos:
                self.received[rcpt.casefold()] += 1


@pytest.fixture
def cluster(make_config, pg_url, tmp_path):
    """A config on a fresh PostgreSQL schema with a small issue, aimed at a counting SMTP server."""
    issues = tmp_path / "issues"
    issues.mkdir()
    (issues / f"{ISSUE}.toml").write_text(issue_text(), encoding="utf-8")
    handler = CountingHandler()
    from newsletter.mailsink import start

    controller = start(handler)

    def make(smtp_extra: str = "") -> Path:
        return make_config(f"""
            [newsletter]
            secret_key = "worker-test-secret-0123456789abcdef0123456789"
            [paths]
            issues = "{issues}"
            templates = "{REPO / 'templates' / 'email'}"
            [database]
            url = "{pg_url}"
            [smtp]
            port = {controller.port}
            connections = 2
            timeout = 10
            {smtp_extra}
            """)

    try:
        yield make, handler, pg_url
    finally:
        controller.stop()


def cli_ok(runner, config: Path, *args: str) -> str:
    result = runner.invoke(cli, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def enqueue(runner, config: Path, tmp_path: Path, count: int) -> None:
    people = tmp_path / "people.csv"
    people.write_text("email,name,areas\n" + "".join(f"w{i}@example.org,W {i},\n" for i in range(count)),
                      encoding="utf-8")
    cli_ok(runner, config, "init")
    cli_ok(runner, config, "subscribers", "import", str(people))
    assert f"{count} queued" in cli_ok(runner, config, "send", ISSUE, "--enqueue")


def workers(config: Path, n: int) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "NEWSLETTER_CONFIG": str(config)}
    return [subprocess.Popen([sys.executable, "-m", "newsletter", "worker", "--exit-when-idle"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(n)]


def wait_all(procs: list[subprocess.Popen[bytes]], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for proc in procs:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        assert proc.returncode in (0, -signal.SIGKILL), err


def outbox_states(url: str) -> dict[str, str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.outbox.c.email, t.outbox.c.state)).all()
    engine.dispose()
    return dict(rows)


def test_three_workers_one_killed_deliver_each_address_at_most_once(cluster, runner, tmp_path):
    """1,500 rows, 3 worker processes, one SIGKILLed mid-run: nobody gets two, only unknown rows miss out.

    The 20,000-row, 4-worker run of the same invariants is bench/workers.py. The server answers each
    message after 2 ms, so the kill after 300 arrivals lands while every worker still has rows to send.
    """
    make, handler, url = cluster
    handler.delay = 0.002
    config = make()
    enqueue(runner, config, tmp_path, 1_500)
    procs = workers(config, 3)
    deadline = time.monotonic() + 120
    while sum(handler.received.values()) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert procs[0].poll() is None, "the worker to kill had already stopped"
    os.kill(procs[0].pid, signal.SIGKILL)
    at_kill = sum(handler.received.values())
    wait_all(procs, 120)
    assert 300 <= at_kill < 1_500
    states = outbox_states(url)
    unknown = {email for email, state in states.items() if state == "unknown"}
    assert max(handler.received.values()) == 1  # counted by the server: none got two
    assert set(states) - set(handler.received) <= unknown  # only unknown rows may have missed out
    # at most commit_every (8 on PostgreSQL, its default) per connection of the killed worker
    assert len(unknown) <= 2 * load_config(config).smtp.commit_every
    report = json.loads(cli_ok(runner, config, "report", ISSUE, "--json"))
    sent = {email for email, state in states.items() if state == "sent"}
    assert sent <= set(handler.received)  # every row reported sent reached the server
    # what the server got is the sent rows plus those unknown rows whose transfer finished before the kill
    assert report["counts"]["sent"] == len(sent) == len(handler.received) - len(unknown & set(handler.received))
    assert report["counts"]["sent"] + report["counts"]["unknown"] == 1_500 and report["state"] == "sent"


def test_bench_workers_script_runs_and_every_invariant_passes(pg_url):
    """bench/workers.py on 300 rows and 2 workers (one killed) exits 0 and prints PASS for each invariant."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "workers.py"), "--rows", "300", "--workers", "2",
                           "--kill-after", "60", "--pg-url", PG_URL], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    for invariant in ("kill landed mid-run", "workers exited 0", "no address received twice",
                      "only unknown rows missed out", "unknown <= 16", "every sent row reached the server",
                      "report sent + unknown == rows, state sent"):
        assert any(line.startswith("PASS") and invariant in line for line in done.stdout.splitlines()), done.stdout
    assert "FAIL" not in done.stdout


def test_hourly_limit_holds_across_workers(cluster, runner, tmp_path):
    """Two workers with rate_per_hour = 30 send 30 messages between them and leave the rest queued."""
    make, handler, url = cluster
    config = make("rate_per_hour = 30")
    enqueue(runner, config, tmp_path, 50)
    wait_all(workers(config, 2), 120)
    states = outbox_states(url)
    assert sum(handler.received.values()) == 30 == sum(1 for s in states.values() if s == "sent")
    assert sum(1 for s in states.values() if s == "queued") == 20


def test_enqueue_sends_nothing_and_a_worker_finishes_the_issue(cluster, runner, tmp_path):
    """`send --enqueue` only writes the outbox; one `worker --exit-when-idle` delivers it and marks it sent."""
    make, handler, url = cluster
    config = make()
    enqueue(runner, config, tmp_path, 20)
    assert not handler.received and set(outbox_states(url).values()) == {"queued"}
    wait_all(workers(config, 1), 120)
    assert set(handler.received.values()) == {1} and len(handler.received) == 20
    report = json.loads(cli_ok(runner, config, "report", ISSUE, "--json"))
    assert report["state"] == "sent" and report["counts"]["sent"] == 20
