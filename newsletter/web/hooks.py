"""POST /hooks/ses, /hooks/mailgun, /hooks/postmark, /hooks/sendgrid: the providers' notifications of bounces and
complaints, into the same feedback path and under the same proof rule as a mailed notice.

They are reachable from the internet through the proxy, so a request is verified before anything in it is read
(``feedback/providers``): its body capped at [bounces] hook_max_bytes (413), then the provider's signature or
credentials (403 and one log line if they fail: nothing changes). Only then are its events applied, by
``Feedback.apply_proofs``: a recipient counts only where the Message-ID (or VERP address, signed link) the provider
echoes back is one the engine sent to that very address; anyone else named is logged unproven. A provider not in
[bounces] providers has no endpoint (404). Answers are JSON; 2xx only once the events are stored, so a provider
retries what was not.

Notifications that arrive together are stored together (``GroupCommit``): one writer, and one transaction for
whatever came in while the previous one was being written. Measured with ``bench/hooks.py`` (16 requests in
flight, this 2-core machine, shared): with a thread and a transaction each, the requests queued for SQLite's one
writer, 300-330 notifications/s at 2.9-3.4 ms of CPU each; grouped, 0.8-1.3 thousand/s at 0.7-1.0 ms.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection, Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..clock import SYSTEM, Clock
from ..config import Config
from ..feedback import providers
from ..feedback.ingest import Feedback, Handled, Notice
from ..feedback.providers import Event, Provider, Received, Refused, Unavailable, Unreadable, WouldBlock
from ..feedback.providers.sns import Fetch
from .guard import SlidingWindow, client_ip

log = logging.getLogger("newsletter.hooks")
BATCH = 200             # requests stored per transaction at most
INLINE_MAX = 64 << 10   # bodies up to this are verified in the event loop (an SES or Mailgun notification: a few KB)
REFUSALS_LOGGED = 60    # refusal lines a minute per endpoint; past that they are counted, then said in one line
Item = tuple[str, list[Event]]  # (provider, its events) of one request


class Hooks:
    """The endpoints' state: the configured providers and the one writer behind them."""

    def __init__(self, config: Config, engine: Engine, clock: Clock = SYSTEM, fetch: Fetch | None = None) -> None:
        self.providers = providers.configured(config, clock, fetch)
        self.cap = config.bounces.hook_max_bytes
        self.store = GroupCommit(lambda: Feedback(config, engine, clock))
        self._refusals = SlidingWindow(REFUSALS_LOGGED, 60.0)
        self._unlogged: dict[str, int] = {}

    async def receive(self, request: Request) -> JSONResponse:
        """One provider request: verify, read, apply; the answer says how many events were applied."""
        provider = self.providers.get(request.path_params["provider"])
        if provider is None:
            return _answer(404, error="no such endpoint")
        body = await _body(request, self.cap)
        if body is None:
            return self._refuse(request, provider.name, 413, f"a body over {self.cap} bytes")
        try:
            received = await _verified(provider, body, request)
        except Refused as exc:
            return self._refuse(request, provider.name, 403, str(exc))
        except Unreadable as exc:
            log.warning("%s: a verified notification that cannot be read: %s; nothing done", provider.name, exc)
            return _answer(400, error="unreadable")
        except Unavailable as exc:
            log.warning("%s: cannot verify just now: %s", provider.name, exc)
            return _answer(503, error="try again later")
        if received.note:
            log.info("%s: %s", provider.name, received.note)
        try:
            handled = await self.store.put(provider.name, received.events)
        except Exception as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else ""
            log.error("%s: %d events not stored (%s: %s); the provider will send them again", provider.name,
                      len(received.events), type(exc).__name__, reason)
            return _answer(500, error="not stored")
        return _answer(200, applied=len(handled), skipped=received.skipped)

    def _refuse(self, request: Request, name: str, status: int, why: str) -> JSONResponse:
        """One line per refusal, up to REFUSALS_LOGGED a minute per endpoint: a stranger cannot fill the log."""
        if self._refusals.allow(name):
            more = self._unlogged.pop(name, 0)
            log.warning("%s: refused (%d) a request from %s: %s; nothing done%s", name, status,
                        client_ip(request) or "?", why, f" ({more} more refusals not logged)" if more else "")
        else:
            self._unlogged[name] = self._unlogged.get(name, 0) + 1
        return _answer(status, error="refused" if status == 403 else "too large")


