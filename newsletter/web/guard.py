"""What protects the pages: CSRF tokens, the sign-up limits, security headers, loopback checks, log redaction.

CSRF is a signed double submit: a random value in a cookie and, in each form, that value signed
with the app's secret (itsdangerous, its own salt). A cross-site page can make the browser send the
cookie but can neither read it nor forge the signature, so a form POST without a matching pair is
refused. The RFC 8058 one-click unsubscribe is the one POST without it: a mail provider sends it,
and the signed token in its URL is what authorises it.

Who is asking is the socket's peer, unless that peer is one of ``[web] trusted_proxies``: only then is
its ``X-Forwarded-For`` believed (uvicorn's ProxyHeadersMiddleware takes the right-most address no
trusted proxy added). Measured before: uvicorn trusted any loopback peer's header, so 200 sign-ups
with 200 forged values each counted as a new client and sent 200 mails. The Host header is checked
too: only base_url's host and loopback are answered, and no redirect is built from it.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy.engine import Connection
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from ..config import Config
from ..links import redact_logger
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


HOUR = timedelta(hours=1)
CONFIRM_LOCK = 0x6E6C6366  # pg_advisory_xact_lock key ("nlcf"): one claimer at a time counts the hourly cap


def claim_confirmation(conn: Connection, subscriber_id: int, now: datetime, every: timedelta,
                       per_hour: int | None = None) -> bool:
    """Whether a confirmation link may go to this subscriber now; True records ``now`` as its last one.

    Measured before: five sign-up POSTs for one address sent five mails within seconds, and the
    per-client limit above does nothing against many clients; nor did anything stop 200 sign-ups of
    200 addresses sending 200 mails in 9 s. So the row must be due and, with ``per_hour``, fewer than
    that many links may have gone to any address in the last hour (``sent_last_hour``). One
    conditional UPDATE decides, so two processes claiming at once cannot both win: SQLite runs one
    writer at a time, and on PostgreSQL an advisory lock makes count-then-claim one step.
    """
    s = tables.subscribers.c
    due = sa.or_(s.confirm_sent_at.is_(None), s.confirm_sent_at <= now - every)
    claim = tables.subscribers.update().where(s.id == subscriber_id, due).values(confirm_sent_at=now)
    if per_hour is not None:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CONFIRM_LOCK})
        claim = claim.where(_sent_since(now - HOUR).scalar_subquery() < per_hour)
    return conn.execute(claim).rowcount == 1


def sent_last_hour(conn: Connection, now: datetime) -> int:
    """Confirmation links sent in the hour before ``now``, to any address, by any process.

    Each row keeps only its latest link, so an address sent two within the hour (``confirm_every``
    under 60 minutes) counts once: the cap is then looser by at most that factor.
    """
    return conn.scalar(_sent_since(now - HOUR)) or 0


def _sent_since(since: datetime) -> sa.Select[int]:
    s = tables.subscribers.c
    return sa.select(sa.func.count()).select_from(tables.subscribers).where(s.confirm_sent_at > since)


def client_ip(request: Request) -> str:
    return request.client.host if request.client else ""


FORWARDING = ("x-forwarded-for", "forwarded", "x-real-ip")


def is_local(request: Request) -> bool:
    """A request from this machine itself: a loopback peer that forwards for no one. A reverse proxy on this host
    is a loopback peer too, but it names its client in X-Forwarded-For (or Forwarded), trusted or not."""
    return is_loopback(client_ip(request)) and not any(h in request.headers for h in FORWARDING)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name (a Unix socket, Starlette's "testclient") is not an address we trust


LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


def allowed_hosts(base_url: str) -> list[str]:
    """The Host headers answered: base_url's host (every link in the mails names it) and loopback.

    Measured before: ``GET /archive/`` with ``Host: evil.example`` was redirected to
    ``http://evil.example/archive``, a Location a shared cache would hand to everyone.
    """
    host = urlsplit(base_url).hostname or ""
    return [f"[{host}]" if ":" in host else host, *LOOPBACK_HOSTS]


def proxy_networks(proxies: list[str]) -> list[str]:
    """``[web] trusted_proxies`` as networks (``10.0.0.1/8`` → ``10.0.0.0/8``): uvicorn would take a
    network with host bits set for a literal name and trust nothing."""
    return [str(ipaddress.ip_network(p, strict=False)) for p in proxies]


ACCESS_LOG = "uvicorn.access"


def redact_access_log() -> None:
    """Take link tokens out of uvicorn's access log (``links.RedactTokens``), once, after uvicorn configured logging.

    Without it every unsubscribe and preferences link clicked was written to the log in working
    form: whoever reads the log could unsubscribe the reader or change their name.
    """
    redact_logger(ACCESS_LOG)


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


def middleware(config: Config) -> list[Middleware]:
    """Security headers on every answer (a refused Host's 400 too), the Host check, then the client address."""
    stack = [Middleware(SecurityHeaders),
             Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(config.newsletter.base_url),
                        www_redirect=False)]
    if config.web.trusted_proxies:
        stack.append(Middleware(ProxyHeadersMiddleware, trusted_hosts=proxy_networks(config.web.trusted_proxies)))
    return stack
