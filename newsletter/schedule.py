"""The weekly send: an APScheduler 3.x cron job kept in the project's database.

What the job does is a pure decision over (config, now), so tests drive it with a fixed clock:

    now past the week's slot + grace_hours ─► "missed"        nothing sent, logged as an ERROR
    no issue file dated in the last 7 days  ─► "no-issue"      never an older issue
    that issue not ready (file or approve)  ─► "not-ready"     approvals: table ``approvals``, by content hash
    its outbox already finished             ─► "already-sent"  nothing happens
    its send paused by an operator          ─► "paused"        left to them (``newsletter resume``)
    no active subscriber would get it       ─► "nobody"        nothing recorded: not marked sent
    otherwise                               ─► "sent"          (or "paused"/"sending" as the send ends)

APScheduler adds what needs a clock: its job store (SQLAlchemy, table ``apscheduler_jobs``) keeps
the job and its next run time across restarts; ``misfire_grace_time`` runs a slot missed while
the machine was down if it is still within the grace period, ``coalesce`` makes any number of
missed slots one run, and a run missed past the grace is logged loudly by ``_on_missed``.
The job is only (re)written when its trigger changed, because re-adding it would move its next
run time past a slot missed during downtime and so silently skip the catch-up. A send stopped
mid-way (SIGTERM) keeps its outbox in state ``sending``; a restart within the grace runs the job
once at once (``interrupted``), which resumes it: rows already sent are never sent again.

Any number of ``newsletter schedule`` processes may run on one database: one leads and runs the job,
the others stand by and take over when it dies (``store/leader.py``). With ``[schedule] deliver =
"workers"`` the job only makes the outbox, and ``newsletter worker`` processes deliver it.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from . import lifecycle, store
from .clock import utcnow
from .config import Config, ScheduleSection, load_config
from .content import issue_files, load_issue
from .errors import NothingToSend, NotReady
from .lifecycle import IssueState
from .send import Campaign, Mode, control
from .store import tables as t
from .store.leader import POLL, Leadership, leading

log = logging.getLogger("newsletter.schedule")
JOB_ID = "weekly-send"
JOB_TABLE = t.JOB_TABLE
RESUME_ID = "resume-send"
_stop = threading.Event()  # set on SIGTERM / Ctrl-C: a running send stops between messages


def weekly_trigger(cfg: ScheduleSection) -> CronTrigger:
    hour, minute = (int(p) for p in cfg.time.split(":"))
    return CronTrigger(day_of_week=cfg.day, hour=hour, minute=minute, timezone=ZoneInfo(cfg.timezone))


def next_runs(cfg: ScheduleSection, now: datetime, count: int = 3) -> list[datetime]:
    """The next ``count`` run times after ``now``, in the configured zone (DST handled by the trigger)."""
    trigger, runs, previous = weekly_trigger(cfg), [], None
    for _ in range(count):
        previous = trigger.get_next_fire_time(previous, now if previous is None else previous + timedelta(seconds=1))
        runs.append(previous)
    return runs


def last_slot(cfg: ScheduleSection, now: datetime) -> datetime:
    """The most recent scheduled time at or before ``now``."""
    slot = weekly_trigger(cfg).get_next_fire_time(None, now - timedelta(days=7) + timedelta(seconds=1))
    assert slot is not None
    return slot


# --- the job -----------------------------------------------------------------------------------


def week_issue(config: Config, now: datetime) -> Path | None:
    """The issue of this week: the newest file dated within the 7 days ending today (local time)."""
    today = now.astimezone(ZoneInfo(config.schedule.timezone)).date()
    recent = [p for p in issue_files(config.path("issues")) if _dated_within(p, today)]
    return recent[-1] if recent else None


def _dated_within(path: Path, today: dt.date) -> bool:
    try:
        return 0 <= (today - datetime.fromisoformat(path.stem).date()).days < 7
    except ValueError:
        return False


def run_weekly(config: Config, engine: sa.Engine, now: datetime) -> str:
    """Decide and, when due, send this week's issue; returns the outcome (see the module docstring)."""
    slot = last_slot(config.schedule, now)
    late = now - slot
    if late > timedelta(hours=config.schedule.grace_hours):
        log.error("MISSED the weekly send of %s: it is %s past the slot, beyond grace_hours=%s; nothing is "
                  "sent (run `newsletter send ISSUE` by hand if it should still go out)",
                  slot.isoformat(), _hours(late), config.schedule.grace_hours)
        return "missed"
    path = week_issue(config, now)
    if path is None:
        log.warning("no issue file dated in the week up to %s in %s: nothing to send", now.date(),
                    config.path("issues"))
        return "no-issue"
    issue = load_issue(path, config.newsletter.areas)
    with engine.connect() as conn:
        state = lifecycle.issue_state(conn, issue.slug)
    if state is IssueState.SENT:
        log.info("issue %s was sent already: nothing to do", issue.slug)
        return "already-sent"
    if state is IssueState.PAUSED and _operator_paused(engine, issue.slug):
        log.warning("issue %s was paused by an operator: left paused (`newsletter resume %s` goes on)",
                    issue.slug, issue.slug)
        return "paused"
    workers = config.schedule.deliver == "workers"
    try:
        run = Campaign(config, engine, issue, path=path, stop=_stop).run(Mode.ENQUEUE if workers else Mode.SEND)
    except NotReady as exc:  # a draft, or changed since its approval (lifecycle.readiness)
        log.warning("issue %s is not ready: %s", issue.slug, exc)
        return "not-ready"
    except NothingToSend as exc:
        log.warning("%s", exc)
        return "nobody"
    if workers:
        assert run.started is not None
        log.info("issue %s: %d rows in the outbox for the workers (`newsletter worker`) to deliver",
                 issue.slug, run.started.due)
        return "enqueued"
    assert run.report is not None
    log.info("issue %s (%s): %s; %s", issue.slug, "resumed" if state else "new", run.report.state,
             ", ".join(f"{k} {v}" for k, v in run.report.counts.items() if v))
    return run.report.state


