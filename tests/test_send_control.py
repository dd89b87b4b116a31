"""`newsletter pause`, `resume` and `cancel` (send/control.py) against a real aiosmtpd relay, on SQLite and on
PostgreSQL: a send in another thread of control notices the pause at its next claim, a resume finishes it with no
address mailed twice, a cancel skips what is still to deliver and touches nothing sent."""

from __future__ import annotations

import threading
from collections import deque
from datetime import timedelta

import pytest
import sqlalchemy as sa

from newsletter import audit, lifecycle, schedule, store
from newsletter.config import load_config
from newsletter.content import load_issue
from newsletter.lifecycle import IssueState
from newsletter.mailsink import start
from newsletter.send import Campaign, Mode, Options, Run, control, pool, report
from newsletter.store import tables as t

from .conftest import ManualClock, invoke
from .sendkit import ISSUE, Slow, add_subscribers, config_text, counts, issues_folder, sent


@pytest.fixture
def relay(tmp_path):
    handler = Slow()
    controller = start(handler)
    try:
        yield handler, controller.port
    finally:
        controller.stop()


@pytest.fixture
def setup(tmp_path, relay, db_url):
    """(config path, config, engine, relay handler) on ``db_url``, with the small issue ready."""
    handler, port = relay
    path = tmp_path / "config.toml"
    path.write_text(config_text(issues_folder(tmp_path), db_url, port), encoding="utf-8")
    config = load_config(path)
    engine = store.engine_for(config.database_url)
    store.migrate(engine)
    try:
        yield path, config, engine, handler
    finally:
        engine.dispose()


def campaign(config, engine, clock=None) -> Campaign:
    issue = load_issue(config.path("issues") / f"{ISSUE}.toml", config.newsletter.areas)
    return Campaign(config, engine, issue, clock=clock) if clock else Campaign(config, engine, issue)


def issue_row(engine) -> sa.Row:
    with engine.connect() as conn:
        return conn.execute(sa.select(t.issues).where(t.issues.c.slug == ISSUE)).one()


def test_a_pause_stops_a_send_at_its_next_claim_and_resume_finishes_it_once(setup, runner, monkeypatch):
    """A send running elsewhere sees `newsletter pause` at its next claim and stops paused "by cli" (rows not sent
    stay queued, none is left mid-transfer); `newsletter resume` delivers the rest; every address got one copy."""
    path, config, engine, handler = setup
    monkeypatch.setattr(pool, "CLAIM_BATCH", 5)
    handler.delay = 0.02
    people = add_subscribers(engine, 40)
    done: list[Run] = []
    sender = threading.Thread(target=lambda: done.append(campaign(config, engine).run(Mode.SEND)))
    sender.start()
    handler.wait_for(8)
    at_pause = handler.total()
    assert "paused" in invoke(runner, path, "pause", ISSUE).output
    sender.join(30)
    assert not sender.is_alive() and done[0].state is IssueState.PAUSED and done[0].fault is None
    row = issue_row(engine)
    assert (row.state, row.pause_reason) == ("paused", "paused by cli")
    stopped = counts(engine)
    assert stopped.get("sending", 0) == 0 and stopped.get("unknown", 0) == 0
    assert handler.total() == stopped["sent"] < 40
    assert stopped["sent"] - at_pause <= max(pool.CLAIM_BATCH, config.smtp.commit_every) + 1
    resumed = invoke(runner, path, "resume", ISSUE).output
    assert f"{ISSUE}: sent" in resumed
    assert sorted(handler.received) == people and set(handler.received.values()) == {1}
    assert issue_row(engine).pause_reason is None
    with engine.connect() as conn:
        lines = [(e.actor, e.action, e.target) for e in audit.recent(conn)]
    assert ("cli", "issue.resume", ISSUE) in lines and ("cli", "issue.pause", ISSUE) in lines


