"""One send of one issue, orchestrated in one place: plan → enqueue → deliver → finish.

Every way an issue goes out runs through ``Campaign.run`` with a ``Mode``: ``newsletter send``
(SEND), ``send --enqueue`` (ENQUEUE) and the workers that deliver it (DELIVER), the weekly
schedule (SEND), ``send --dry-run`` (DRY_RUN) and ``send --test-to`` (TEST). The ready gate is
here: only an issue marked ``ready = true`` or approved is enqueued for the list; a test copy of a
draft is what editors send, so TEST and DRY_RUN pass the gate. The reach rule is here too: a send
whose outbox would hold no row to deliver (no active subscriber, none meeting a paper, nobody new
for ``Options.new_subscribers``) raises ``NothingToSend`` inside the enqueue transaction, so nothing
is recorded and the issue is not marked sent: an import later, the same send reaches everyone.

    mode      plan  gate  enqueue  deliver                 finish
    DRY_RUN    ✓
    TEST       ✓            (one copy to the editor, no outbox)
    ENQUEUE          ✓      ✓
    SEND             ✓      ✓      ✓ (waits for deferred)  ✓
    DELIVER                        ✓ (what is due now)     ✓
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from .. import areas, lifecycle
from ..clock import SYSTEM, Clock
from ..config import Config, base_url_warning
from ..content import Issue
from ..errors import NothingToSend, SendFault
from ..lifecycle import IssueState
from ..links import Links, links_for, sample_links
from ..render import GMAIL_CLIP_BYTES
from ..store import engine_for
from . import fanout, outbox
from .compose import prepare
from .groups import Groups
from .mailer import Mailer, Recipient, sizing_mailer
from .pool import Delivery
from .report import Report, report
from .transport import Result


class Mode(enum.StrEnum):
    DRY_RUN = "dry-run"
    TEST = "test"
    ENQUEUE = "enqueue"
    SEND = "send"
    DELIVER = "deliver"


@dataclass(frozen=True)
class Plan:
    """What ``send --dry-run`` prints: how many get which group, how many are skipped."""

    groups: dict[str, int]
    skipped: int
    sent_before: IssueState | None = None  # the issue has an outbox: a send resumes it, it does not redo it


@dataclass(frozen=True)
class Started:
    """What the enqueue step found or made before any message goes out."""

    iid: int
    created: outbox.Counts | None  # None: the outbox existed already (a resumed send)
    recovered_unknown: int         # rows left mid-transfer by a process that died
    requeued_unknown: int          # unknown rows put back on --resend-unknown
    due: int                       # rows to deliver now


@dataclass(frozen=True)
class Options:
    resend_unknown: bool = False   # also resend rows whose fate is unknown
    wait: bool = True              # SEND: wait for deferred rows to come due
    test_to: str = ""              # TEST: the editor's address ...
    test_areas: tuple[str, ...] = ()  # ... and the group to send (default: every area)
    new_subscribers: bool = False  # SEND, ENQUEUE, DRY_RUN: only active subscribers with no row for the issue
    subscriber: int | None = None  # with new_subscribers: only this one (a late joiner, send/latejoin.py)


@dataclass(frozen=True)
class Run:
    mode: Mode
    plan: Plan | None = None
    started: Started | None = None
    report: Report | None = None
    test: Result | None = None
    fault: str | None = None
    delivered: int = 0
    state: IssueState | None = None  # the issue's state after a delivering run


class Events:
    """What the caller hears while a send goes; the CLI prints it, the defaults say nothing."""

    def started(self, started: Started) -> None:
        pass

    def progress(self, started: Started) -> contextlib.AbstractContextManager[Callable[[int], None]]:
        return contextlib.nullcontext(lambda _n: None)

    def warning(self, line: str) -> None:
        """What may hurt delivery, said before anything goes out (the schedule's log has it)."""
        logging.getLogger(__name__).warning(line)


class Campaign:
    """An issue's send, as one process takes part in it."""

    def __init__(self, config: Config, engine: sa.Engine, issue: Issue, *, path: Path | None = None,
                 clock: Clock = SYSTEM, stop: threading.Event | None = None, events: Events | None = None,
                 mailer: Mailer | None = None, groups: Groups | None = None, welcome: bool = False) -> None:
        self.config, self.engine, self.issue, self.path = config, engine, issue, path
        self.clock = clock
        self.stop = stop or threading.Event()
        self.events = events or Events()
        # a clock or mailer handed in (tests) cannot cross into another process: such a send stays in this one
        self.own_parts = mailer is None and clock is SYSTEM
        self.mailer = mailer or Mailer(config, clock)
        self.links = links_for(config, engine)
        self.groups = groups or Groups(config, issue, dataclasses.replace(self.mailer.sender, campaign=issue.slug),
                                       links=self.links, clock=clock, welcome=welcome)  # links: for [tracking] clicks

    def run(self, mode: Mode, options: Options = Options()) -> Run:
        if mode is Mode.DRY_RUN:
            return Run(mode, plan=self.plan(options.new_subscribers))
        if mode is Mode.TEST:
            self.warn([self.test_key(options.test_areas)])
            return Run(mode, test=self.test_copy(options.test_to, options.test_areas))
        started = self.start(mode, options.resend_unknown, options.new_subscribers, options.subscriber)
        if mode is not Mode.DELIVER and options.subscriber is None:  # one reader's copy: no per-group sizing
            self.warn(self.groups.by_key)
        if mode is Mode.ENQUEUE:
            return Run(mode, started=started)
        self.events.started(started)
        delivery, helped = self.deliver(started, wait=mode is Mode.SEND and options.wait, fan_out=mode is Mode.SEND)
        state = self.finish(started.iid, delivery.state.fault)
        # a worker's pass needs no report: it reads every row of the issue, at each pass of each worker
        report = self.report() if mode is not Mode.DELIVER else None
        return Run(mode, started=started, report=report, fault=delivery.state.fault,
                   delivered=delivery.state.done + helped, state=state)

    # --- the steps -------------------------------------------------------------------------------

    def plan(self, new_subscribers: bool = False) -> Plan:
        """Who would get which group; with ``new_subscribers``, only those the issue has not reached yet."""
        counts: dict[str, int] = {}
        skipped = 0
        with self.engine.connect() as conn:
            new_for = self._sent_id(conn) if new_subscribers else None
            for batch in outbox.active_subscribers(conn, new_for=new_for):
                for sub in batch:
                    key = self.groups.key_for(sub.areas)
                    if key is None:
                        skipped += 1
                    else:
                        counts[key] = counts.get(key, 0) + 1
            before = lifecycle.issue_state(conn, self.issue.slug)
        return Plan(dict(sorted(counts.items())), skipped, before)

    def start(self, mode: Mode, resend_unknown: bool = False, new_subscribers: bool = False,
              only: int | None = None) -> Started:
        """Gate, then make the issue's outbox (issue row and every row in one transaction), find it, or
        add the newcomers' rows to it; turn the rows of processes that died mid-transfer into ``unknown``."""
        now = self.clock.now()
        with self.engine.begin() as conn:
            if mode is not Mode.DELIVER:
                lifecycle.require_ready(conn, self.issue, self.path)
            iid, created = self._outbox(conn, mode, new_subscribers, now, only)
        with self.engine.begin() as conn:
            recovered = outbox.recover(conn, iid, now, outbox.local_alive)
            requeued = outbox.resend_unknown(conn, iid) if resend_unknown else 0
            outbox.skip_gone(conn, iid, now)
            due = outbox.due_count(conn, iid)
            # sending again resumes a paused send, even one with nothing left (finish then marks it sent)
            if mode is not Mode.DELIVER and (due or lifecycle.state_of(conn, iid)[0] is not IssueState.SENT):
                lifecycle.set_issue_state(conn, iid, IssueState.SENDING, now)
        return Started(iid, created, recovered, requeued, due)

    def _outbox(self, conn: sa.Connection, mode: Mode, new_subscribers: bool,
                now: datetime, only: int | None = None) -> tuple[int, outbox.Counts | None]:
        """The issue's id and the rows made now (None: found as it was); a send reaching no one raises
        ``NothingToSend`` here, inside the transaction, which rolls back the issue row with it."""
        slug = self.issue.slug
        if new_subscribers:
            iid = self._sent_id(conn)
            created = outbox.enqueue(conn, iid, self.groups.key_for, now, new_only=True, only=only)
        elif (found := lifecycle.issue_id(conn, slug)) is not None:
            return found, None
        elif mode is Mode.DELIVER:
            raise SendFault(f"{slug} has no outbox: run `newsletter send {slug} --enqueue` first")
        else:
            iid = lifecycle.create_issue(conn, slug, self.issue.title, now)
            created = outbox.enqueue(conn, iid, self.groups.key_for, now)
        if not created.queued:
            raise NothingToSend(nobody(slug, created, new_subscribers))
        return iid, created

    def _sent_id(self, conn: sa.Connection) -> int:
        """The outbox that ``--new-subscribers`` adds to; an issue never sent has none to add to."""
        slug = self.issue.slug
        iid = lifecycle.issue_id(conn, slug)
        if iid is None:
            raise NothingToSend(f"{slug} has not been sent: `newsletter send {slug}` sends it to every active "
                                "subscriber (--new-subscribers is for those who joined after a send)")
        return iid

    def deliver(self, started: Started, wait: bool, fan_out: bool = False) -> tuple[Delivery, int]:
        """Deliver the due rows: with ``fan_out`` (a send, not a worker's pass: workers are processes already),
        helper processes first when it gets more than one (send/fanout.py), then this process's own threads for
        what they left; the delivery and how many the helpers delivered."""
        url = self.engine.url.render_as_string(hide_password=False)
        count = fanout.processes_for(self.config, url, started.due) if fan_out and self.own_parts else 1
        helpers = self._helpers(count, url) if count > 1 else None
        try:
            with self.events.progress(started) as tick:  # after the fork: a progress bar is a thread
                codes = helpers.wait(tick) if helpers else []
                if any(codes):
                    logging.getLogger(__name__).warning(
                        "%s: a helper process exited with %s: its rows go back to the queue, those it was "
                        "sending are marked unknown", self.issue.slug, ", ".join(map(str, filter(None, codes))))
                delivery = Delivery(self.config, self.engine, self.groups, self.links, self.mailer, clock=self.clock,
                                    stop=self.stop, on_progress=tick)
                delivery.run(started.iid, wait)
        except BaseException:
            if helpers:
                helpers.kill()
            raise
        return delivery, helpers.done if helpers else 0

    def _helpers(self, count: int, url: str) -> fanout.Helpers:
        """Start ``count`` helper processes, each with its share of the connections; every group rendered first,
        so forked helpers inherit them, and no database connection open across the fork."""
        for key in self.groups.by_key:
            self.groups.get(key)
        self.engine.dispose()
        jobs = [fanout.Job(share, self.issue, self.path, url, os.getpid(), self.groups)
                for share in fanout.shares(self.config, count)]
        helpers = fanout.Helpers(_help, jobs, self.stop)
        helpers.start()
        return helpers

    def finish(self, iid: int, fault: str | None) -> IssueState:
        """The issue's state after a run: paused (with the reason), sent, or still sending.

        Only a send still ``sending`` is moved: one an operator paused or cancelled meanwhile keeps their state
        and reason, and rows this run gave back to the queue after a cancel are skipped like the others.
        """
        now = self.clock.now()
        with self.engine.begin() as conn:
            if fault and lifecycle.move(conn, iid, [IssueState.SENDING], IssueState.PAUSED, now, fault):
                return IssueState.PAUSED
            if not fault and outbox.next_due(conn, iid, now) is None and \
                    lifecycle.move(conn, iid, [IssueState.SENDING], IssueState.SENT, now):
                return IssueState.SENT
            state, reason = lifecycle.state_of(conn, iid)
            if state is IssueState.SENT and reason and reason.startswith(lifecycle.CANCELLED_BY):
                outbox.cancel(conn, iid, reason, now)
        return state

    def report(self) -> Report:
        with self.engine.connect() as conn:
            found = report(conn, self.issue.slug)
        assert found is not None, self.issue.slug
        return found

    def warn(self, keys: Iterable[str]) -> None:
        """One line for an http base_url (no one-click unsubscribe), one for each group Gmail would clip."""
        line = base_url_warning(self.config.newsletter.base_url)
        for found in ([line] if line else []) + oversize(self.mailer, self.groups, self.links, keys):
            self.events.warning(found)

    def test_key(self, chosen: tuple[str, ...]) -> str:
        known = self.config.newsletter.areas
        return areas.group_key(areas.group(chosen, known), known)

    def test_copy(self, to: str, chosen: tuple[str, ...] = ()) -> Result:
        """One copy of a group to an editor's address, subject marked [Test]; the outbox is not touched."""
        group_areas = areas.group(chosen, self.config.newsletter.areas)
        group = self.groups.renderer.render(self.issue, group_areas)
        if group is None:
            raise SendFault(f"no paper of {self.issue.slug} meets the areas {', '.join(group_areas)}: "
                            "nothing to test")
        prepared = prepare(dataclasses.replace(group, subject=f"[Test] {group.subject}"), self.groups.sender)
        msg = self.mailer.copy(prepared, self.links, Recipient(None, to, ""), self.mailer.new_message_id())
        return self.mailer.send_one(msg)


class _Counted(Events):
    """A helper process's events: each message it delivers is added to the count its parent shows."""

    def __init__(self, count: Any) -> None:
        self.count = count

    def progress(self, started: Started) -> contextlib.AbstractContextManager[Callable[[int], None]]:
        def tick(n: int) -> None:
            with self.count.get_lock():
                self.count.value += n

        return contextlib.nullcontext(tick)


def _help(job: fanout.Job, stop: Any, count: Any) -> None:
    """A helper process (send/fanout.py): one DELIVER pass of the issue with its share of the connections."""
    with fanout.helper_process(job, stop) as local:
        engine = engine_for(job.url)
        try:
            Campaign(job.config, engine, job.issue, path=job.path, stop=local, events=_Counted(count),
                     groups=job.groups).run(Mode.DELIVER, Options(wait=False))
        finally:
            engine.dispose()


def nobody(slug: str, counts: outbox.Counts, new_subscribers: bool) -> str:
    """Why a send would reach no one, in one line that says the issue stays as it was."""
    who = "new subscriber" if new_subscribers else "active subscriber"
    if counts.skipped:
        why = (f"none of the {counts.skipped} {who}(s) chose an area of this issue's papers "
               "([newsletter] send_when_no_match = true sends them the list anyway)")
    elif new_subscribers:
        why = "every active subscriber has a row for it already (sent, or skipped)"
    else:
        why = "there is no active subscriber (add or import some first)"
    state = "nothing added to its send" if new_subscribers else f"{slug} stays unsent"
    return f"{slug}: nothing to send, {why}; {state}"


def oversize(mailer: Mailer, groups: Groups, links: Links, keys: Iterable[str]) -> list[str]:
    """A line for each group whose message, as sent, is over the 102 KB at which Gmail clips it."""
    lines = []
    for key in keys:
        prepared = groups.get(key)
        size = mailer.size(prepared, links) if prepared else 0
        if size > GMAIL_CLIP_BYTES:
            lines.append(f"warning: {groups.issue.slug} group {key}: the message is {size / 1024:.1f} KB, "
                         f"over the {GMAIL_CLIP_BYTES // 1024} KB at which Gmail clips it")
    return lines


def issue_warnings(config: Config, issue: Issue) -> list[str]:
    """``oversize`` for every group of an issue, without a database (``newsletter issue check``)."""
    mailer = sizing_mailer(config)
    links = sample_links(config)
    groups = Groups(config, issue, dataclasses.replace(mailer.sender, campaign=issue.slug), links=links)
    return oversize(mailer, groups, links, groups.by_key)
