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
    api.py         /api/v1/…: the same library functions as JSON, with an OpenAPI document

Loopback by default like every page (``[web] host``); behind the reverse proxy that serves base_url.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Engine
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from ...clock import SYSTEM, Clock
from ...config import Config
from .base import BadForm, ConsoleBase, bad_form
from .bounces import Bounces
from .dashboard import Dashboard
from .issues import Issues
from .people import People
from .sending import Sending
from .subscriber_files import SubscriberFiles
from .subscribers import Subscribers

SECTIONS = (People, Dashboard, Issues, Sending, SubscriberFiles, Subscribers, Bounces)


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
