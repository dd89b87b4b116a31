"""Sending from the console: send with a typed confirmation, pause, resume, cancel; a running send's progress as
server-sent events; and each issue's delivery report (``report --html``'s content in the console's layout, with the
papers' click counts).

A send runs in a thread of this process (``send/background.py``), or with ``[schedule] deliver = "workers"`` only
its outbox is made here. The progress stream reads the counts from the database every ``POLL`` seconds (every open
stream of the process shares one read: ``Status``) and sends an event when they change; it ends with a ``done``
event once the issue is no longer sending, or after ``STREAM_SECONDS``, when the browser's EventSource reconnects
(so no response stays open for ever and a server can stop).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ...config import Config
from ...errors import ActionRefused, NewsletterError
from ...lifecycle import IssueState
from ...send import control
from ...send.clickreport import ClickReport, click_report
from ...send.insights import Insights, insights
from ...send.report import Report, report
from ...send.report_page import render_body
from ...send.status import IssueStatus
from .auth import Who, requires
from .base import ConsoleBase, Section
from .issues import Issues, shared

POLL = 0.5
STREAM_SECONDS = 30.0  # then EventSource reconnects: a stopping server waits for no stream longer
KEEPALIVE = 15.0


class Sending(Section):
    def __init__(self, console: ConsoleBase) -> None:
        super().__init__(console)
        self.status, self.sends, _ = shared(console)
        self.pages = Issues(console)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/issues/{slug}/send", self.send, methods=["POST"]),
            Route("/issues/{slug}/pause", self.pause, methods=["POST"]),
            Route("/issues/{slug}/resume", self.resume, methods=["POST"]),
            Route("/issues/{slug}/cancel", self.cancel, methods=["POST"]),
            Route("/issues/{slug}/progress", self.progress), Route("/issues/{slug}/report", self.report),
        ]

    @requires("operator")
    async def send(self, request: Request) -> Response:
        """Send to the list, once the issue's date is typed in the form; anything else sends nothing."""
        form = await self.c.checked_form(request)
        found = await self.pages.found(request)
        if found is None or found.issue is None:
            return await self.pages.show(request, 404, error="No loadable issue file by that name.")
        try:
            control.confirm(found.issue.date.isoformat(), str(form.get("confirm", "")))
            line = await run_in_threadpool(self.sends.send, found.issue, found.path)
        except NewsletterError as exc:
            return await self.pages.show(request, 400, error=str(exc))
        await self.c.act(request.state.who, "issue.send", found.slug, control.noted, detail=line)
        done = "enqueued" if self.c.config.schedule.deliver == "workers" else "sending"
        return self.c.see_other(request, f"/issues/{found.slug}?done={done}")

    @requires("operator")
    async def pause(self, request: Request) -> Response:
        await self.c.checked_form(request)
        slug, who = request.path_params["slug"], request.state.who
        try:
            await self.c.act(who, "issue.pause", slug, control.pause, slug, who.actor, self.c.stamp())
        except NewsletterError as exc:
            return await self.pages.show(request, 409, error=str(exc))
        self.sends.stop(slug)  # this process's send stops after the message in flight; others at their next claim
        return self.c.see_other(request, f"/issues/{slug}?done=paused")

    @requires("operator")
    async def resume(self, request: Request) -> Response:
        await self.c.checked_form(request)
        found = await self.pages.found(request)
        if found is None or found.issue is None:
            return await self.pages.show(request, 404, error="No loadable issue file by that name.")
        who: Who = request.state.who
        try:
            await run_in_threadpool(self.sends.settle, found.slug)
            await self.c.act(who, "issue.resume", found.slug, control.resume, found.slug, self.c.stamp())
            await run_in_threadpool(self.sends.resume, found.issue, found.path)
        except NewsletterError as exc:
            return await self.pages.show(request, 409, error=str(exc))
        return self.c.see_other(request, f"/issues/{found.slug}?done=resumed")

    @requires("operator")
    async def cancel(self, request: Request) -> Response:
        """Cancel for good, once the issue's date is typed: its rows still to deliver are skipped."""
        form = await self.c.checked_form(request)
        found = await self.pages.found(request)
        if found is None:
            return await self.pages.show(request, 404, error="No issue by that name.")
        who: Who = request.state.who
        try:
            control.confirm(date_of(found), str(form.get("confirm", "")))
            await self.c.act(who, "issue.cancel", found.slug, control.cancel, found.slug, who.actor, self.c.stamp())
        except ActionRefused as exc:
            return await self.pages.show(request, 409, error=str(exc))
        self.sends.stop(found.slug)
        return self.c.see_other(request, f"/issues/{found.slug}?done=cancelled")

    @requires("editor")
    async def progress(self, request: Request) -> Response:
        return StreamingResponse(self.events(request.path_params["slug"]), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def events(self, slug: str) -> AsyncIterator[str]:
        """``progress`` events while the issue is sending, then one ``done``; a comment now and then keeps the
        line open through proxies (and shows a closed tab as a failed write)."""
        yield "retry: 2000\n\n"
        last, started = "", time.monotonic()
        quiet = started
        while time.monotonic() - started < STREAM_SECONDS:
            now = await self.c.db(self.status.progress, slug)
            data = json.dumps(now.as_json())
            if now.state is not IssueState.SENDING:
                yield f"event: done\ndata: {data}\n\n"
                return
            if data != last:
                last, quiet = data, time.monotonic()
                yield f"event: progress\ndata: {data}\n\n"
            elif time.monotonic() - quiet > KEEPALIVE:
                quiet = time.monotonic()
                yield ": keep-alive\n\n"
            await asyncio.sleep(POLL)

    @requires("operator")
    async def report(self, request: Request) -> Response:
        """The delivery report (it names addresses: operators and admins)."""
        slug = request.path_params["slug"]
        found, more, clicks = await self.c.db(report_and_insights, slug, self.c.config)
        if found is None or more is None:
            return self.c.admin_page(request, "message.html.j2", 404, title="No report",
                                     text=f"{slug} has not been sent: there is no delivery report.")
        body = render_body(found, more, self.c.stamp(), clicks)
        return self.c.admin_page(request, "report.html.j2", title="Issues", slug=slug, body=body)


def report_and_insights(conn: Connection, slug: str, config: Config,
                        ) -> tuple[Report | None, Insights | None, ClickReport | None]:
    """``newsletter report``'s reads: the report, its insights (by domain, per minute) and the click counts."""
    return report(conn, slug), insights(conn, slug), click_report(conn, config, slug)


def date_of(found: IssueStatus) -> str:
    """The date a confirmation must name: the file's, or for a send whose file is gone its name (a date)."""
    return found.issue.date.isoformat() if found.issue else found.slug
