"""Delivery: threads, each over its own line to the relay, claim due rows and deliver them.

One thread per connection (``[smtp] connections``): the work per message is small (slot filling
and headers, 40 to 70 µs measured, and one short transaction) and the rest is waiting on the
relay and the kernel, which threads overlap.

Nothing one row does can stall the rest: an exception while building or sending a message is
recorded against its row with the reason (failed, deferred when it may pass later, or unknown when
the relay went silent after the final dot and may have it: never claimed again) and the thread goes
on; an exception outside any row (the database went away) pauses the send with the reason and is
logged with its traceback. Only a fault of the whole send (``SendFault``: login or
sender refused, a run of refusals) stops the threads, leaving every row not begun queued.

An operator's pause or cancel (send/control.py), from any process, stops them the same way: each claim
first reads the issue's state (one primary-key read per batch, in the claim's transaction) and a thread
that finds it no longer ``sending`` halts the send; that is not a fault, so the operator's state stands.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa

from .. import audience
from ..clock import SYSTEM, Clock
from ..config import Config
from ..errors import SendFault
from ..lifecycle import IssueState
from ..links import Links
from ..store import tables as t
from ..store.turn import writer_turn
from . import outbox
from .groups import Groups
from .mailer import Line, Mailer, Recipient
from .outbox import Row
from .policy import RetryPolicy
from .transport import Outcome, Result

log = logging.getLogger("newsletter.send")
CLAIM_BATCH = 50
IDLE_SECONDS = 1.0
# A claim is held while its worker's heartbeat renews it (every quarter lease), however long the batch
# takes; a worker that stops renewing loses its rows one lease later, to the next heartbeat of any other.
LEASE = timedelta(seconds=60)


class RateLimit:
    """Messages per second and per hour, shared by the threads of this process."""

    def __init__(self, per_second: float, per_hour: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second, self.per_hour, self.clock = per_second, per_hour, clock
        self._lock = threading.Lock()
        self._next = 0.0
        self._hour: list[float] = []

    def wait(self, stop: threading.Event) -> None:
        if not self.per_second and not self.per_hour:
            return
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            if self.per_hour:
                self._hour = [t for t in self._hour if t > now - 3600]
                if len(self._hour) >= self.per_hour:
                    start = max(start, self._hour[0] + 3600)
                self._hour.append(start)
            self._next = start + (1 / self.per_second if self.per_second else 0)
        if start > now:
            stop.wait(start - now)


@dataclass
class SendState:
    """What the threads of one send share."""

    stop: threading.Event = field(default_factory=threading.Event)
    fault: str | None = None
    halted: IssueState | None = None  # the state an operator put the issue in (paused, or sent by a cancel)
    consecutive_errors: int = 0
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, ok: bool, limit: int) -> None:
        with self.lock:
            self.done += 1
            self.consecutive_errors = 0 if ok else self.consecutive_errors + 1
            if self.consecutive_errors >= limit and not self.fault:
                self.pause(f"{limit} messages in a row were not accepted; last answers suggest the relay is in trouble")

    def pause(self, reason: str) -> None:
        self.fault = self.fault or reason
        self.stop.set()

    def halt(self, state: IssueState) -> None:
        """The issue is no longer ``sending`` (an operator paused or cancelled it): stop, without a fault."""
        self.halted = self.halted or state
        self.stop.set()


# read at each claim: built once (made afresh it cost 28 µs a message at commit_every = 8)
_ISSUE_STATE = sa.select(t.issues.c.state).where(t.issues.c.id == sa.bindparam("iid"))

_Done = list[tuple[Row, Result]]  # delivered, its result not written yet (at most one per thread)


def _recover(conn: sa.Connection, iid: int, now: datetime, own: list[str] | None = None) -> None:
    """``outbox.recover`` during a send, said in the log when it found a dead worker's rows mid-transfer."""
    if unknown := outbox.recover(conn, iid, now, outbox.local_alive, own or ()):
        log.warning("%d row(s) were mid-transfer in a worker that stopped: marked unknown", unknown)


