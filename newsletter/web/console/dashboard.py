"""The console's home: each issue with its state and counts, the next weekly send (issue #22's dashboard)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .auth import requires
from .base import Section


class Dashboard(Section):
    def routes(self) -> list[BaseRoute]:
        return [Route("/", self.home)]

    @requires("editor")
    async def home(self, request: Request) -> Response:
        return self.c.admin_page(request, "dashboard.html.j2", title="Dashboard")
