"""The weekly send: triggers across DST, the job store across restarts, the grace rule, readiness."""

from __future__ import annotations

import logging
import pickle
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.schedulers.background import BackgroundScheduler

from newsletter import lifecycle, schedule, store
from newsletter.cli import cli
from newsletter.config import load_config
from newsletter.content import load_issue
from newsletter.store import tables as t

from .conftest import AREAS, REPO
from .smtpd import smtp_server

BERLIN = ZoneInfo("Europe/Berlin")
SLOT = datetime(2026, 5, 28, 9, 0, tzinfo=BERLIN)  # a Thursday, the date of issues/2026-05-28.toml


@pytest.fixture
def weekly(make_config, tmp_path):
    """A config with its own issues folder (a copy of 2026-05-28), SQLite file and a real SMTP server."""
    issues = tmp_path / "issues"
    issues.mkdir()
    shutil.copy(REPO / "issues" / "2026-05-28.toml", issues)
    with smtp_server() as (handler, port):
        path = make_config(f"""
            [paths]
            issues = "{issues}"
            templates = "{REPO / 'templates' / 'email'}"
            [schedule]
            day = "thu"
            time = "09:00"
            timezone = "Europe/Berlin"
            grace_hours = 6
            [smtp]
            port = {port}
            """)
        config = load_config(path)
        engine = store.connect(store.engine_for(config.database_url))
        with engine.begin() as conn:
            for n in range(3):
                conn.execute(t.subscribers.insert().values(
                    email=f"s{n}@example.org", email_key=f"s{n}@example.org", name="", areas="", status="active",
                    source="cli", created_at=SLOT, updated_at=SLOT))
        yield config, engine, handler, issues, path
        engine.dispose()


def test_next_runs_keep_local_time_across_both_dst_changes(repo_config):
    """Thursday 09:00 Berlin stays 09:00 local when the offset changes in March and October."""
    cfg = repo_config.schedule.model_copy(update={"day": "thu", "time": "09:00", "timezone": "Europe/Berlin"})
    spring = schedule.next_runs(cfg, datetime(2026, 3, 24, 12, tzinfo=UTC), 2)
    autumn = schedule.next_runs(cfg, datetime(2026, 10, 20, 12, tzinfo=UTC), 2)
    utc = [r.astimezone(UTC).hour for r in spring + autumn]
    assert [r.date().isoformat() for r in spring + autumn] == ["2026-03-26", "2026-04-02", "2026-10-22", "2026-10-29"]
    assert all(r.hour == 9 and r.minute == 0 for r in spring + autumn)
    assert utc == [8, 7, 7, 8]  # CET, CEST, CEST, CET


def test_restart_keeps_the_job_and_its_missed_slot(weekly):
    """The job survives a restart in the database, and a restart does not move a pending run past its slot."""
    config, engine, _, _, path = weekly
    first = BackgroundScheduler(jobstores={"default": schedule.job_store(engine)}, timezone=BERLIN)
    first.start(paused=True)
    schedule.install_job(first, config, path)
    stored = first.get_job(schedule.JOB_ID).next_run_time
    first.shutdown()
    missed = stored - timedelta(days=7)  # as if the machine went down before a slot and is back after it
    with engine.begin() as conn:  # the stored job is a pickled state plus an indexed run time: move both
        job_id, blob = conn.execute(sa.text(f"SELECT id, job_state FROM {schedule.JOB_TABLE}")).one()
        state = pickle.loads(blob)
        state["next_run_time"] = missed
        conn.execute(sa.text(f"UPDATE {schedule.JOB_TABLE} SET job_state = :s, next_run_time = :t WHERE id = :i"),
                     {"s": pickle.dumps(state), "t": missed.timestamp(), "i": job_id})
    second = BackgroundScheduler(jobstores={"default": schedule.job_store(engine)}, timezone=BERLIN)
    second.start(paused=True)
    schedule.install_job(second, config, path)
    job = second.get_job(schedule.JOB_ID)
    assert job is not None and job.func_ref == "newsletter.schedule:weekly_job"
    assert job.next_run_time == missed  # kept, so the catch-up within the grace still happens
    second.remove_job(schedule.JOB_ID)  # shutdown would otherwise try to run the overdue job once
    second.shutdown()


def test_within_grace_sends_to_the_server_past_grace_sends_nothing(weekly, caplog):
    """Five hours late the issue still goes out to a real SMTP server; seven hours late nothing does, loudly."""
    config, engine, handler, _, _ = weekly
    caplog.set_level(logging.INFO, "newsletter.schedule")
    assert schedule.run_weekly(config, engine, SLOT + timedelta(hours=7)) == "missed"
    assert not handler.messages and any(r.levelno == logging.ERROR and "MISSED" in r.message for r in caplog.records)
    assert schedule.run_weekly(config, engine, SLOT + timedelta(hours=5)) == "sent"
    assert sorted(handler.received) == ["s0@example.org", "s1@example.org", "s2@example.org"]


