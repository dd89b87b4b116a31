"""Sends started from the console or the API: ``Campaign.run`` in a thread of the ``newsletter serve`` process, or,
with ``[schedule] deliver = "workers"``, only the outbox (``Mode.ENQUEUE``) for the workers to deliver.

At most one send thread per issue in the process (``Sends.of``: one per database). The caller hears how the start
went before it answers: a draft, a list with no one to send to, an issue sent already are refused in one line as
``newsletter send`` refuses them, and nothing is recorded. A pause or cancel sets the thread's stop event, so a send
of this process stops after the message in flight; other processes see the state at their next claim. When the
process exits, its send threads are stopped between two messages (their rows not begun stay queued).
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from .. import lifecycle
from ..clock import SYSTEM, Clock
from ..config import Config
from ..content import Issue
from ..errors import ActionRefused, NewsletterError
from ..lifecycle import IssueState
from .campaign import Campaign, Events, Mode, Options, Started

log = logging.getLogger("newsletter.send")
START_WAIT = 300.0  # seconds to wait for the outbox to be made (1,000,000 rows: about 10 s on SQLite)
STOP_WAIT = 60.0    # for a stopping thread to finish the message in flight (a relay's timeout)


@dataclass
class _Thread:
    """One send thread and what its starter waits on."""

    stop: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)  # started, or failed before any message
    started: Started | None = None
    error: Exception | None = None
    thread: threading.Thread | None = None


class _Signal(Events):
    """Tells the starter the outbox is made (or found) and delivery begins."""

    def __init__(self, running: _Thread) -> None:
        self.running = running

    def started(self, started: Started) -> None:
        self.running.started = started
        self.running.ready.set()


class Sends:
    """The send threads of this process for one database."""

    # by the engine's id: a Sends holds its engine, so while the one lives the other does, and the id is not reused
    _of: weakref.WeakValueDictionary[int, Sends] = weakref.WeakValueDictionary()
    _guard = threading.Lock()

    def __init__(self, config: Config, engine: sa.Engine, clock: Clock = SYSTEM) -> None:
        self.config, self.engine, self.clock = config, engine, clock
        self._threads: dict[str, _Thread] = {}
        self._lock = threading.Lock()
        _ALL.add(self)

    @classmethod
    def of(cls, config: Config, engine: sa.Engine, clock: Clock = SYSTEM) -> Sends:
        """The one ``Sends`` of this process for ``engine`` (the console and the API share it)."""
        with cls._guard:
            found = cls._of.get(id(engine))
            if found is None:
                found = cls._of[id(engine)] = cls(config, engine, clock)
            return found

    def send(self, issue: Issue, path: Path | None) -> str:
        """Start the issue's send (or, with workers, make its outbox); what was done, in one line."""
        with self.engine.connect() as conn:
            if lifecycle.issue_state(conn, issue.slug) is IssueState.SENT:
                raise ActionRefused(f"{issue.slug} was sent already: nothing to send")
        return self._deliver(issue, path)

    def resume(self, issue: Issue, path: Path | None) -> str:
        """Deliver a send ``control.resume`` made sending again: here, or by the workers."""
        if self.config.schedule.deliver == "workers":
            return f"{issue.slug}: sending again; the workers (`newsletter worker`) deliver it"
        return self._deliver(issue, path)

    def _deliver(self, issue: Issue, path: Path | None) -> str:
        if self.config.schedule.deliver == "workers":
            run = Campaign(self.config, self.engine, issue, path=path, clock=self.clock).run(Mode.ENQUEUE)
            assert run.started is not None
            return f"{issue.slug}: {run.started.due} rows in the outbox for the workers (`newsletter worker`)"
        started = self._start(issue, path)
        if started is None:
            return f"{issue.slug}: the send is starting (its outbox is still being made)"
        return f"{issue.slug}: sending {started.due} messages from this server"

    def _start(self, issue: Issue, path: Path | None) -> Started | None:
        """A thread running ``Campaign.run(Mode.SEND)``; its ``Started`` once delivery begins, or its refusal."""
        self.settle(issue.slug)
        running = _Thread()
        with self._lock:
            current = self._threads.get(issue.slug)
            if current is not None and current.thread is not None and current.thread.is_alive():
                raise ActionRefused(f"{issue.slug} is being sent by this server already")
            running.thread = threading.Thread(target=self._run, args=(issue, path, running), daemon=True,
                                              name=f"send {issue.slug}")
            self._threads[issue.slug] = running
            running.thread.start()
        running.ready.wait(START_WAIT)
        if running.error is not None:
            raise running.error
        return running.started

    def _run(self, issue: Issue, path: Path | None, running: _Thread) -> None:
        campaign = Campaign(self.config, self.engine, issue, path=path, clock=self.clock, stop=running.stop,
                            events=_Signal(running))
        try:
            run = campaign.run(Mode.SEND, Options())
            log.info("%s: %s after delivering %d", issue.slug, run.state, run.delivered)
        except NewsletterError as exc:  # refused before anything went out: not ready, nobody to send to
            running.error = exc
        except Exception as exc:  # a bug: said to the starter in one line, kept in the log with its traceback
            log.exception("the send of %s stopped", issue.slug)
            running.error = ActionRefused(f"the send of {issue.slug} stopped: {type(exc).__name__}: {exc}")
        finally:
            running.ready.set()

    def settle(self, slug: str) -> None:
        """Wait for a send thread told to stop (a pause) to finish its message in flight: before a resume."""
        with self._lock:
            current = self._threads.get(slug)
        if current is None or current.thread is None or not current.stop.is_set():
            return
        current.thread.join(STOP_WAIT)
        if current.thread.is_alive():
            raise ActionRefused(f"{slug}: the paused send is still finishing its message in flight; try again")

    def stop(self, slug: str) -> None:
        """Stop this process's send of ``slug`` after the message in flight (after a pause or a cancel)."""
        with self._lock:
            current = self._threads.get(slug)
        if current is not None:
            current.stop.set()

    def running(self, slug: str) -> bool:
        with self._lock:
            current = self._threads.get(slug)
        return current is not None and current.thread is not None and current.thread.is_alive()

    def join(self, slug: str, timeout: float) -> bool:
        """Wait until this process's send of ``slug`` has ended; False if it still runs after ``timeout``."""
        with self._lock:
            current = self._threads.get(slug)
        if current is not None and current.thread is not None:
            current.thread.join(timeout)
        return not self.running(slug)

    def stop_all(self, timeout: float = STOP_WAIT) -> None:
        with self._lock:
            threads = list(self._threads.values())
        for running in threads:
            running.stop.set()
        for running in threads:
            if running.thread is not None:
                running.thread.join(timeout)


_ALL: weakref.WeakSet[Sends] = weakref.WeakSet()


@atexit.register
def _stop_at_exit() -> None:
    """uvicorn has stopped serving: end the sends between two messages, not in the middle of one."""
    for sends in list(_ALL):
        sends.stop_all()
