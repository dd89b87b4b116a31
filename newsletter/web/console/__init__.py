"""The operator's console (``/admin``) and its JSON API (``/api``), mounted by ``newsletter serve``.

    auth.py        sessions, bearer tokens, roles (``requires``)
    base.py        the shared page helpers, CSRF-checked forms, the audit line of every action
    people.py      sign in/out, users and API tokens (admins), the audit log
    dashboard.py   the issues, the next send, a running send's progress
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
from .dashboard import Dashboard
from .people import People

SECTIONS = (People, Dashboard)


def console_app(config: Config, engine: Engine, now: Clock = SYSTEM,
                monotonic: Callable[[], float] | None = None) -> Starlette:
    """The console's pages, to mount at ``/admin``."""
    base = ConsoleBase(config, engine, now, monotonic)
    routes: list[BaseRoute] = [route for section in SECTIONS for route in section(base).routes()]
    routes.append(Route("/static/admin.css", base.static("admin.css")))
    app = Starlette(routes=routes, exception_handlers={BadForm: bad_form})
    app.state.console = base
    return app
