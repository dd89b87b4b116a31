"""What protects the pages: CSRF tokens, the sign-up limits, security headers, loopback checks, log redaction.

CSRF is a signed double submit: a random value in a cookie and, in each form, that value signed
with the app's secret (itsdangerous, its own salt). A cross-site page can make the browser send the
cookie but can neither read it nor forge the signature, so a form POST without a matching pair is
refused. The RFC 8058 one-click unsubscribe is the one POST without it: a mail provider sends it,
and the signed token in its URL is what authorises it.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

import sqlalchemy as sa
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..store import tables

CSRF_COOKIE = "nl_csrf"
CSRF_FIELD = "csrf"
CSRF_MAX_AGE = 24 * 3600


class Csrf:
    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="web-csrf")

    @staticmethod
    def cookie_value(request: Request) -> tuple[str, bool]:
        """(the browser's CSRF cookie value, whether it is new and must be set)."""
        value = request.cookies.get(CSRF_COOKIE, "")
        if len(value) == 32 and value.isalnum():
            return value, False
        return secrets.token_hex(16), True

    def field_value(self, cookie: str) -> str:
        return self._serializer.dumps(cookie)

    def valid(self, request: Request, submitted: object) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not isinstance(submitted, str):
            return False
        try:
            signed = self._serializer.loads(submitted, max_age=CSRF_MAX_AGE)
        except BadData:
            return False
        return isinstance(signed, str) and hmac.compare_digest(signed, cookie)


class SlidingWindow:
    """At most ``limit`` events per ``window`` seconds per key, in this process's memory only.

    Several server processes each keep their own count, so the effective limit is per process.
    """

    def __init__(self, limit: int, window: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.clock = limit, window, clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """Count one event for ``key``; False when it is over the limit (the event is not counted)."""
        now = self.clock()
        with self._lock:
            if len(self._hits) > 10_000:
                self._forget_idle(now)
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            return True

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - self.window]:
            del self._hits[key]


def claim_confirmation(conn: Connection, subscriber_id: int, now: datetime, every: timedelta) -> bool:
    """Whether a confirmation link may go to this subscriber now; True records ``now`` as its last one.

    Measured before: five sign-up POSTs for one address sent five mails within seconds, and the
    per-client limit above does nothing against many clients. One conditional UPDATE decides, so
    two processes (or workers) claiming at once cannot both win.
    """
    s = tables.subscribers.c
    due = sa.or_(s.confirm_sent_at.is_(None), s.confirm_sent_at <= now - every)
    claimed = conn.execute(tables.subscribers.update().where(s.id == subscriber_id, due).values(confirm_sent_at=now))
    return claimed.rowcount == 1


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name (a Unix socket, Starlette's "testclient") is not an address we trust


# The signed parts of links that act for a subscriber, and the preview token: never written to a log.
_TOKEN_SEGMENT = re.compile(r"(/(?:confirm|unsubscribe|resubscribe|preferences)/)[^/?#\s\"]+")
_TOKEN_QUERY = re.compile(r"([?&]token=)[^&#\s\"]+")
ACCESS_LOG = "uvicorn.access"


def redact(text: str) -> str:
    """``text`` with every link token replaced by "…": ``/unsubscribe/…``, ``?token=…``."""
    return _TOKEN_QUERY.sub(r"\1…", _TOKEN_SEGMENT.sub(r"\1…", text))


class RedactTokens(logging.Filter):
    """Takes the tokens out of uvicorn's access log lines, whose arguments hold the request path.

    Without it every unsubscribe and preferences link clicked was written to the log in working
    form: whoever reads the log could unsubscribe the reader or change their name.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def redact_access_log() -> None:
    """Put ``RedactTokens`` on uvicorn's access logger, once (after uvicorn has configured logging)."""
    logger = logging.getLogger(ACCESS_LOG)
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())


# Pages carry no script at all. Inline styles are allowed because the archive shows the email's
# HTML, whose styles are inline by design (premailer).
CSP = ("default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' https: data:; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
FRAME_OK = "frame-ancestors 'self'"


class SecurityHeaders:
    """Adds CSP and friends to every response unless the endpoint set its own CSP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                names = {k.lower() for k, _ in headers}
                defaults = {b"content-security-policy": CSP.encode(), b"x-frame-options": b"DENY",
                            b"x-content-type-options": b"nosniff", b"referrer-policy": b"no-referrer",
                            b"cache-control": b"no-store"}
                headers.extend((k, v) for k, v in defaults.items() if k not in names)
            await send(message)

        await self.app(scope, receive, with_headers)