def test_cancel_skips_deferred_rows_and_touches_nothing_sent(setup, runner):
    """Deferred rows (451, retry in 60 s on a clock the test moves) become skipped "cancelled by cli"; the rows sent
    keep their state and time; the issue is sent, and sending it again mails no one."""
    path, config, engine, handler = setup
    add_subscribers(engine, 10)
    handler.data = deque(["451 4.3.0 try later"] * 3)
    clock = ManualClock()
    first = campaign(config, engine, clock).run(Mode.SEND, Options(wait=False))
    assert first.state is IssueState.SENDING and counts(engine) == {"sent": 7, "deferred": 3}
    with engine.connect() as conn:
        sent_at = conn.execute(sa.select(t.outbox.c.id, t.outbox.c.sent_at).where(t.outbox.c.state == "sent")).all()
    assert "3 row(s) skipped" in invoke(runner, path, "cancel", ISSUE, "--yes").output
    assert counts(engine) == {"sent": 7, "skipped": 3}
    with engine.connect() as conn:
        reasons = set(conn.scalars(sa.select(t.outbox.c.reason).where(t.outbox.c.state == "skipped")))
        assert conn.execute(sa.select(t.outbox.c.id, t.outbox.c.sent_at)
                            .where(t.outbox.c.state == "sent")).all() == sent_at
    assert reasons == {"cancelled by cli"} and issue_row(engine).state == "sent"
    clock.at += timedelta(hours=1)
    again = campaign(config, engine, clock).run(Mode.SEND)
    assert again.delivered == 0 and handler.total() == 7 and again.state is IssueState.SENT


def test_the_end_of_a_send_never_overwrites_an_operators_pause_or_cancel(setup):
    """A send that ends with a fault after an operator's pause leaves "paused by user:ada"; rows a send gave back to
    the queue after a cancel are skipped by its finish like the others."""
    _, config, engine, _ = setup
    add_subscribers(engine, 4)
    made = campaign(config, engine)
    started = made.run(Mode.ENQUEUE).started
    assert started is not None
    now = ManualClock().now()
    with engine.begin() as conn:
        control.pause(conn, ISSUE, "user:ada", now)
    assert made.finish(started.iid, "5 messages in a row were not accepted") is IssueState.PAUSED
    assert issue_row(engine).pause_reason == "paused by user:ada"
    with engine.begin() as conn:
        assert control.cancel(conn, ISSUE, "user:ada", now) == 4
        conn.execute(t.outbox.update().where(t.outbox.c.id == sa.select(sa.func.min(t.outbox.c.id))
                                             .scalar_subquery()).values(state="queued"))  # a late requeue
    assert made.finish(started.iid, None) is IssueState.SENT
    assert counts(engine) == {"skipped": 4} and issue_row(engine).pause_reason == "cancelled by user:ada"


def test_each_command_refuses_what_the_state_does_not_allow(setup, runner):
    """Pause before a send, resume of a send that is not paused, cancel of a sent issue: one line each, exit 1,
    nothing changed; cancel from a script without --yes is refused (exit 2)."""
    path, config, engine, handler = setup
    add_subscribers(engine, 3)
    assert "has not been sent" in invoke(runner, path, "pause", ISSUE, code=1).output
    campaign(config, engine).run(Mode.ENQUEUE)
    assert "only a paused send can be resumed" in invoke(runner, path, "resume", ISSUE, code=1).output
    assert "pass --yes" in invoke(runner, path, "cancel", ISSUE, code=2).output
    invoke(runner, path, "pause", ISSUE)
    assert "only a send in progress can be paused" in invoke(runner, path, "pause", ISSUE, code=1).output
    invoke(runner, path, "cancel", ISSUE, "--yes")
    assert "sent already" in invoke(runner, path, "cancel", ISSUE, "--yes", code=1).output
    assert handler.total() == 0 and counts(engine) == {"skipped": 3}


def test_the_weekly_job_leaves_a_send_an_operator_paused(setup):
    """At the slot, this week's issue paused by an operator stays paused (a fault's pause would be resumed)."""
    _, config, engine, handler = setup
    add_subscribers(engine, 3)
    campaign(config, engine).run(Mode.ENQUEUE)
    slot = schedule.last_slot(config.schedule, ManualClock().now() + timedelta(days=7))
    with engine.begin() as conn:
        control.pause(conn, ISSUE, "token:ci", slot)
    assert schedule.run_weekly(config, engine, slot + timedelta(minutes=1)) == "paused"
    with engine.begin() as conn:
        lifecycle.set_issue_state(conn, issue_row(engine).id, IssueState.PAUSED, slot, "relay down")
    assert schedule.run_weekly(config, engine, slot + timedelta(minutes=2)) == "sent"
    assert handler.total() == 3 and sent(engine) == 3
    with engine.connect() as conn:
        found = report(conn, ISSUE)
    assert found is not None and found.state == "sent" and found.pause_reason is None
