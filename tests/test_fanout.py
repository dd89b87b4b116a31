"""One send over several processes (send/fanout.py): every row once, whichever process is killed or stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.config import Config
from newsletter.send import fanout
from newsletter.store import tables as t

from .conftest import invoke
from .smtpd import smtp_server

ISSUE = "2026-05-28"
SECRET = "test-secret-key-0123456789-abcdefghij"
PEOPLE = 400  # two helpers: at least fanout.ROWS_A_PROCESS rows each


@pytest.fixture
def relay(tmp_path):
    with smtp_server() as (handler, port):
        yield handler, port


@pytest.fixture
def listed(make_config, relay, runner, tmp_path, monkeypatch):
    """A config with 4 connections over 2 processes and ``PEOPLE`` subscribers; returns (config, handler)."""
    handler, port = relay
    monkeypatch.setenv("NEWSLETTER_SMTP__PROCESSES", "2")

    def make(commit_every: int = 1) -> Path:
        config = make_config(f"""
            [newsletter]
            secret_key = "{SECRET}"
            [smtp]
            port = {port}
            connections = 4
            timeout = 5
            retry_seconds = 0.05
            commit_every = {commit_every}
            pause_after_errors = 5
            """)
        people = tmp_path / "people.csv"
        people.write_text("email,name,areas\n" + "".join(f"p{i}@example.org,P {i},\n" for i in range(PEOPLE)),
                          encoding="utf-8")
        invoke(runner, config, "subscribers", "import", str(people))
        return config

    return make, handler


def rows(config: Path) -> list[sa.Row]:
    engine = sa.create_engine(f"sqlite:///{config.parent / 'newsletter.db'}")
    with engine.connect() as conn:
        found = conn.execute(sa.select(t.outbox.c.email, t.outbox.c.state)).all()
        state = conn.scalar(sa.select(t.issues.c.state))
    engine.dispose()
    return [*found, ("", state)]


def states(config: Path) -> tuple[dict[str, str], str]:
    *found, (_, issue_state) = rows(config)
    return {email: state for email, state in found}, issue_state


def children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc: no library needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def start_send(config: Path) -> subprocess.Popen[bytes]:
    """``newsletter send`` as its own process, the way a shell runs it: its helpers are forked."""
    env = {**os.environ, "NEWSLETTER_CONFIG": str(config)}
    return subprocess.Popen([sys.executable, "-m", "newsletter", "send", ISSUE], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def until(check, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def mid_send(proc: subprocess.Popen[bytes], handler, at_least: int = 60) -> list[int]:
    """Wait until the send has delivered ``at_least`` messages through its helpers; their pids."""
    until(lambda: sum(handler.received.values()) >= at_least or proc.poll() is not None)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    helpers = children(proc.pid)
    assert len(helpers) == 2, helpers
    return helpers


def test_a_send_over_two_spawned_processes_mails_everyone_once(listed, runner):
    """From a process with threads of its own (here the test's SMTP server) the helpers are spawned; all get one."""
    make, handler = listed
    config = make()
    result = invoke(runner, config, "send", ISSUE)
    assert "sent" in result.output
    found, issue_state = states(config)
    assert issue_state == "sent" and set(found.values()) == {"sent"} and len(found) == PEOPLE
    assert len(handler.received) == PEOPLE and max(handler.received.values()) == 1


@pytest.mark.parametrize("commit_every", [1, 8])
def test_a_helper_killed_mid_send_the_parent_finishes_and_no_one_gets_two(listed, commit_every):
    """SIGKILL one of two forked helpers: the send still ends sent; nobody gets two messages, and the only rows not
    delivered are that helper's in flight, marked unknown: at most commit_every x its 2 connections."""
    make, handler = listed
    config = make(commit_every)
    handler.delay = 0.01
    proc = start_send(config)
    victim = mid_send(proc, handler)[0]
    os.kill(victim, signal.SIGKILL)
    handler.delay = 0
    assert proc.wait(60) == 0, proc.stderr.read().decode() if proc.stderr else ""
    proc.stderr and proc.stderr.close()
    found, issue_state = states(config)
    unknown = {email for email, state in found.items() if state == "unknown"}
    assert issue_state == "sent" and max(handler.received.values()) == 1
    assert len(unknown) <= commit_every * 2
    assert set(found) - set(handler.received) <= unknown
    assert sum(1 for state in found.values() if state == "sent") + len(unknown) == PEOPLE


def test_the_parent_killed_its_helpers_stop_and_a_resume_mails_no_one_twice(listed, runner):
    """SIGKILL the parent: its helpers see it gone and stop after the message in flight (nothing left unknown);
    `send` again delivers the rest, and nobody has two."""
    make, handler = listed
    config = make()
    handler.delay = 0.01
    proc = start_send(config)
    helpers = mid_send(proc, handler)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr and proc.stderr.close()
    until(lambda: not any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in helpers), 10)
    found, issue_state = states(config)
    assert issue_state == "sending" and "unknown" not in found.values()
    before = sum(handler.received.values())
    assert 60 <= before < PEOPLE
    handler.delay = 0
    invoke(runner, config, "send", ISSUE)
    found, issue_state = states(config)
    assert issue_state == "sent" and set(found.values()) == {"sent"}
    assert len(handler.received) == PEOPLE and max(handler.received.values()) == 1


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_sigterm_stops_parent_and_helpers_cleanly(listed, runner):
    """SIGTERM the parent: it and its helpers stop between messages, nothing unknown, every row queued or sent."""
    make, handler = listed
    config = make()
    handler.delay = 0.01
    proc = start_send(config)
    helpers = mid_send(proc, handler)
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    proc.stderr and proc.stderr.close()
    until(lambda: all(_state(pid) == "Z" for pid in helpers), 10)
    found, issue_state = states(config)
    assert set(found.values()) <= {"sent", "queued"} and "queued" in found.values()
    assert sum(1 for state in found.values() if state == "sent") == sum(handler.received.values())


