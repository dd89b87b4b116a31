"""What every endpoint group shares: the page templates with their CSRF field, the database in the thread
pool, and the subscriber a signed link names.

Every page that changes something is reached through a signed link (links.py) made with the very
secret the send engine uses (``links_for``), so the links in the emails verify here. A tampered,
expired or unknown token gets a plain 400 page and changes nothing. A GET never changes anything
(link scanners follow GETs): confirm and unsubscribe show one button that POSTs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from sqlalchemy.engine import Engine
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse

from .. import audience
from ..audience import Subscriber
from ..config import Config
from ..errors import BadToken
from ..links import PREFERENCES, Links, links_for
from .guard import CSRF_COOKIE, CSRF_FIELD, Csrf

T = TypeVar("T")
STATIC = Path(__file__).with_name("templates")


class Pages:
    """The app's shared state and the helpers its endpoints answer with."""

    def __init__(self, config: Config, engine: Engine) -> None:
        self.config, self.engine = config, engine
        self.areas = tuple(config.newsletter.areas)
        self.links: Links = links_for(config, engine)
        self.csrf = Csrf(self.links.secret)
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(STATIC), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

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
            self.set_csrf_cookie(request, response, cookie)
        return response

    def set_csrf_cookie(self, request: Request, response: HTMLResponse, cookie: str) -> None:
        """The double submit's cookie half, for a page whose form carries its signature."""
        response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")

    def message(self, request: Request, status: int, title: str, text: str, **ctx: Any) -> HTMLResponse:
        """A one-paragraph page (message.html.j2): a title and a sentence, maybe a link."""
        return self.page(request, "message.html.j2", status, title=title, text=text, **ctx)

    def bad_link(self, request: Request) -> HTMLResponse:
        return self.message(request, 400, "This link does not work",
                            "The link is damaged, has expired or is no longer valid. Nothing was changed.")

    def forbidden(self, request: Request) -> HTMLResponse:
        return self.message(request, 403, "Please try again",
                            "The form was too old or did not come from this site. Reload the page and send it again.")

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in one transaction, in the thread pool."""
        return await in_transaction(self.engine, fn, *args)

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

    async def activated(self, request: Request, sid: int, cause: str,
                        then: Callable[[int], None] | None = None) -> HTMLResponse:
        """The owner proved the address (a confirmation, or the unsubscribe page's "subscribe again");
        ``then(sid)`` runs after the answer once the subscriber is active (the late joiner's issue)."""
        sub = await self.db(audience.confirm_id, sid, None, cause)
        if sub is None:
            return self.bad_link(request)
        if sub.status != "active":  # bounced or blocked: only an operator can change that
            return self.message(request, 200, "Not activated",
                                "This address cannot be subscribed at the moment. Please contact us.")
        return self.message(request, 200, "You are subscribed", "Thank you: the next issue will come to your inbox.",
                            link=self.own_link(request, PREFERENCES, sid), link_text="Choose your areas",
                            background=BackgroundTask(then, sid) if then else None)


async def in_transaction(engine: Engine, fn: Callable[..., T], *args: Any) -> T:
    """``fn(conn, *args)`` in one transaction, in Starlette's thread pool (database work blocks)."""
    def run() -> T:
        with engine.begin() as conn:
            return fn(conn, *args)
    return await run_in_threadpool(run)


def strings(values: Sequence[object]) -> list[str]:
    """The text values of a form field (a file upload is not one)."""
    return [v for v in values if isinstance(v, str)]
