"""The Starlette app: sign-up with double opt-in, confirm, unsubscribe, preferences, archive, preview.

Every page that changes something is reached through a signed link (links.py) made with the very
secret the send engine uses (``links_for``), so the links in the emails verify here. The
confirmation mail leaves through the send pipeline's one way out (``send.Mailer``): DKIM-signed
when a key is configured, like every other message. A
tampered, expired or unknown token gets a plain 400 page and changes nothing. A GET never changes
anything (link scanners follow GETs): confirm and unsubscribe show one button that POSTs.

Database and SMTP work is blocking, so it runs in Starlette's thread pool; the confirmation email
is sent in a background task after the response, so the sign-up page answers the same, and in the
same time, whether or not the address was known. One address gets at most one confirmation mail
per ``CONFIRM_EVERY`` however many clients ask (``guard.claim_confirmation``, kept in the database
so every process sees it); the page never tells whether a mail went out.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import jinja2
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import audience, store
from ..areas import all_groups, group_key
from ..areas import group as area_group
from ..audience import Subscriber
from ..clock import SYSTEM, Clock
from ..config import Config
from ..errors import AudienceError, BadToken, NewsletterError
from ..links import PREFERENCES, UNSUBSCRIBE, Links, links_for
from ..render import Renderer, preview_slots
from ..send import Mailer, Outcome, Recipient
from ..send.compose import Confirmation
from . import feeds, guard, issues
from .guard import CSP, CSRF_COOKIE, CSRF_FIELD, FRAME_OK, Csrf, SecurityHeaders, SlidingWindow, client_ip, is_loopback

if TYPE_CHECKING:
    pass

log = logging.getLogger("newsletter.web")
T = TypeVar("T")
STATIC = Path(__file__).with_name("templates")
PHONE, DESKTOP = 375, 700
_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# At most one confirmation mail per address in this time, however many clients ask for one
# ([web] confirm_every_minutes sets it).
CONFIRM_EVERY = timedelta(minutes=60)


def create_app(config: Config, engine: Engine | None = None, *, clock: Callable[[], float] | None = None,
               now: Clock = SYSTEM, confirm_every: timedelta | None = None) -> Starlette:
    """The web app for ``config``; ``engine`` defaults to the configured database (migrated if SQLite).

    ``clock`` (monotonic seconds) drives the per-client sign-up limit and ``now`` the per-address one,
    so a test can move time.
    """
    every = confirm_every or timedelta(minutes=config.web.confirm_every_minutes)
    web = Web(config, engine or store.connect(store.engine_for(config.database_url)), clock, now, every)
    routes = [
        Route("/", web.subscribe_form), Route("/subscribe", web.subscribe_form),
        Route("/subscribe", web.subscribe, methods=["POST"]),
        Route("/confirm/{token}", web.confirm_form), Route("/confirm/{token}", web.confirm, methods=["POST"]),
        Route("/unsubscribe/{token}", web.unsubscribe_form),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["POST"]),
        Route("/resubscribe/{token}", web.resubscribe, methods=["POST"]),
        Route("/preferences/{token}", web.preferences_form),
        Route("/preferences/{token}", web.preferences, methods=["POST"]),
        Route("/archive", web.archive), Route("/archive/{slug}", web.archive_issue),
        Route("/feed.xml", web.feed), Route("/feed/{area}.xml", web.area_feed), Route("/atom.xml", web.atom),
        Route("/preview/{slug}", web.preview), Route("/preview/{slug}/raw", web.preview_raw),
        Route("/site.css", web.stylesheet),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.web = web
    return app


class Web:
    """The app's state and its endpoints."""

    def __init__(self, config: Config, engine: Engine, clock: Callable[[], float] | None, now: Clock = SYSTEM,
                 confirm_every: timedelta = CONFIRM_EVERY) -> None:
        self.config, self.engine = config, engine
        self.areas = tuple(config.newsletter.areas)
        self.links: Links = links_for(config, engine)
        self.mailer = Mailer(config)
        self.csrf = Csrf(self.links.secret)
        self.limiter = SlidingWindow(config.web.subscribe_per_hour, 3600.0, clock or time.monotonic)
        self.confirm_max_age = int(config.web.confirm_hours * 3600)
        self.now, self.confirm_every = now, confirm_every
        self.archive_pages = issues.Archive(config)
        self.feeds = feeds.Feeds(config)
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(STATIC), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    # --- helpers ---------------------------------------------------------------------------------

    def page(self, request: Request, name: str, status: int = 200, headers: dict[str, str] | None = None,
             background: BackgroundTask | None = None, **ctx: Any) -> HTMLResponse:
        """A page from web/templates; forms in it get the CSRF field, the browser the cookie."""
        cookie, new = self.csrf.cookie_value(request)
        nl = self.config.newsletter
        body = self.env.get_template(name).render(
            site=nl.name, identity=nl.identity, lang=nl.language, root=request.scope.get("root_path", ""),
            csrf_field=CSRF_FIELD, csrf=self.csrf.field_value(cookie), **ctx)
        response = HTMLResponse(body, status, headers=headers, background=background)
        if new:
            response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https", path="/")
        return response

    def bad_link(self, request: Request) -> HTMLResponse:
        return self.page(request, "message.html.j2", 400, title="This link does not work",
                         text="The link is damaged, has expired or is no longer valid. Nothing was changed.")

    def forbidden(self, request: Request) -> HTMLResponse:
        return self.page(request, "message.html.j2", 403, title="Please try again",
                         text="The form was too old or did not come from this site. Reload the page and send it again.")

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in one transaction, in the thread pool."""
        def run() -> T:
            with self.engine.begin() as conn:
                return fn(conn, *args)
        return await run_in_threadpool(run)

    async def subscriber(self, kind: str, token: str) -> Subscriber | None:
        """The subscriber a signed link names, or None (tampered, foreign kind, erased subscriber)."""
        try:
            sid = self.links.verify(kind, token)
        except BadToken:
            return None
        return await self.db(audience.get_id, sid)

    def own_link(self, request: Request, kind: str, sid: int) -> str:
        return f"{request.scope.get('root_path', '')}/{kind}/{self.links.token(kind, sid)}"

    async def form(self, request: Request) -> FormData:
        return await request.form(max_files=0, max_fields=20)

    # --- sign-up and confirmation ------------------------------------------------------------------

    async def subscribe_form(self, request: Request) -> Response:
        return self.page(request, "subscribe.html.j2", areas=self.areas, values={"areas": ()})

    async def subscribe(self, request: Request) -> Response:
        if not self.limiter.allow(client_ip(request)):
            return self.page(request, "message.html.j2", 429, headers={"Retry-After": "3600"},
                             title="Too many sign-ups", text="Too many sign-ups from your address. Try again later.")
        form = await self.form(request)
        if not self.csrf.valid(request, form.get(CSRF_FIELD)):
            return self.forbidden(request)
        email, name, chosen = str(form.get("email", "")), str(form.get("name", "")), _strings(form.getlist("areas"))
        try:
            audience.check_signup(email, name, chosen, self.areas)
        except AudienceError as exc:
            values = {"email": email, "name": name, "areas": chosen}
            return self.page(request, "subscribe.html.j2", 400, areas=self.areas, values=values, error=str(exc))
        task = BackgroundTask(self.signup, email, name, chosen)
        text = ("If this address can receive our newsletter, we have sent it a link to confirm. "
                "Open it to start your subscription.")
        if audience.needs_smtputf8(email.strip()):  # said from the address typed, never from the list
            text += (" Your address has non-ASCII characters before the @: it can be reached only where every mail "
                     "server on the way supports internationalized email (SMTPUTF8).")
        return self.page(request, "message.html.j2", background=task, title="Check your inbox", text=text)

    def signup(self, email: str, name: str, chosen: Sequence[str]) -> None:
        """After the response: record the sign-up and send the confirmation link, if there is one to send."""
        try:
            with self.engine.begin() as conn:
                now = self.now.now()
                sub = audience.request_signup(conn, email, name, chosen, self.areas, now)
                if sub is not None and not guard.claim_confirmation(conn, sub.id, now, self.confirm_every):
                    log.info("subscriber %d was sent a confirmation link less than %s ago; nothing sent",
                             sub.id, self.confirm_every)
                    return
        except (AudienceError, sa.exc.IntegrityError):  # the same address signing up twice at once
            log.info("sign-up raced with another for the same address; nothing sent")
            return
        if sub is None:
            return
        nl = self.config.newsletter
        what = Confirmation(nl.name, nl.identity, self.links.confirm_url(sub.id), self.config.web.confirm_hours)
        try:
            result = self.mailer.send_one(self.mailer.confirmation(Recipient(sub.id, sub.email, sub.name), what))
        except Exception:  # after the response: nobody else would hear of it
            log.exception("confirmation email to subscriber %d could not be sent", sub.id)
            return
        if result.outcome is not Outcome.SENT:
            log.warning("confirmation email to subscriber %d not accepted: %s %s", sub.id, result.code, result.answer)

    async def confirmed(self, token: str) -> Subscriber | None:
        try:
            sid = self.links.verify_confirm(token, self.confirm_max_age)
        except BadToken:
            return None
        return await self.db(audience.get_id, sid)

    async def confirm_form(self, request: Request) -> Response:
        sub = await self.confirmed(request.path_params["token"])
        if sub is None:
            return self.bad_link(request)
        return self.page(request, "confirm.html.j2", active=sub.status == "active")

    async def confirm(self, request: Request) -> Response:
        form = await self.form(request)
        sub = await self.confirmed(request.path_params["token"])
        if sub is None:
            return self.bad_link(request)
        if not self.csrf.valid(request, form.get(CSRF_FIELD)):
            return self.forbidden(request)
        return await self.activated(request, sub.id)

    async def activated(self, request: Request, sid: int) -> Response:
        sub = await self.db(audience.confirm_id, sid)
        if sub is None:
            return self.bad_link(request)
        if sub.status != "active":  # bounced or blocked: only an operator can change that
            return self.page(request, "message.html.j2", title="Not activated",
                             text="This address cannot be subscribed at the moment. Please contact us.")
        return self.page(request, "message.html.j2", title="You are subscribed",
                         text="Thank you: the next issue will come to your inbox.",
                         link=self.own_link(request, PREFERENCES, sid), link_text="Choose your areas")

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
        await self.db(audience.unsubscribe_id, sub.id)
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
        return await self.activated(request, sub.id)

    # --- preferences --------------------------------------------------------------------------------

    def preferences_page(self, request: Request, sub: Subscriber, status: int = 200, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("values", {"name": sub.name, "areas": sub.areas or self.areas})
        return self.page(request, "preferences.html.j2", status, areas=self.areas, email=_masked(sub.email),
                         status_now=sub.status, **ctx)

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
        name, chosen = str(form.get("name", "")), _strings(form.getlist("areas"))
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
            return self.page(request, "message.html.j2", 404, title="No such issue",
                             text="There is no sent issue by that name.", link="/archive", link_text="All issues")
        html = await run_in_threadpool(self.archive_pages.html, path)
        if html is None:
            return self.page(request, "message.html.j2", 404, title="Empty issue", text="This issue has no papers.")
        return HTMLResponse(html, headers={"Cache-Control": "public, max-age=300"})

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
        return RedirectResponse(f"{request.scope.get('root_path', '')}/feed.xml", 301)

    # --- editor preview -----------------------------------------------------------------------------

    def preview_allowed(self, request: Request) -> bool:
        """With a configured token, only requests carrying it; without one, loopback clients only."""
        token = self.config.web.preview_token.get_secret_value()
        if token:
            given = request.query_params.get("token", "")
            return hmac.compare_digest(given.encode(), token.encode())
        return is_loopback(client_ip(request))

    def preview_refused(self, request: Request) -> HTMLResponse:
        return self.page(request, "message.html.j2", 403, title="Preview not available",
                         text="The editor preview is served only on this machine or with the preview token.")

    async def preview(self, request: Request) -> Response:
        if not self.preview_allowed(request):
            return self.preview_refused(request)
        slug = request.path_params["slug"]
        path = issues.issue_file(self.config, slug) if _SLUG.match(slug) else None
        if path is None:
            return self.page(request, "message.html.j2", 404, title="No such issue", text=f"No issue file {slug}.")
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


def _atom(data: bytes) -> Response:
    return Response(data, media_type=feeds.MEDIA_TYPE, headers={"Cache-Control": "public, max-age=300"})


def _strings(values: Sequence[object]) -> list[str]:
    return [v for v in values if isinstance(v, str)]


def _masked(email: str) -> str:
    """``a…@example.org``: enough for the owner to recognise, little for whoever a link was forwarded to."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}…@{domain}"
