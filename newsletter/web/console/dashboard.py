"""The console's home (issue #22's dashboard): the next weekly send and whether its issue is ready, every send in
progress or paused with its live progress and controls, and every issue with its state, counts and what came back
(bounce and complaint rates against Gmail's and Yahoo's bulk-sender line for complaints, 0.3 %)."""

from __future__ import annotations

from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...lifecycle import IssueState
from ...send.report import COMPLAINT_LINE
from ...send.status import IssueStatus, NextSend
from .auth import requires
from .base import ConsoleBase, Section
from .issues import READY_WORDS, operates, shared


class Dashboard(Section):
    def __init__(self, console: ConsoleBase) -> None:
        super().__init__(console)
        self.status, self.sends, _ = shared(console)

    def routes(self) -> list[BaseRoute]:
        return [Route("/", self.home)]

    @requires("editor")
    async def home(self, request: Request) -> Response:
        issues, upcoming = await self.c.db(self.read)
        active = [s for s in issues if s.progress.state in (IssueState.SENDING, IssueState.PAUSED)]
        return self.c.admin_page(request, "dashboard.html.j2", title="Dashboard", issues=issues, active=active,
                                 upcoming=upcoming, words=READY_WORDS, line=COMPLAINT_LINE, operator=operates(request))

    def read(self, conn: Connection) -> tuple[list[IssueStatus], NextSend]:
        return self.status.issues(conn), self.status.next_send(conn, self.c.stamp())
