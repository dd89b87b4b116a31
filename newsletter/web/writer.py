"""One writer for the webhooks' notifications: what arrives together is stored in one transaction (group commit),
and each request is answered only once its own batch is committed, so a 200 means the notification is stored.

    request ─► GroupCommit.put: (provider, events) pending ─► await its future
    event loop: a drain task takes all that is pending (up to BATCH) ─► Writer: one transaction in its thread
              ─► commit ─► each request's future settled; meanwhile the next requests pend for the next batch

A batch the database refuses is redone one request per transaction, so only the request at fault fails (its
provider sends it again) and the rest are stored. The batches are cut in the event loop, where the requests are:
a writer thread that took whatever was queued as soon as it woke took batches half as large (8 at 16 requests in
flight) and traded the GIL with the event loop for each: 2,000-2,200 notifications/s against 2,400-2,800.

The Writer is one thread of its own, not Starlette's thread pool, and keeps one connection while it is busy: a
hop through anyio's worker (its capacity limiter, its cancel scope) and a pool checkout and reset (22 µs) around
each transaction are paid for every notification when requests come one at a time; without them 870-945 µs of
CPU a notification became 718-797 (``bench/hooks.py``, the two alternately in the same minutes). The thread ends,
giving its connection back, after IDLE seconds with nothing to write; the next batch starts it again.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import Connection

from ..feedback.ingest import Feedback, Handled, Notice
from ..feedback.providers import Event

BATCH = 200   # requests stored per transaction at most
IDLE = 5.0    # seconds the writer thread waits for a batch before it ends (and gives its connection back)
Item = tuple[str, list[Event]]  # (provider, its events) of one request
Result = list[Handled] | Exception
Pending = tuple[Item, "asyncio.Future[list[Handled]]"]
T = TypeVar("T")


class GroupCommit:
    """Stores the events of requests that arrive together in one transaction (up to BATCH requests).

    The first request with nothing being written starts a drain task; requests arriving meanwhile pend and wait
    for their batch, which the Writer stores."""

    def __init__(self, make: Callable[[], Feedback]) -> None:
        self.writer = Writer(make)
        self._pending: list[Pending] = []
        self._task: asyncio.Task[None] | None = None

    async def put(self, name: str, events: list[Event]) -> list[Handled]:
        """Store one request's events; returns once they are committed (raises what refused them)."""
        if not events:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Handled]] = loop.create_future()
        self._pending.append(((name, events), future))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = asyncio.create_task(self._drain())  # (a test client may run each request in its own loop)
        return await future

    async def _drain(self) -> None:
        batch: list[Pending] = []
        try:
            while self._pending:
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                results = await self.writer.write([item for item, _ in batch])
                for (_, future), result in zip(batch, results, strict=True):
                    _settle(future, result)
                batch = []
        finally:
            for _, future in batch:  # cancelled while writing: those requests fail, their providers retry
                _settle(future, RuntimeError("the writer stopped"))


class Writer:
    """One thread that writes batches, each in one transaction, on one ``Feedback`` and one connection."""

    def __init__(self, make: Callable[[], Feedback]) -> None:
        self.make = make
        self._feedback: Feedback | None = None
        self._conn: Connection | None = None
        self._queue: queue.SimpleQueue[tuple[list[Item], asyncio.Future[list[Result]]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def write(self, items: list[Item]) -> asyncio.Future[list[Result]]:
        """Hand ``items`` to the thread; the future (of the running loop) has each item's result or exception."""
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._queue.put((items, future))
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="newsletter-hooks-writer", daemon=True)
                self._thread.start()
        return future

    def _run(self) -> None:
        """Write batches until none has come for IDLE seconds; only this thread uses the connection."""
        try:
            while (job := self._next()) is not None:
                items, future = job
                _hand(future, self.store(items))
        finally:  # ended otherwise than idle (the interpreter going down): the next batch starts a new thread
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
                    self._close()

    def _next(self) -> tuple[list[Item], asyncio.Future[list[Result]]] | None:
        """The next batch, waiting up to IDLE for it; None to end, decided under the lock ``write`` starts a thread
        under, so a batch handed over meanwhile is never left unwritten."""
        while True:
            try:
                return self._queue.get(timeout=IDLE)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        self._close()
                        return None

    def store(self, items: list[Item]) -> list[Result]:
        """Each item's result or exception, all in one transaction; if it fails, each alone. Never raises."""
        try:
            feedback = self._feedback = self._feedback or self.make()
            conn = self._conn = self._conn or feedback.engine.connect()
        except Exception as exc:  # the database is unreachable: every request fails, and is sent again
            return [exc for _ in items]
        try:
            with conn.begin():
                return [_apply(feedback, conn, item) for item in items]
        except Exception:
            results = [_alone(feedback, conn, item) for item in items]
            self._close()  # whatever broke (a lost connection too), the next batch starts on a fresh one
            return results

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a connection already lost: nothing to give back
                pass


def _apply(feedback: Feedback, conn: Connection, item: Item) -> list[Handled]:
    name, events = item
    return [feedback.apply_proofs(conn, Notice(e.raw, name), e.verdict, e.found) for e in events]


def _alone(feedback: Feedback, conn: Connection, item: Item) -> Result:
    try:
        with conn.begin():
            return _apply(feedback, conn, item)
    except Exception as exc:
        return exc


def _hand(future: asyncio.Future[list[Result]], results: list[Result]) -> None:
    """Settle ``future`` in its own event loop, from the writer's thread; a loop closed meanwhile wants nothing."""
    try:
        future.get_loop().call_soon_threadsafe(_settle, future, results)
    except RuntimeError:  # the loop is closed
        pass


def _settle(future: asyncio.Future[T], result: T | Exception) -> None:
    """Hand a waiter its result, unless it is gone (cancelled, or its event loop closed)."""
    if future.done() or future.get_loop().is_closed():
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)