class Delivery:
    """One pass of this process over one issue's due rows."""

    def __init__(self, config: Config, engine: sa.Engine, groups: Groups, links: Links, mailer: Mailer, *,
                 clock: Clock = SYSTEM, stop: threading.Event | None = None,
                 on_progress: Callable[[int], None] | None = None, lease: timedelta | None = None) -> None:
        self.config, self.engine, self.groups, self.links, self.mailer = config, engine, groups, links, mailer
        self.clock = clock
        self.state = SendState(stop=stop or threading.Event())
        self.limit = RateLimit(config.smtp.rate_per_second, config.smtp.rate_per_hour)
        self.policy = RetryPolicy.from_config(config.smtp)
        self.lease = lease or LEASE
        self._held: dict[str, list[int]] = {}  # each thread's last claim, by its worker name
        self._held_lock = threading.Lock()
        self.on_progress = on_progress or (lambda n: None)
        self.due_by: datetime | None = None
        self._sqlite_turn = writer_turn(engine)  # SQLite: one writer at a time, across processes too

    def run(self, iid: int, wait: bool = True) -> None:
        """Deliver every due row; with ``wait``, keep going until deferred rows are final too.

        Without ``wait`` a row deferred during this run is left for a later run, as ``--no-wait`` says.
        """
        self.due_by = None if wait else self.clock.now()
        while not self.state.stop.is_set():
            before = self.state.done
            names = [outbox.worker_name(str(n)) for n in range(self.config.smtp.connections)]
            threads = [threading.Thread(target=self._thread, args=(iid, name), daemon=True) for name in names]
            for th in threads:
                th.start()
            with self._heartbeat(iid, names):
                for th in threads:
                    th.join()
            if self.state.stop.is_set() or not wait:
                break
            with self.engine.connect() as conn, self._sqlite_turn, conn.begin():
                if self.state.done == before:  # stuck: rows may be held by a worker that stopped renewing
                    _recover(conn, iid, self.clock.now())
                due = outbox.next_due(conn, iid, self.clock.now())
            if due is None:
                break
            # a round that moved nothing (hourly budget spent, rows held by other workers) must not spin
            floor = IDLE_SECONDS if self.state.done == before else 0.0
            self.clock.sleep(max(floor, (due - self.clock.now()).total_seconds()), self.state.stop)

    @contextlib.contextmanager
    def _heartbeat(self, iid: int, names: list[str]) -> Iterator[None]:
        """While the threads run: renew their claims every quarter lease, and once a lease recover what dead
        workers left. Renewing goes by the ids this process holds (primary key), recovering reads the issue's
        claims: measured on 100,000 messages with two workers, doing both every quarter lease through an
        index of claimed rows read 283 index entries per message delivered (its dead entries)."""
        done = threading.Event()

        def beat() -> None:
            beats = 0
            while not done.wait(self.lease.total_seconds() / 4):
                beats += 1
                try:
                    with self.engine.connect() as conn, self._sqlite_turn, conn.begin():
                        now = self.clock.now()
                        outbox.renew(conn, self._held_ids(), names, now + self.lease)
                        if beats % 4 == 0:
                            _recover(conn, iid, now, names)
                except Exception:  # the database is away: the sending threads will say so; try again
                    log.exception("heartbeat: the claims could not be renewed")

        beat_thread = threading.Thread(target=beat, daemon=True, name="heartbeat")
        beat_thread.start()
        try:
            yield
        finally:
            done.set()
            beat_thread.join()

    def _thread(self, iid: int, name: str) -> None:
        """A sending thread: it never dies silently; what stops it is recorded as the send's fault."""
        try:
            self._serve(iid, name)
        except SendFault as exc:
            self.state.pause(str(exc))
        except Exception as exc:  # not one row's fault (each row's is caught in _attempt)
            log.exception("sending thread %s stopped", name)
            self.state.pause(f"a sending thread stopped: {type(exc).__name__}: {exc}")

    def _serve(self, iid: int, worker: str) -> None:
        """Claim, begin, deliver, record, over one held connection and line.

        ``[smtp] commit_every`` = 1 (the default): claim a batch, then begin each row in its own commit,
        which also writes the previous row's result, so a message costs one commit and a process that
        dies leaves at most one row per connection whose fate is unknown (the one in flight, or the one
        just sent whose result was not yet written). N > 1: claim and begin N rows in one update (a
        row version fewer), deliver them, and write their results with the next claim: a commit per N
        messages, at most N unknown rows per connection. Rows begun but not attempted when the send
        stops or faults go back to the queue, so only a crash makes them unknown.
        """
        line = self.mailer.open()
        done: _Done = []
        with self.engine.connect() as conn:
            try:
                step = self.config.smtp.commit_every
                while not self.state.stop.is_set():
                    if step > 1:  # claim and begin ``step`` rows in one update: one row version fewer each
                        if not self._hour_left(conn, done):
                            return  # the hour's budget is spent, by any worker: not waited out in memory
                        self.limit.wait(self.state.stop)
                    rows = self._claim(conn, iid, worker, done, step if step > 1 else 0)
                    if not rows:
                        return
                    if step > 1:
                        self._deliver(conn, line, rows, done)
                        continue
                    for row in rows:
                        if self.state.stop.is_set():
                            break
                        self._one(conn, worker, line, row, done)
            finally:
                line.close()
                with self._write(conn, done):
                    outbox.release(conn, iid, worker)

    def _hour_left(self, conn: sa.Connection, done: _Done) -> bool:
        """Whether ``rate_per_hour`` (counted in the database, across workers) lets another message go now.
        Asked before the in-memory wait: a worker whose own sends spent the hour would otherwise sleep it out
        (measured: two workers at rate_per_hour = 30 and commit_every = 8 hung for the hour, one having sent 30)."""
        if not self.config.smtp.rate_per_hour:
            return True
        with self._write(conn, done):
            return outbox.hourly_budget(conn, self.config.smtp.rate_per_hour, self.clock.now()) > 0

    def _claim(self, conn: sa.Connection, iid: int, worker: str, done: _Done, begin: int = 0) -> list[Row]:
        """Claim a batch (``CLAIM_BATCH``), or with ``begin`` claim and begin that many rows in one update."""
        with self._write(conn, done):
            state = IssueState(conn.execute(_ISSUE_STATE, {"iid": iid}).scalar_one())
            if state is not IssueState.SENDING:
                self.state.halt(state)
                return []
            size, now = begin or CLAIM_BATCH, self.clock.now()
            if self.config.smtp.rate_per_hour:
                size = min(size, outbox.hourly_budget(conn, self.config.smtp.rate_per_hour, now))
            domain = self.mailer.sender.domain if begin else None
            rows = outbox.claim(conn, iid, worker, size, self.lease, now, self.due_by, domain) if size else []
        with self._held_lock:
            self._held[worker] = [row.id for row in rows]
        return rows

    def _held_ids(self) -> list[int]:
        """The rows this process's threads claimed last (those still claimed are what renewing extends)."""
        with self._held_lock:
            return [row_id for ids in self._held.values() for row_id in ids]

    @contextlib.contextmanager
    def _write(self, conn: sa.Connection, done: _Done) -> Iterator[None]:
        """A write transaction that first records the result still pending on this connection.

        On SQLite the writers of a send take turns through a lock (store/turn.py): waiting on it costs
        microseconds, where SQLite's own busy handler sleeps whole milliseconds between retries.
        """
        with self._sqlite_turn, conn.begin():
            if done:
                self._record(conn, done)
                done.clear()
            yield

    def _record(self, conn: sa.Connection, done: _Done) -> None:
        """The pending results, each as ``policy.after`` says, in one go; hard bounces suppress their subscriber."""
        now = self.clock.now()
        verdicts = [(row, result, self.policy.after(result.outcome, row.attempts + 1)) for row, result in done]
        outbox.record_many(conn, [(row, v.state, result, now + v.retry_in if v.retry_in else None)
                                  for row, result, v in verdicts], now)
        for row, _, verdict in verdicts:
            if verdict.bounced and row.subscriber_id is not None:
                audience.mark_bounced(conn, row.subscriber_id, now)

    def _one(self, conn: sa.Connection, worker: str, line: Line, row: Row, done: _Done) -> None:
        """Mark one row ``sending`` (in the commit that also writes the results still pending), then send it.

        The rate-limit wait comes first: a row waiting on it is not in flight.
        """
        mid = self.mailer.new_message_id()
        self.limit.wait(self.state.stop)
        with self._write(conn, done):
            began = outbox.begin(conn, row.id, worker, self.lease, self.clock.now(), mid)
        if began:
            self._deliver(conn, line, [dataclasses.replace(row, message_id=mid)], done)

    def _deliver(self, conn: sa.Connection, line: Line, began: list[Row], done: _Done) -> None:
        """Send rows already marked ``sending``; those not attempted when the send stops or faults are queued
        again. The first row's rate-limit wait was taken before its mark."""
        for n, row in enumerate(began):
            if self.state.stop.is_set() or (n and not self._wait_turn()):
                self._requeue(conn, began[n:], done)
                return
            assert row.message_id is not None  # set when the row was begun: the id the outbox keeps is the one sent
            try:
                result = self._attempt(line, row, row.message_id)
            except SendFault:
                self._requeue(conn, began[n:], done)
                raise
            done.append((row, result))
            self.state.count(result.outcome is Outcome.SENT, self.config.smtp.pause_after_errors)
            self.on_progress(1)

    def _wait_turn(self) -> bool:
        """The rate limit between two rows of one chunk; False when the send was stopped meanwhile."""
        self.limit.wait(self.state.stop)
        return not self.state.stop.is_set()

    def _requeue(self, conn: sa.Connection, rows: list[Row], done: _Done) -> None:
        with self._write(conn, done):
            for row in rows:
                outbox.requeue(conn, row.id)

    def _attempt(self, line: Line, row: Row, mid: str) -> Result:
        """Build and send one row's message; whatever goes wrong is this row's result, with the reason."""
        try:
            prepared = self.groups.get(row.group_key)
            if prepared is None:
                raise LookupError(f"group {row.group_key!r} has no paper to show")
            msg = self.mailer.copy(prepared, self.links, Recipient(row.subscriber_id, row.email, row.name, row.id), mid)
        except Exception as exc:
            log.warning("row %d: the message could not be built: %s: %s", row.id, type(exc).__name__, exc)
            return Result(Outcome.FAILED, None, f"the message could not be built: {type(exc).__name__}: {exc}")
        try:
            return line.send(msg)
        except SendFault:
            raise
        except Exception as exc:  # a transport's bug must not end the thread: retried, then failed
            log.exception("row %d: unexpected error while sending", row.id)
            line.close()
            return Result(Outcome.DEFERRED, None, f"unexpected error while sending: {type(exc).__name__}: {exc}")
