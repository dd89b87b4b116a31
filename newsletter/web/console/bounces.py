"""The bounce log (operators): every notice that came back, newest first, a page at a time, with ``bounces report``'s
summary above it; and one notice, with its verdict, what was done, its proof and its raw text while it is kept.

A notice is a stranger's text: whatever it holds (markup, a script, a terminal's escape sequences, bidi overrides)
is shown escaped by the template and through ``feedback.report.printable``, the one function ``bounces show``
prints with, so a control character reads U+FFFD in the page as in the terminal. Nothing here changes a notice:
the pages only read (``feedback/report.py``, as the CLI and the API do).
"""

from __future__ import annotations

from urllib.parse import urlencode

from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...feedback.report import KINDS, BounceReport, LogPage, LogQuery, bounce_report, log_page, logged, printable
from .auth import requires
from .base import Section
from .subscribers import keyset

SLUG_MAX = 64


def query_of(kind: str, unproven: str, issue: str) -> LogQuery:
    """The filters from a query string; an unknown kind is no filter (the form offers only the known ones)."""
    return LogQuery(kind if kind in KINDS else "", unproven.lower() in ("1", "true", "yes", "on"), issue[:SLUG_MAX])


def _log(conn: Connection, query: LogQuery, before: int | None) -> tuple[LogPage, BounceReport | None]:
    """The page, and on the first page only, the summary (a few GROUP BYs over the whole log, or one issue's)."""
    summary = bounce_report(conn, query.issue or None) if before is None else None
    return log_page(conn, query, before), summary


class Bounces(Section):
    def routes(self) -> list[BaseRoute]:
        return [Route("/bounces", self.log_page), Route("/bounces/{nid:int}", self.notice_page)]

    @requires("operator")
    async def log_page(self, request: Request) -> Response:
        params = request.query_params
        query = query_of(params.get("kind", ""), params.get("unproven", ""), params.get("issue", ""))
        before = keyset(params.get("before"))
        found, summary = await self.c.db(_log, query, before)
        asked = {k: v for k, v in (("kind", query.kind), ("unproven", "true" if query.unproven else ""),
                                   ("issue", query.issue)) if v}
        return self.c.admin_page(request, "bounces.html.j2", title="Bounces", query=query, kinds=KINDS,
                                 found=found, summary=summary, printable=printable,
                                 first=urlencode(asked) if before is not None else None,
                                 following=urlencode({**asked, "before": found.older}) if found.older else "")

    @requires("operator")
    async def notice_page(self, request: Request) -> Response:
        nid = request.path_params["nid"]
        found = await self.c.db(logged, nid)
        if found is None:
            return self.c.admin_page(request, "message.html.j2", 404, title="Bounces",
                                     text=f"There is no notice #{nid} in the bounce log.")
        row, raw = found
        text = printable(raw.decode("utf-8", "replace")) if raw is not None else None
        return self.c.admin_page(request, "bounce.html.j2", title="Bounces", n=row, raw=text, printable=printable)
