"""One scheduler at a time on a shared database: the leader fires, a standby waits and takes over (#16)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from newsletter import store
from newsletter.store.leader import Leadership

from .conftest import REPO, invoke
from .smtpd import smtp_server

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def test_one_leader_among_two_and_the_standby_takes_over_when_it_goes(db_url):
    """The first to ask leads, the second stands by; when the leader lets go (its connection, or on SQLite its
    lock file), the standby leads within a poll."""
    engine = store.engine_for(db_url)
    first, second = Leadership(engine), Leadership(engine)
    stop = threading.Event()
    try:
        assert first.acquire(stop) and not second.try_acquire()
        took = threading.Thread(target=second.acquire, args=(stop, 0.1))
        took.start()
        time.sleep(0.3)
        assert took.is_alive() and first.held()  # still standing by
        first.release()
        took.join(5)
        assert not took.is_alive() and second.held()
    finally:
        stop.set()
        first.release()
        second.release()
        engine.dispose()


def wait_for(path: Path, text: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = path.read_text(errors="replace")
        if text in found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in {path.name} after {seconds} s:\n{path.read_text(errors='replace')}")


def test_two_schedulers_send_an_interrupted_week_once_and_the_standby_takes_over(pg_url, make_config, runner,
                                                                                  tmp_path):
    """Two `newsletter schedule` processes on one PostgreSQL database: only the leader resumes this week's send
    (each address gets one message); after the leader is killed (-9) the standby leads, and sends nothing again."""
    now = datetime.now(UTC) - timedelta(minutes=2)
    today = datetime.now(UTC).date().isoformat()
    issues = tmp_path / "issues"
    issues.mkdir()
    source = (REPO / "issues" / "2026-05-28.toml").read_text()
    (issues / f"{today}.toml").write_text(source.replace("date = 2026-05-28", f"date = {today}"))
    with smtp_server() as (handler, port):
        config = make_config(f"""
            [paths]
            issues = "{issues}"
            templates = "{REPO / 'templates' / 'email'}"
            [database]
            url = "{pg_url}"
            [schedule]
            day = "{DAYS[now.weekday()]}"
            time = "{now:%H:%M}"
            timezone = "UTC"
            [smtp]
            port = {port}
            """)
        invoke(runner, config, "init")
        for n in range(3):
            invoke(runner, config, "subscribers", "add", f"s{n}@example.org")
        invoke(runner, config, "send", today, "--enqueue")  # as a scheduler killed mid-send leaves it
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        procs = []
        try:
            for log in logs:
                with log.open("wb") as out:
                    procs.append(subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config),
                                                   "schedule"], stdout=out, stderr=subprocess.STDOUT, env=env))
                wait_for(log, "this scheduler leads" if log is logs[0] else "standing by", 30)
            wait_for(logs[0], "issue " + today, 30)  # the leader's resumed send finished
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)
            wait_for(logs[1], "takes over", 30)
            standby = wait_for(logs[1], "next weekly send", 30)
            assert standby.index("standing by") < standby.index("takes over") < standby.index("next weekly send")
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    assert handler.received == {f"s{n}@example.org": 1 for n in range(3)}
    assert "resuming it now" not in logs[1].read_text()
