"""What every console page shares: the signed-in person (``who``), pages in the console's layout with their CSRF
field, a form that must carry it, and the audit line every action writes in its own transaction.

Each group of pages is a ``Section`` (accounts, dashboard, issues, subscribers, bounces): it holds the one
``ConsoleBase`` and lists its routes; ``console/__init__.py`` puts them together. Pages call the same library
functions as the CLI (audience, lifecycle, campaign, feedback, accounts); no rule is written here twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy.engine import Engine
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from ... import accounts, audit
from ...clock import SYSTEM, Clock
from ...config import Config
from ..guard import CSRF_FIELD, SlidingWindow
from ..pages import STATIC, Pages
from .auth import LOGIN_PER_WINDOW, LOGIN_WINDOW, Sessions, Who

T = TypeVar("T")
# Pages may run the console's own script (the live send progress); nothing else, and no inline script.
CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'self'")
NAV = (("dashboard", "Dashboard", "editor"), ("issues", "Issues", "editor"),
       ("subscribers", "Subscribers", "operator"), ("bounces", "Bounces", "operator"),
       ("audit", "Audit log", "operator"), ("users", "Users & tokens", "admin"))


class BadForm(Exception):
    """A console form without a valid CSRF field: answered 403, nothing done."""


class ConsoleBase(Pages):
    """The console's shared state: sessions, the login limit, the clock, and how its pages are made."""

    def __init__(self, config: Config, engine: Engine, now: Clock = SYSTEM,
                 monotonic: Callable[[], float] | None = None) -> None:
        super().__init__(config, engine)
        self.now = now
        self.sessions = Sessions(self.links.secret, config.newsletter.base_url.startswith("https://"))
        self.login_limit = (SlidingWindow(LOGIN_PER_WINDOW, LOGIN_WINDOW, monotonic) if monotonic
                            else SlidingWindow(LOGIN_PER_WINDOW, LOGIN_WINDOW))

    async def who(self, request: Request) -> Who | None:
        """The signed-in user, if the session cookie is ours, unexpired, and its epoch is the user's."""
        claim = self.sessions.claim(request)
        if claim is None:
            return None
        user = await self.db(accounts.user, claim[0])
        if user is None or user.session_epoch != claim[1]:
            return None
        return Who(f"user:{user.name}", user.role, user)

    def admin_page(self, request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        """A page of templates/admin in the console's layout, its navigation cut to what the role may see."""
        who: Who | None = getattr(request.state, "who", None)
        nav = [(path, label) for path, label, role in NAV if who and accounts.allows(who.role, role)]
        response = self.page(request, f"admin/{name}", status, who=who, nav=nav, admin=self.root(request), **ctx)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Cache-Control"] = "no-store"
        return response

    @staticmethod
    def root(request: Request) -> str:
        """Where the console is mounted (``/admin``), for links and form actions."""
        return str(request.scope.get("root_path", ""))

    def login_form(self, request: Request, status: int = 200, error: str = "") -> HTMLResponse:
        return self.admin_page(request, "login.html.j2", status, title="Sign in", error=error,
                               next=quote(request.url.path.removeprefix(self.root(request)), safe="/"))

    def refused(self, request: Request, who: Who, role: str) -> HTMLResponse:
        request.state.who = who
        return self.admin_page(request, "message.html.j2", 403, title="Not for your role",
                               text=f"This page needs the {role} role; you are {who.role}.")

    def see_other(self, request: Request, path: str) -> RedirectResponse:
        """After a POST, back to a console page (relative to the mount: never from the Host header)."""
        return RedirectResponse(f"{self.root(request)}{path}", 303)

    async def checked_form(self, request: Request, max_fields: int = 50) -> FormData:
        form = await request.form(max_files=0, max_fields=max_fields)
        if not self.csrf.valid(request, form.get(CSRF_FIELD)):
            raise BadForm
        return form

    async def act(self, who: Who, action: str, target: str, fn: Callable[..., T], *args: Any,
                  detail: str = "") -> T:
        """``fn(conn, *args)`` and its audit line, in one transaction (both or neither)."""
        return await self.db(audit.audited(fn, who.actor, action, target, self.now.now(), detail), *args)

    def stamp(self) -> datetime:
        return self.now.now()

    @staticmethod
    def static(name: str) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint serving templates/admin/``name`` (the console's stylesheet and its one script)."""
        media = "text/css" if name.endswith(".css") else "text/javascript"

        async def serve(request: Request) -> Response:
            body = (STATIC / "admin" / name).read_text(encoding="utf-8")
            return Response(body, media_type=media, headers={"Cache-Control": "public, max-age=3600"})
        return serve


class Section:
    """A group of console pages over the one ``ConsoleBase`` (``c``); ``routes`` lists them."""

    def __init__(self, console: ConsoleBase) -> None:
        self.c = console

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError


async def bad_form(request: Request, exc: Exception) -> Response:
    """A form without its CSRF field: refused, nothing done."""
    return HTMLResponse("<!doctype html><title>Refused</title><p>The form was too old or did not come from this "
                        "site. Reload the page and send it again.</p>", 403)