class GroupCommit:
    """Stores the events of requests that arrive together in one transaction (up to BATCH requests).

    The first request with nothing being written starts a drain task; requests arriving meanwhile queue and wait
    for their batch. The writing happens in the thread pool with one ``Feedback``, used by one thread at a time. A
    batch the database refuses is redone one request per transaction, so only the request at fault fails (its
    provider sends it again) and the rest are stored.
    """

    def __init__(self, make: Callable[[], Feedback]) -> None:
        self.make = make
        self._feedback: Feedback | None = None
        self._pending: list[tuple[Item, asyncio.Future[list[Handled]]]] = []
        self._task: asyncio.Task[None] | None = None

    async def put(self, name: str, events: list[Event]) -> list[Handled]:
        if not events:
            return []
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Handled]] = loop.create_future()
        self._pending.append(((name, events), future))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = asyncio.create_task(self._drain())  # (a test client may run each request in its own loop)
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[Item, asyncio.Future[list[Handled]]]] = []
        try:
            while self._pending:
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                results = await run_in_threadpool(self._write, [item for item, _ in batch])
                for (_, future), result in zip(batch, results, strict=True):
                    _settle(future, result)
                batch = []
        finally:
            for _, future in batch:  # cancelled while writing: those requests fail, their providers retry
                _settle(future, RuntimeError("the writer stopped"))

    def _write(self, items: list[Item]) -> list[list[Handled] | Exception]:
        """Each item's result or exception: this never raises, so no request is left waiting."""
        try:
            feedback = self._feedback = self._feedback or self.make()
        except Exception as exc:  # the database is unreachable: every request fails, and is sent again
            return [exc for _ in items]
        try:
            with feedback.engine.begin() as conn:
                return [_apply(feedback, conn, item) for item in items]
        except Exception:
            return [self._alone(feedback, item) for item in items]

    @staticmethod
    def _alone(feedback: Feedback, item: Item) -> list[Handled] | Exception:
        try:
            with feedback.engine.begin() as conn:
                return _apply(feedback, conn, item)
        except Exception as exc:
            return exc


def _apply(feedback: Feedback, conn: Connection, item: Item) -> list[Handled]:
    name, events = item
    return [feedback.apply_proofs(conn, Notice(e.raw, name), e.verdict, e.found) for e in events]


def _settle(future: asyncio.Future[list[Handled]], result: list[Handled] | Exception) -> None:
    """Hand a request its result, unless it is gone (cancelled, or its event loop closed)."""
    if future.done() or future.get_loop().is_closed():
        return
    if isinstance(result, Exception):
        future.set_exception(result)
    else:
        future.set_result(result)


async def _verified(provider: Provider, body: bytes, request: Request) -> Received:
    """The provider's reading of a request it has verified. A small body is verified right here in the event loop
    unless that needs the network (``WouldBlock``): a thread hop cost more than an HMAC or a cached RSA check
    (bench/hooks.py: about 0.9 -> 0.7 ms of CPU a notification). A large one (a SendGrid batch) goes to the pool."""
    if len(body) <= INLINE_MAX:
        try:
            return provider.receive(body, request.headers, False)
        except WouldBlock:
            pass
    return await run_in_threadpool(provider.receive, body, request.headers, True)


async def _body(request: Request, cap: int) -> bytes | None:
    """The body, or None as soon as it is over ``cap`` bytes (by its Content-Length or as it streams in)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, **fields: Any) -> JSONResponse:
    return JSONResponse({"ok": status == 200, **fields}, status)