def _operator_paused(engine: sa.Engine, slug: str) -> bool:
    with engine.connect() as conn:
        return control.operator_paused(conn, slug)


def after_approval(config: Config, engine: sa.Engine, slug: str, now: datetime,
                   send_now: Callable[[], str] | None = None) -> str:
    """What approving ``slug`` at ``now`` means for the weekly send, in one line; within the grace of a slot
    that found it unapproved, it is sent (or enqueued) at once: by the weekly job's own code here (the CLI), or by
    ``send_now`` (the console and the API start it in the background and answer at once)."""
    slot = last_slot(config.schedule, now)
    zone = ZoneInfo(config.schedule.timezone)
    week = week_issue(config, now)
    try:
        dated = datetime.fromisoformat(slug).date()
    except ValueError:
        return f"Approved {slug}: its file name is not a date, so no weekly send picks it; send it by hand."
    if dated > now.astimezone(zone).date() or (week is not None and week.stem == slug
                                                and slot.astimezone(zone).date() < dated):
        return f"Approved {slug}: the weekly send of its week will send it."
    if week is None or week.stem != slug:
        return (f"Approved {slug}, but its week's send is past and no slot will send it: "
                f"send it by hand with `newsletter send {slug}`.")
    late = now - slot
    if late > timedelta(hours=config.schedule.grace_hours):
        return (f"Approved {slug} {_hours(late)} after its slot ({slot.isoformat()}), beyond grace_hours="
                f"{config.schedule.grace_hours}: it will not be sent on its own; send it by hand with "
                f"`newsletter send {slug}`.")
    outcome = send_now() if send_now else run_weekly(config, engine, now)
    return f"Approved {slug} {_hours(late)} after its slot, within grace_hours: sent at once ({outcome})."