def test_an_issue_already_sent_is_not_sent_again(weekly):
    """A second run in the same week finds the issue sent and delivers nothing more."""
    config, engine, handler, _, _ = weekly
    assert schedule.run_weekly(config, engine, SLOT) == "sent"
    assert schedule.run_weekly(config, engine, SLOT + timedelta(minutes=30)) == "already-sent"
    assert set(handler.received.values()) == {1}


def test_no_ready_issue_sends_nothing_and_never_an_older_one(weekly, runner, caplog):
    """A draft this week sends nothing (an older ready issue is not resent); `issue approve` makes it go."""
    config, engine, handler, issues, path = weekly
    draft = (issues / "2026-05-28.toml").read_text(encoding="utf-8").replace("ready = true", "ready = false")
    (issues / "2026-05-28.toml").write_text(draft, encoding="utf-8")
    shutil.copy(REPO / "issues" / "2026-05-17.toml", issues)  # ready, but of an earlier week
    caplog.set_level(logging.INFO, "newsletter.schedule")
    assert schedule.run_weekly(config, engine, SLOT) == "not-ready" and not handler.messages
    assert "not ready" in caplog.text
    later = SLOT + timedelta(days=7)
    assert schedule.run_weekly(config, engine, later) == "no-issue" and not handler.messages
    approved = runner.invoke(cli, ["--config", str(path), "issue", "approve", "2026-05-28"])
    assert approved.exit_code == 0, approved.output
    assert schedule.run_weekly(config, engine, SLOT + timedelta(hours=1)) == "sent"
    assert len(handler.messages) == 3 and all("Top-conf" in m.decode() for _, m in handler.messages)


def test_scheduler_logs_a_run_missed_past_grace(weekly, caplog):
    """APScheduler itself, finding the stored run older than the grace period, skips it with an ERROR line."""
    config, engine, handler, _, path = weekly
    caplog.set_level(logging.INFO)
    scheduler = BackgroundScheduler(jobstores={"default": schedule.job_store(engine)}, timezone=BERLIN)
    schedule.watch_misses(scheduler)
    scheduler.start(paused=True)
    schedule.install_job(scheduler, config, path)
    scheduler.modify_job(schedule.JOB_ID, next_run_time=datetime.now(UTC) - timedelta(hours=7))
    scheduler.resume()
    deadline = time.monotonic() + 10
    while "MISSED" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    scheduler.shutdown()
    assert "MISSED the weekly send scheduled for" in caplog.text and not handler.messages


def test_schedule_show_prints_next_runs_in_the_zone(weekly, runner):
    """`schedule --show` prints three Thursday 09:00 runs in the configured zone."""
    *_, path = weekly
    result = runner.invoke(cli, ["--config", str(path), "schedule", "--show"])
    assert result.exit_code == 0, result.output
    runs = [line for line in result.output.splitlines() if line.startswith("  Thu ")]
    assert len(runs) == 3 and all(" 09:00 " in line and ("CET" in line or "CEST" in line) for line in runs)


def test_unknown_time_zone_is_a_one_line_config_error(make_config, runner):
    """A misspelt [schedule] timezone is named in one line."""
    path = make_config('[schedule]\ntimezone = "Europe/Berln"\n')
    result = runner.invoke(cli, ["--config", str(path), "schedule", "--show"])
    assert result.exit_code == 1 and "schedule.timezone" in result.output and "Europe/Berln" in result.output


def test_a_send_stopped_mid_way_resumes_on_restart_within_grace(weekly):
    """SIGTERM leaves the outbox `sending`; a restart within the grace resumes it, each address once."""
    config, engine, handler, _, _ = weekly
    schedule._stop.set()  # what SIGTERM does: the send stops before its next message
    try:
        assert schedule.run_weekly(config, engine, SLOT) == "sending" and not handler.messages
    finally:
        schedule._stop.clear()
    assert schedule.interrupted(config, engine, SLOT + timedelta(hours=5))
    assert not schedule.interrupted(config, engine, SLOT + timedelta(hours=7))
    assert schedule.run_weekly(config, engine, SLOT + timedelta(hours=5)) == "sent"
    assert handler.received == {f"s{n}@example.org": 1 for n in range(3)}
    assert not schedule.interrupted(config, engine, SLOT + timedelta(hours=5))


def test_approvals_have_their_own_table_and_old_meta_approvals_move_there(tmp_path):
    """Migration 0002 moves the old `approved:<slug>` meta rows into `approvals`; such an approval holds no content
    hash (0006), so it must be given again; approving the same bytes twice keeps the first time."""
    engine = store.engine_for(f"sqlite:///{tmp_path / 'old.db'}")
    with engine.begin() as conn:
        cfg = store._alembic()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(t.meta.insert().values(key="approved:2026-05-28", value="2026-05-25T10:00:00+00:00"))
    store.migrate(engine)
    draft = load_issue(REPO / "issues" / "2026-05-28.toml", AREAS).model_copy(update={"ready": False})
    with engine.begin() as conn:
        assert lifecycle.approved_hashes(conn) == {"2026-05-28": None}
        assert lifecycle.issue_readiness(conn, draft) is lifecycle.Readiness.CHANGED
        assert store.meta_get(conn, "approved:2026-05-28") is None
        lifecycle.approve(conn, draft, datetime(2026, 5, 27, tzinfo=UTC))
        lifecycle.approve(conn, draft, datetime(2026, 5, 27, 12, tzinfo=UTC))
        when = conn.scalar(sa.select(t.approvals.c.approved_at))
        assert lifecycle.is_approved(conn, draft)
    assert when.replace(tzinfo=UTC) == datetime(2026, 5, 27, tzinfo=UTC)  # the first approval of these bytes
    engine.dispose()


