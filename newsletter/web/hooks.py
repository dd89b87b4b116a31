"""POST /hooks/ses, /hooks/mailgun, /hooks/postmark, /hooks/sendgrid: the providers' notifications of bounces and
complaints, into the same feedback path and under the same proof rule as a mailed notice.

They are reachable from the internet through the proxy, so a request is verified before anything in it is read
(``feedback/providers``): its body capped at [bounces] hook_max_bytes (413), then the provider's signature or
credentials (403 and one log line if they fail: nothing changes). Only then are its events applied, by
``Feedback.apply_proofs``: a recipient counts only where the Message-ID (or VERP address, signed link) the provider
echoes back is one the engine sent to that very address; anyone else named is logged unproven. A provider not in
[bounces] providers has no endpoint (404). Answers are JSON; 2xx only once the events are stored, so a provider
retries what was not.

Notifications that arrive together are stored together (``writer.GroupCommit``): one writer thread, and one
transaction for whatever came in while the previous one was being written. Measured with ``bench/hooks.py`` (16
requests in flight, this 2-core machine, shared): with a thread and a transaction each, the requests queued for
SQLite's one writer, 300-330 notifications/s at 2.9-3.4 ms of CPU each; grouped, 0.8-1.3 thousand/s at 0.7-1.0 ms.
Then (2026-12-04, the old code and the new alternately, four rounds, a quiet minute): the writer a thread of its
own with its connection kept, a status change and the log row on the DBAPI cursor (``audience/events.py``,
``feedback/ingest.py``), 2,550-2,610/s -> 2,810-3,190/s at 16 in flight (372-382 -> 302-345 µs of CPU each) and
1,040-1,070/s -> 1,240-1,360/s one at a time (859-899 -> 671-733 µs), the reason read for each failure included.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..clock import SYSTEM, Clock
from ..config import Config
from ..feedback import providers
from ..feedback.ingest import Feedback
from ..feedback.providers import Provider, Received, Refused, Unavailable, Unreadable, WouldBlock
from ..feedback.providers.sns import Fetch
from .guard import SlidingWindow, client_ip
from .writer import GroupCommit

log = logging.getLogger("newsletter.hooks")
INLINE_MAX = 64 << 10   # bodies up to this are verified in the event loop (an SES or Mailgun notification: a few KB)
REFUSALS_LOGGED = 60    # refusal lines a minute per endpoint; past that they are counted, then said in one line


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