def interrupted(config: Config, engine: sa.Engine, now: datetime) -> bool:
    """This week's send was stopped mid-way (SIGTERM, a crash) and the slot is still within its grace."""
    if now - last_slot(config.schedule, now) > timedelta(hours=config.schedule.grace_hours):
        return False
    path = week_issue(config, now)
    if path is None:
        return False
    with engine.connect() as conn:
        return lifecycle.issue_state(conn, path.stem) is IssueState.SENDING


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def weekly_job(config_file: str) -> str:
    """The stored job's entry point (referenced by name, so it survives restarts)."""
    config = load_config(config_file)
    engine = store.connect(store.engine_for(config.database_url))
    try:
        return run_weekly(config, engine, utcnow())
    finally:
        engine.dispose()


# --- the long-lived process ----------------------------------------------------------------------


def install_job(scheduler: BaseScheduler, config: Config, config_file: Path) -> None:
    """Add the weekly job, or keep the stored one (and its pending catch-up) when nothing changed."""
    trigger = weekly_trigger(config.schedule)
    existing = scheduler.get_job(JOB_ID)
    if existing is not None and str(existing.trigger) == str(trigger) and existing.args == (str(config_file),):
        return
    scheduler.add_job(weekly_job, trigger, args=[str(config_file)], id=JOB_ID, name="weekly send",
                      replace_existing=True, coalesce=True, max_instances=1,
                      misfire_grace_time=max(1, int(config.schedule.grace_hours * 3600)))


def job_store(engine: sa.Engine) -> SQLAlchemyJobStore:
    return SQLAlchemyJobStore(engine=engine, tablename=JOB_TABLE)


def _on_missed(event: JobExecutionEvent) -> None:
    log.error("MISSED the weekly send scheduled for %s: the scheduler was not running within the grace "
              "period, so nothing is sent (a stale issue never goes out late)", event.scheduled_run_time)


def watch_misses(scheduler: BaseScheduler) -> None:
    scheduler.add_listener(_on_missed, EVENT_JOB_MISSED)


def run(config: Config, config_file: Path) -> None:
    """``newsletter schedule``: lead (or stand by until leading), until SIGTERM or Ctrl-C; then stop cleanly."""
    _stop.clear()

    def stop(signum: int, _frame: object) -> None:
        log.info("stopping (signal %d): a send in progress stops between messages and resumes next run", signum)
        _stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    engine = store.connect(store.engine_for(config.database_url))
    try:
        while not _stop.is_set():  # a leader that lost its lock stands by again
            with leading(engine, _stop) as lead:
                if lead is None:
                    break
                _lead(config, config_file, engine, lead)
    finally:
        engine.dispose()
    log.info("stopped")


def _lead(config: Config, config_file: Path, engine: sa.Engine, lead: Leadership) -> None:
    """Run the weekly job while this process leads: only the leader's scheduler ever fires."""
    scheduler = BackgroundScheduler(jobstores={"default": job_store(engine)},
                                    timezone=ZoneInfo(config.schedule.timezone))
    watch_misses(scheduler)
    scheduler.start(paused=True)  # nothing runs until the job is checked against the config
    install_job(scheduler, config, config_file)
    if interrupted(config, engine, utcnow()):
        log.info("this week's send was interrupted: resuming it now")
        scheduler.add_job(weekly_job, args=[str(config_file)], id=RESUME_ID, name="resume weekly send",
                          replace_existing=True, misfire_grace_time=60)
    elif scheduler.get_job(RESUME_ID) is not None:  # left by a process that died before running it
        scheduler.remove_job(RESUME_ID)
    for runtime in upcoming(scheduler):
        log.info("next weekly send: %s", runtime.isoformat())
    scheduler.resume()
    while not _stop.wait(POLL) and lead.held():
        pass
    scheduler.shutdown(wait=True)  # a running send has seen _stop: its rows not begun stay queued


def upcoming(scheduler: BaseScheduler) -> Iterator[datetime]:
    job = scheduler.get_job(JOB_ID)
    if job is not None and job.next_run_time is not None:
        yield job.next_run_time