def test_the_job_store_table_is_not_schema_drift(weekly):
    """APScheduler's own table sits in the project's database without showing up as drift against tables.py."""
    config, engine, _, _, path = weekly
    scheduler = BackgroundScheduler(jobstores={"default": schedule.job_store(engine)}, timezone=BERLIN)
    scheduler.start(paused=True)
    schedule.install_job(scheduler, config, path)
    scheduler.shutdown()
    with engine.connect() as conn:
        assert schedule.JOB_TABLE in sa.inspect(conn).get_table_names()
        assert compare_metadata(MigrationContext.configure(conn, opts={"include_name": t.ours}), t.metadata) == []
    assert store.migrate(engine) == (store.head_revision(), store.head_revision())


def test_the_stored_job_itself_delivers_through_the_scheduler(weekly, make_config):
    """The job as stored (by its textual reference, with the config path) runs and delivers to the real server."""
    config, engine, handler, issues, _ = weekly
    today = datetime.now(BERLIN).date()
    text = (issues / "2026-05-28.toml").read_text(encoding="utf-8")
    text = text.replace("date = 2026-05-28", f"date = {today}").replace("end = 2026-05-28", f"end = {today}")
    text = text.replace("start = 2026-05-22", f"start = {today - timedelta(days=6)}")
    (issues / "2026-05-28.toml").unlink()
    (issues / f"{today}.toml").write_text(text, encoding="utf-8")
    live = make_config(f"""
        [paths]
        issues = "{issues}"
        templates = "{REPO / 'templates' / 'email'}"
        [schedule]
        day = "{today.strftime('%a').lower()}"
        time = "00:00"
        timezone = "Europe/Berlin"
        grace_hours = 48
        [smtp]
        port = {config.smtp.port}
        """, name="live.toml")
    done = threading.Event()
    scheduler = BackgroundScheduler(jobstores={"default": schedule.job_store(engine)}, timezone=BERLIN)
    scheduler.add_listener(lambda event: done.set(), EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start(paused=True)
    schedule.install_job(scheduler, load_config(live), live)
    assert scheduler.get_job(schedule.JOB_ID).func_ref == "newsletter.schedule:weekly_job"
    scheduler.modify_job(schedule.JOB_ID, next_run_time=datetime.now(UTC) - timedelta(minutes=1))
    scheduler.resume()
    assert done.wait(20)
    scheduler.shutdown()
    assert handler.received == {f"s{n}@example.org": 1 for n in range(3)}


def test_with_deliver_workers_the_job_only_enqueues_and_a_worker_delivers(weekly, runner):
    """[schedule] deliver = "workers": the weekly job makes the outbox and sends nothing; `worker` delivers it."""
    config, engine, handler, _, path = weekly
    workers = config.model_copy(update={"schedule": config.schedule.model_copy(update={"deliver": "workers"})})
    assert schedule.run_weekly(workers, engine, SLOT) == "enqueued" and not handler.messages
    result = runner.invoke(cli, ["--config", str(path), "worker", "--exit-when-idle"])
    assert result.exit_code == 0, result.output
    assert handler.received == {f"s{n}@example.org": 1 for n in range(3)}


def test_approving_after_the_slot_sends_within_grace_and_says_how_to_send_it_after(weekly):
    """Approved before its week's slot: the slot will send it. After the slot but past the grace: nothing is sent,
    and the line says how to send it by hand. After the slot within the grace: it is sent at once."""
    config, engine, handler, issues, _ = weekly
    draft = issues / "2026-05-28.toml"
    draft.write_text(draft.read_text().replace("ready = true", "ready = false"))
    with engine.begin() as conn:
        lifecycle.approve(conn, load_issue(draft, config.newsletter.areas), SLOT)
    early = schedule.after_approval(config, engine, "2026-05-28", SLOT - timedelta(days=2))
    late = schedule.after_approval(config, engine, "2026-05-28", SLOT + timedelta(hours=7))
    assert "the weekly send of its week will send it" in early and not handler.messages
    assert "beyond grace_hours=6.0" in late and "newsletter send 2026-05-28" in late and not handler.messages
    within = schedule.after_approval(config, engine, "2026-05-28", SLOT + timedelta(hours=2))
    assert "sent at once (sent)" in within
    assert handler.received == {f"s{n}@example.org": 1 for n in range(3)}
