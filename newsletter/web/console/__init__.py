"""The operator's console (``/admin``) and its JSON API (``/api``), mounted by ``newsletter serve``.

    auth.py        sessions, bearer tokens, roles (``requires``)
    base.py        the shared page helpers, CSRF-checked forms, the audit line of every action
    people.py      sign in/out, users and API tokens (admins), the audit log
    dashboard.py   the issues, the next send, a running send's progress
    issues.py      each issue: every group's preview, size and spam score, a test copy, approve
    sending.py     send (typed confirmation), pause, resume, cancel, live progress (SSE), the report
    subscribers.py search (keyset pages), one subscriber's history; areas, block, unsubscribe, erase (typed)
    subscriber_files.py  CSV import by upload (preview of the line errors, then confirm) and export
    bounces.py     the bounce log (keyset pages, filters, `bounces report`'s summary), one notice, escaped
    uploads.py     the uploaded files between preview and import: private, the uploader's own, an hour
    api.py         /api/v1/…: the API's base (bearer tokens, JSON errors); api_issues, api_subscribers,
                   api_bounces its sections, put together by ``api_app`` here; openapi.py the document

Loopback by default like every page (``[web] host``); behind the reverse proxy that serves base_url.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from ...clock import SYSTEM, Clock
from ...config import Config
from .api import HANDLERS, ApiBase, ApiSection, Meta
from .api_bounces import BouncesApi
from .api_issues import IssuesApi
from .api_subscribers import SubscribersApi
from .base import BadForm, ConsoleBase, bad_form
from .bounces import Bounces
from .dashboard import Dashboard
from .issues import Issues
from .people import People
from .sending import Sending
from .subscriber_files import SubscriberFiles
from .subscribers import Subscribers

SECTIONS = (People, Dashboard, Issues, Sending, SubscriberFiles, Subscribers, Bounces)
API_SECTIONS: tuple[type[ApiSection], ...] = (Meta, IssuesApi, SubscribersApi, BouncesApi)


def console_app(config: Config, engine: Engine, now: Clock = SYSTEM,
                monotonic: Callable[[], float] | None = None) -> Starlette:
    """The console's pages, to mount at ``/admin``."""
    base = ConsoleBase(config, engine, now, monotonic)
    routes: list[BaseRoute] = [route for section in SECTIONS for route in section(base).routes()]
    routes.append(Route("/static/admin.css", base.static("admin.css")))
    routes.append(Route("/static/admin.js", base.static("admin.js")))
    app = Starlette(routes=routes, exception_handlers={BadForm: bad_form})
    app.state.console = base
    return app


def api_app(config: Config, engine: Engine, now: Clock = SYSTEM) -> Starlette:
    """The JSON API, to mount at ``/api``: its sections here, so api.py (their base) imports none of them."""
    base = ApiBase(config, engine, now)
    routes = [route for section in API_SECTIONS for route in section(base).routes()]
    return Starlette(routes=routes, exception_handlers=HANDLERS)