def test_a_fault_in_the_helpers_pauses_the_issue_with_its_reason(listed, runner):
    """A relay refusing every recipient: each process counts the refusals and pauses the send; `send` exits 1."""
    make, handler = listed
    config = make()
    for i in range(PEOPLE):
        handler.rcpt[f"p{i}@example.org"] = deque(["450 4.2.1 try later"] * 5)
    result = invoke(runner, config, "send", ISSUE, code=1)
    assert "paused" in result.output
    _, issue_state = states(config)
    assert issue_state == "paused" and not handler.received


def test_processes_come_from_the_cores_unless_set_or_rate_limited(tmp_path, monkeypatch):
    """processes_for: one a core, never more than the connections; one for a rate-limited send or :memory:."""
    monkeypatch.delenv("NEWSLETTER_SMTP__PROCESSES")

    def config(**smtp: object) -> Config:
        return Config(smtp=smtp, root=tmp_path)

    url, due = f"sqlite:///{tmp_path / 'x.db'}", 10_000
    assert fanout.processes_for(config(connections=64), url, due) == fanout.cores()
    assert fanout.processes_for(config(processes=3, connections=2), url, due) == 2
    assert fanout.processes_for(config(processes=3, connections=8), url, due) == 3
    assert fanout.processes_for(config(processes=3, connections=8), url, 450) == 2
    assert fanout.processes_for(config(processes=3, connections=8), url, 1) == 1
    assert fanout.processes_for(config(rate_per_second=10, connections=8), url, due) == 1
    assert fanout.processes_for(config(processes=2, rate_per_hour=100, connections=8), url, due) == 2
    assert fanout.processes_for(config(processes=2), "sqlite:///:memory:", due) == 1
    split = fanout.shares(config(connections=5, rate_per_second=9.0), 2)
    assert [c.smtp.connections for c in split] == [3, 2] and {c.smtp.rate_per_second for c in split} == {4.5}
    assert {c.smtp.processes for c in split} == {1}
