"""The Starlette app: sign-up (signup.py), unsubscribe, preferences, archive, feeds, the editor preview and the
tracked paper links (clicks.py).

Only base_url's host and loopback are answered, and every redirect is built from base_url, never from
the request's Host header (``guard.middleware``, ``Web.no_route``). The shared helpers (pages,
database, signed links) are in pages.py.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Match, Mount, Route, Router
from starlette.types import Receive, Scope, Send

from .. import audience, store
from ..areas import all_groups, group_key
from ..areas import group as area_group
from ..audience import Subscriber
from ..clock import SYSTEM, Clock
from ..config import Config
from ..errors import AudienceError, NewsletterError
from ..links import PREFERENCES, UNSUBSCRIBE
from ..render import Renderer, preview_slots
from . import feeds, guard, hooks, issues
from .clicks import Redirects
from .console import api_app, console_app
from .guard import CSP, CSRF_FIELD, FRAME_OK, is_local
from .pages import STATIC, Pages, strings
from .signup import SignUp

log = logging.getLogger("newsletter.web")
PHONE, DESKTOP = 375, 700
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def create_app(config: Config, engine: Engine | None = None, *, clock: Callable[[], float] | None = None,
               now: Clock = SYSTEM, confirm_every: timedelta | None = None) -> Starlette:
    """The web app for ``config``; ``engine`` defaults to the configured database (migrated if SQLite).

    ``clock`` (monotonic seconds) drives the per-client sign-up limit and ``now`` the per-address and
    hourly ones, so a test can move time.
    """
    web = Web(config, engine or store.connect(store.engine_for(config.database_url)))
    every = confirm_every or timedelta(minutes=config.web.confirm_every_minutes)
    web.signups = s = SignUp(web, clock, now, every)
    web.redirects = r = Redirects(web, now)
    routes = [  # the tracked links first: the route most often asked for, matched before twenty others
        Route("/r/{token}", r.follow),
        Route("/", s.subscribe_form), Route("/subscribe", s.subscribe_form),
        Route("/subscribe", s.subscribe, methods=["POST"]),
        Route("/confirm/{token}", s.confirm_form), Route("/confirm/{token}", s.confirm, methods=["POST"]),
        Route("/unsubscribe/{token}", web.unsubscribe_form),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["POST"]),
        Route("/resubscribe/{token}", web.resubscribe, methods=["POST"]),
        Route("/preferences/{token}", web.preferences_form),
        Route("/preferences/{token}", web.preferences, methods=["POST"]),
        Route("/archive", web.archive), Route("/archive/{slug}", web.archive_issue),
        Route("/feed.xml", web.feed), Route("/feed/{area}.xml", web.area_feed), Route("/atom.xml", web.atom),
        Route("/preview/{slug}", web.preview), Route("/preview/{slug}/raw", web.preview_raw),
        Route("/site.css", web.stylesheet),
        Mount("/admin", console_app(config, web.engine, now, clock)),
        Mount("/api", api_app(config, web.engine, now)),
        Route("/hooks/{provider}", hooks.Hooks(config, web.engine, now).receive, methods=["POST"]),
    ]
    app = Starlette(routes=routes, middleware=guard.middleware(config), lifespan=web.lifespan)
    app.router.redirect_slashes = False  # Starlette's would build its Location from the Host header
    app.router.default = web.no_route
    app.state.web = web
    return app


class Web(Pages):
    """The app's state and its endpoints but sign-up's (``signups``) and the tracked links' (``redirects``)."""

    signups: SignUp
    redirects: Redirects

    def __init__(self, config: Config, engine: Engine) -> None:
        super().__init__(config, engine)
        self.archive_pages = issues.Archive(config)
        self.feeds = feeds.Feeds(config)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """At shutdown (once uvicorn has answered the requests in flight), the clicks still pending are written."""
        try:
            yield
        finally:
            await run_in_threadpool(self.redirects.writer.close)

    def redirect(self, path: str, status: int = 307) -> RedirectResponse:
        """To ``path`` under base_url: the Location never echoes the request's Host header."""
        return RedirectResponse(f"{self.config.newsletter.base_url}{path}", status)

    async def no_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """No route matched: ``/archive/`` is sent to ``/archive`` (from base_url), anything else is a 404 page."""
        request = Request(scope, receive)
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        trimmed = path.rstrip("/")
        response: Response
        if trimmed != path and trimmed and _routed(scope["router"], {**scope, "path": trimmed, "root_path": ""}):
            query = f"?{request.url.query}" if request.url.query else ""
            response = self.redirect(trimmed + query)
        else:
            response = self.message(request, 404, "Not found", "There is no page at this address.")
        await response(scope, receive, send)

    # --- unsubscribe --------------------------------------------------------------------------------

    async def unsubscribe_form(self, request: Request) -> Response:
        sub = await self.subscriber(UNSUBSCRIBE, request.path_params["token"])
        if sub is None:
            return self.bad_link(request)
        return self.page(request, "unsubscribe.html.j2", status_now=sub.status, token=request.path_params["token"])

    async def unsubscribe(self, request: Request) -> Response:
        """The page's button, or RFC 8058's one-click POST from a mail provider (no CSRF field there)."""
        form = await self.form(request)
        token = request.path_params["token"]
        sub = await self.subscriber(UNSUBSCRIBE, token)
        if sub is None:
            return self.bad_link(request)
        one_click = form.get("List-Unsubscribe") == "One-Click"
        if not one_click and not self.csrf.valid(request, form.get(CSRF_FIELD)):
            return self.forbidden(request)
        await self.db(audience.unsubscribe_id, sub.id, None,
                      "RFC 8058 one-click unsubscribe (List-Unsubscribe-Post)" if one_click
                      else "unsubscribed on the page of the link in a message")
        if one_click:
            return PlainTextResponse("Unsubscribed.\n")
        return self.page(request, "unsubscribe.html.j2", status_now="unsubscribed", token=token, done=True)

    async def resubscribe(self, request: Request) -> Response:
        """From the unsubscribe page: the signed link proves the address, as a confirmation does."""
        form = await self.form(request)
        sub = await self.subscriber(UNSUBSCRIBE, request.path_params["token"])
        if sub is None:
            return self.bad_link(request)
        if not self.csrf.valid(request, form.get(CSRF_FIELD)):
            return self.forbidden(request)
        return await self.activated(request, sub.id, "subscribed again from the unsubscribe page (its signed link)")

    # --- preferences --------------------------------------------------------------------------------

    def preferences_page(self, request: Request, sub: Subscriber, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("values", {"name": sub.name, "areas": sub.areas or self.areas})
        return self.page(request, "preferences.html.j2", status, areas=self.areas, email=_masked(sub.email),
                         status_now=sub.status, unsubscribe=self.own_link(request, UNSUBSCRIBE, sub.id), **ctx)

    async def preferences_form(self, request: Request) -> Response:
        sub = await self.subscriber(PREFERENCES, request.path_params["token"])
        if sub is None:
            return self.bad_link(request)
        return self.preferences_page(request, sub)

    async def preferences(self, request: Request) -> Response:
        form = await self.form(request)
        sub = await self.subscriber(PREFERENCES, request.path_params["token"])
        if sub is None:
            return self.bad_link(request)
        if not self.csrf.valid(request, form.get(CSRF_FIELD)):
            return self.forbidden(request)
        name, chosen = str(form.get("name", "")), strings(form.getlist("areas"))
        try:
            updated = await self.db(audience.set_preferences, sub.id, name, chosen, self.areas)
        except AudienceError as exc:
            return self.preferences_page(request, sub, 400, error=str(exc), values={"name": name, "areas": chosen})
        if updated is None:
            return self.bad_link(request)
        return self.preferences_page(request, updated, saved=True)

    # --- archive ------------------------------------------------------------------------------------

    async def archive(self, request: Request) -> Response:
        found = await self.db(issues.published)
        return self.page(request, "archive.html.j2", issues=found, feeds=feeds.feed_urls(self.config))

    async def archive_issue(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        path = issues.issue_file(self.config, slug) if _SLUG.match(slug) else None
        if path is None or not await self.db(issues.is_published, slug):
            return self.message(request, 404, "No such issue", "There is no sent issue by that name.",
                                link="/archive", link_text="All issues")
        cookie, new = self.csrf.cookie_value(request)
        try:
            html = await run_in_threadpool(self.archive_pages.html, path, self.csrf.field_value(cookie))
        except NewsletterError as exc:
            return self.unshowable(request, path, exc)
        if html is None:
            return self.message(request, 404, "Empty issue", "This issue has no papers.")
        # the subscribe box holds this visitor's CSRF field: a shared cache must not hand it to another
        response = HTMLResponse(html, headers={"Cache-Control": "private, no-cache"})
        if new:
            self.set_csrf_cookie(request, response, cookie)
        return response

    def unshowable(self, request: Request, path: Path, exc: NewsletterError) -> HTMLResponse:
        """A sent issue whose file (or a template) went bad since: a one-line page for the reader, and for the
        editor a log line naming the file and field (``content.load_issue``'s message), not a traceback."""
        log.error("archive page of %s cannot be shown: %s", path, str(exc).replace("\n", "; "))
        return self.message(request, 503, "This issue cannot be shown",
                            "This issue cannot be shown at the moment. Please try again later.",
                            link="/archive", link_text="All issues")

    # --- feeds --------------------------------------------------------------------------------------

    async def feed(self, request: Request) -> Response:
        found = await self.db(feeds.sent)
        return _atom(await run_in_threadpool(self.feeds.all_issues, found))

    async def area_feed(self, request: Request) -> Response:
        area = self.feeds.area(request.path_params["area"])
        if area is None:
            return PlainTextResponse("No such feed.", 404)
        found = await self.db(feeds.sent)
        return _atom(await run_in_threadpool(self.feeds.one_area, area, found))

    async def atom(self, request: Request) -> Response:
        """The name feed readers guess; one feed has one URL, so this points there."""
        return self.redirect("/feed.xml", 301)

    # --- editor preview -----------------------------------------------------------------------------

    def preview_allowed(self, request: Request) -> bool:
        """With a configured token, only requests carrying it; without one, loopback clients only."""
        token = self.config.web.preview_token.get_secret_value()
        if token:
            given = request.query_params.get("token", "")
            return hmac.compare_digest(given.encode(), token.encode())
        return is_local(request)

    def preview_refused(self, request: Request) -> HTMLResponse:
        return self.message(request, 403, "Preview not available",
                            "The editor preview is served only on this machine or with the preview token.")

    async def preview(self, request: Request) -> Response:
        if not self.preview_allowed(request):
            return self.preview_refused(request)
        slug = request.path_params["slug"]
        path = issues.issue_file(self.config, slug) if _SLUG.match(slug) else None
        if path is None:
            return self.message(request, 404, "No such issue", f"No issue file {slug}.")
        chosen = area_group(request.query_params.get("areas", "").split(","), self.areas)
        width = PHONE if request.query_params.get("width") == str(PHONE) else DESKTOP
        token = request.query_params.get("token", "")
        groups = [(", ".join(g), ",".join(g), group_key(g, self.areas)) for g in all_groups(self.areas)]
        return self.page(request, "preview.html.j2", headers={"Content-Security-Policy": CSP + "; frame-src 'self'"},
                         slug=slug, groups=groups, chosen=",".join(chosen), chosen_label=", ".join(chosen),
                         width=width, phone=PHONE, desktop=DESKTOP, token=token)

    async def preview_raw(self, request: Request) -> Response:
        if not self.preview_allowed(request):
            return self.preview_refused(request)
        slug = request.path_params["slug"]
        path = issues.issue_file(self.config, slug) if _SLUG.match(slug) else None
        if path is None:
            return PlainTextResponse(f"No issue file {slug}.", 404)
        chosen = area_group(request.query_params.get("areas", "").split(","), self.areas)
        try:
            html = await run_in_threadpool(self.render_group, path, chosen)
        except NewsletterError as exc:  # the editor's mistake, shown to the editor
            return PlainTextResponse(str(exc), 422)
        headers = {"Content-Security-Policy": CSP.replace("frame-ancestors 'none'", FRAME_OK),
                   "X-Frame-Options": "SAMEORIGIN"}
        return HTMLResponse(html, headers=headers)

    def render_group(self, path: Path, chosen: tuple[str, ...]) -> str:
        """The group's email from the live template and content files (a new Renderer each time)."""
        group = Renderer(self.config).render(issues.load(self.config, path), chosen)
        if group is None:
            return "<!doctype html><p>No paper this week meets these areas: this group gets no email.</p>"
        return group.fill(preview_slots(self.config))[0]

    async def stylesheet(self, request: Request) -> Response:
        css = (STATIC / "site.css").read_text(encoding="utf-8")
        return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


def _routed(router: Router, scope: Scope) -> bool:
    """Whether a route of ``router`` takes ``scope`` (with any method, as Starlette's own slash redirect asks)."""
    return any(route.matches(scope)[0] is not Match.NONE for route in router.routes)


def _atom(data: bytes) -> Response:
    return Response(data, media_type=feeds.MEDIA_TYPE, headers={"Cache-Control": "public, max-age=300"})


def _masked(email: str) -> str:
    """``a…@example.org``: enough for the owner to recognise, little for whoever a link was forwarded to."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}…@{domain}"
