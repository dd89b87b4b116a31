"""A small issue (one paper for every area, so every subscriber gets one short message) and a list made in one
INSERT, for the tests that send from the console, the API and `newsletter pause/resume/cancel`."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from aiosmtpd.smtp import Envelope

from newsletter.clock import utcnow
from newsletter.lifecycle import RowState
from newsletter.store import tables as t

from .conftest import REPO
from .smtpd import ScriptedHandler

ISSUE = "2026-06-04"
SECRET = "console-test-secret-0123456789abcdef"


def issue_text(ready: bool = True, date: str = ISSUE, title: str = "A small week") -> str:
    start = (dt.date.fromisoformat(date) - dt.timedelta(days=6)).isoformat()
    return f"""\
title = "{title}"
date = {date}
week = {{ start = {start}, end = {date} }}
ready = {'true' if ready else 'false'}

[[papers]]
title = "One paper for every area"
authors = ["A. Author"]
arxiv = "2606.00001"
areas = ["LLM", "Vision", "RL", "Agents"]

[[papers.sections]]
heading = "Method"
body = "Short, so the test server is not the bottleneck."
"""


def issues_folder(tmp_path: Path, ready: bool = True) -> Path:
    folder = tmp_path / "issues"
    folder.mkdir(exist_ok=True)
    (folder / f"{ISSUE}.toml").write_text(issue_text(ready), encoding="utf-8")
    return folder


def config_text(issues: Path, db_url: str, smtp_port: int, extra: str = "") -> str:
    return f"""
[newsletter]
secret_key = "{SECRET}"
base_url = "http://localhost"
editor = "editor@example.org"
[paths]
issues = "{issues}"
templates = "{REPO / 'templates' / 'email'}"
[database]
url = "{db_url}"
[smtp]
port = {smtp_port}
connections = 1
timeout = 5
retry_seconds = 60
{extra}
"""


def add_subscribers(engine: sa.Engine, count: int, prefix: str = "r") -> list[str]:
    """``count`` active subscribers of every area, in one INSERT; their addresses."""
    now = utcnow()
    emails = [f"{prefix}{n:04d}@example.org" for n in range(count)]
    with engine.begin() as conn:
        conn.execute(t.subscribers.insert(), [
            {"email": e, "email_key": e, "name": f"Reader {n}", "areas": "", "status": "active", "source": "cli",
             "created_at": now, "updated_at": now, "confirmed_at": now} for n, e in enumerate(emails)])
    return emails


def counts(engine: sa.Engine) -> dict[str, int]:
    """The outbox's rows by state, over every issue."""
    o = t.outbox.c
    with engine.connect() as conn:
        return {s: n for s, n in conn.execute(sa.select(o.state, sa.func.count()).group_by(o.state))}


def sent(engine: sa.Engine) -> int:
    return counts(engine).get(RowState.SENT, 0)


class Slow(ScriptedHandler):
    """A relay that takes ``delay`` seconds a message and tells a waiting test once ``count`` messages arrived."""

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__(folder)
        self._arrived = threading.Condition(self._lock)

    def store(self, envelope: Envelope) -> None:
        super().store(envelope)
        with self._arrived:
            self._arrived.notify_all()

    def total(self) -> int:
        with self._lock:
            return sum(self.received.values())

    def wait_for(self, count: int, timeout: float = 30.0) -> int:
        """Block until at least ``count`` messages arrived (bounded); how many there are."""
        with self._arrived:
            self._arrived.wait_for(lambda: sum(self.received.values()) >= count, timeout)
            return sum(self.received.values())


def wait_until(check: Callable[[], bool], timeout: float = 30.0, what: str = "the condition") -> None:
    """Poll ``check`` (a database read: nothing to await there) until it holds, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
