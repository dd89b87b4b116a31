"""Attacks from the relay's side of the line (#21): after the final dot of DATA the relay may have the message,
so a relay that hangs, drops the line, answers late or answers garbage there must never get it twice."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter import audience, store
from newsletter.config import load_config
from newsletter.content import find_issue, load_issue
from newsletter.send import Campaign, Mode, Run

from ..conftest import ManualClock, invoke
from ..smtpd import ScriptedHandler, smtp_server

ISSUE = "2026-05-28"
SECRET = "relay-attack-secret-key-0123456789abcdef"
PEOPLE = [f"p{n:02d}@example.org" for n in range(12)]
TIMEOUT = 1.0  # [smtp] timeout: a hang or a late answer costs this much per message scripted so


Relay = tuple[ScriptedHandler, int]
MakeConfig = Callable[..., Path]


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    with smtp_server(tmp_path / "mail") as server:
        yield server


def send(make_config: MakeConfig, relay: Relay, script: list[str], commit_every: int = 1) -> tuple[Run, Path]:
    """Send the issue to ``PEOPLE`` over two connections, the relay answering the first final dots as ``script``
    says; retries back off on a manual clock (no wall time), so a resent message would arrive at once."""
    path = make_config(f"""
        [newsletter]
        secret_key = "{SECRET}"
        base_url = "https://news.example.org"
        [smtp]
        port = {relay[1]}
        connections = 2
        timeout = {TIMEOUT}
        retry_seconds = 60
        max_attempts = 3
        commit_every = {commit_every}
        """)
    config = load_config(path)
    engine = store.connect(store.engine_for(config.database_url))
    with engine.begin() as conn:
        for address in PEOPLE:
            audience.add(conn, address, "", "", config.newsletter.areas)
    relay[0].data = deque(script)
    issue = load_issue(find_issue(config.path("issues"), ISSUE), config.newsletter.areas)
    try:
        return Campaign(config, engine, issue, clock=ManualClock()).run(Mode.SEND), path
    finally:
        engine.dispose()


def held(run: Run, handler: ScriptedHandler, unknown: int) -> list[str]:
    """The send finished, every address got exactly one copy, ``unknown`` rows are unknown with a reason and
    the rest sent; the reasons of the unknown rows."""
    assert run.report is not None and run.report.state == "sent" and run.fault is None
    twice = sorted(address for address, n in handler.received.items() if n > 1)
    assert not twice, f"sent twice to {twice}"
    assert sorted(handler.received) == PEOPLE
    assert run.report.counts["unknown"] == len(run.report.unknown) == unknown
    assert run.report.counts["sent"] == len(PEOPLE) - unknown
    assert all(row.answer and row.message_id for row in run.report.unknown)
    return [row.answer for row in run.report.unknown]


@pytest.mark.attack(edge="relay", attack="hang after the final dot", held="row unknown, never resent")
def test_a_relay_that_hangs_after_the_dot_gets_no_second_copy(make_config: MakeConfig, relay: Relay) -> None:
    """A relay that keeps the message and then says nothing leaves the row unknown: no copy is sent twice."""
    run, _ = send(make_config, relay, ["keep hang"] * 3)
    reasons = held(run, relay[0], unknown=3)
    assert all("after the final dot" in r and "timed out" in r for r in reasons)


@pytest.mark.parametrize("commit_every", [1, 8])
@pytest.mark.attack(edge="relay", attack="drop the line after the final dot", held="row unknown, never resent")
def test_a_relay_that_drops_the_line_after_the_dot_gets_no_second_copy(make_config: MakeConfig, relay: Relay,
                                                                       commit_every: int) -> None:
    """A relay that keeps the message and closes the line unanswered leaves the row unknown; the next message
    goes over a fresh line."""
    run, _ = send(make_config, relay, ["keep drop"] * 4, commit_every)
    reasons = held(run, relay[0], unknown=4)
    assert all("after the final dot" in r and "closed" in r for r in reasons)


@pytest.mark.attack(edge="relay", attack="250 after the client timed out", held="row unknown, never resent")
def test_a_relay_that_answers_250_too_late_gets_no_second_copy(make_config: MakeConfig, relay: Relay) -> None:
    """A 250 that comes after the timeout is never heard: the row is unknown, not retried into a duplicate."""
    relay[0].stall_seconds = TIMEOUT + 1
    run, _ = send(make_config, relay, ["keep late"] * 3)
    reasons = held(run, relay[0], unknown=3)
    assert all("after the final dot" in r and "timed out" in r for r in reasons)


@pytest.mark.attack(edge="relay", attack="garbage answer after the final dot", held="unknown, whole answer kept")
def test_garbage_after_the_dot_is_unknown_with_the_whole_answer(make_config: MakeConfig, relay: Relay,
                                                                runner: CliRunner) -> None:
    """An answer that is not SMTP leaves the row unknown with all of its text as the reason, also in `report`."""
    garbage = "OK!! queued as 7F3A2B <ok>"
    run, path = send(make_config, relay, [f"keep {garbage}"])
    (reason,) = held(run, relay[0], unknown=1)
    assert reason.endswith(f": {garbage}")
    listed = json.loads(invoke(runner, path, "report", ISSUE, "--json").output)["unknown"]
    assert [u["reason"] for u in listed] == [reason] and listed[0]["email"] in PEOPLE
    assert "Unknown: the relay may have them" in invoke(runner, path, "report", ISSUE).output
