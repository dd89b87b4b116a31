"""``/api/v1/issues``: the issues and their sends as JSON, over the same library functions as the console
(``send/status.py``, ``send/control.py``, ``send/background.py``) and with the same roles: editors read and approve,
operators send, pause, resume and cancel and read reports (they name addresses). A send or cancel names the issue's
date in its body, ``{"confirm": "2026-05-28"}``, as the console's form asks it typed. A refusal the issue's state
explains (not ready, paused already, sent) is 409; a mistyped date 400.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ... import lifecycle, schedule
from ...config import Config
from ...errors import ActionRefused, NothingToSend, NotReady
from ...send import control
from ...send.background import Sends
from ...send.clickreport import click_report
from ...send.insights import insights
from ...send.report import report
from ...send.status import IssueStatus, Status
from .api import ApiBase, ApiError, ApiSection, api
from .auth import Who

T = TypeVar("T")


class IssuesApi(ApiSection):
    def __init__(self, base: ApiBase) -> None:
        super().__init__(base)
        self.status = Status(base.config)
        self.sends = Sends.of(base.config, base.engine, base.now)

    def routes(self) -> list[BaseRoute]:
        one = "/v1/issues/{slug}"
        return [
            Route("/v1/issues", self.list_issues), Route(one, self.get_issue),
            Route(f"{one}/approve", self.approve, methods=["POST"]), Route(f"{one}/send", self.send, methods=["POST"]),
            Route(f"{one}/pause", self.pause, methods=["POST"]), Route(f"{one}/resume", self.resume, methods=["POST"]),
            Route(f"{one}/cancel", self.cancel, methods=["POST"]), Route(f"{one}/report", self.get_report),
        ]

    @api("editor")
    async def list_issues(self, request: Request) -> Response:
        """Every issue file (and every sent issue whose file is gone), newest first.
        ---
        summary: List the issues
        responses:
          200: {description: "{issues: [{slug, title, date, readiness, ready, state, reason, counts, total, done,
            left, percent, returned, rates, complaints, complaint_line}]}"}
        """
        found = await self.a.db(self.status.issues)
        return JSONResponse({"issues": [s.as_json() for s in found]})

    @api("editor")
    async def get_issue(self, request: Request) -> Response:
        """One issue: its readiness, its send's state and its rows by state.
        ---
        summary: One issue
        parameters: [{name: slug, in: path, required: true, schema: {type: string}, example: "2026-05-28"}]
        responses:
          200: {description: "as in the list, plus running_here: whether this server's process delivers it"}
          404: {description: no issue file or send by that name}
        """
        found = await self.found(request)
        return JSONResponse({**found.as_json(), "running_here": self.sends.running(found.slug)})

    @api("editor")
    async def approve(self, request: Request) -> Response:
        """Approve the issue file as it is now (an edit afterwards needs approving again).
        ---
        summary: Approve an issue
        parameters: [{name: slug, in: path, required: true, schema: {type: string}}]
        responses:
          200: {description: "the issue (as GET), and message: what the weekly send will do with it"}
          404: {description: no issue file by that name}
        """
        found = await self.found(request, need_file=True)
        issue, now, who = found.issue, self.a.now.now(), self.who(request)
        assert issue is not None
        await self.a.act(who, "issue.approve", issue.slug, lifecycle.approve, issue, now,
                         detail=f"sha256 {issue.content_hash[:12]}")
        message = await self.refusing(run_in_threadpool(schedule.after_approval, self.a.config, self.a.engine,
                                                        issue.slug, now, lambda: self.sends.send(issue, found.path)))
        return JSONResponse({**(await self.found(request)).as_json(), "message": message})

    @api("operator")
    async def send(self, request: Request) -> Response:
        """Send the issue to every active subscriber: from this server, or with `[schedule] deliver = "workers"`
        its outbox only, for the workers. The body names the issue's date.
        ---
        summary: Send an issue to the list
        parameters: [{name: slug, in: path, required: true, schema: {type: string}}]
        requestBody:
          required: true
          content: {application/json: {schema: {type: object, required: [confirm],
            properties: {confirm: {type: string, example: "2026-05-28", description: "the issue's date"}}}}}
        responses:
          202: {description: "{slug, message}: the send started (or the outbox is made for the workers)"}
          400: {description: the body does not name the issue's date; nothing sent}
          409: {description: "not ready, no one to send to, or sent already; nothing sent"}
        """
        found = await self.found(request, need_file=True)
        assert found.issue is not None
        self.confirmed(found.issue.date.isoformat(), await self.a.body(request))
        line = await self.refusing(run_in_threadpool(self.sends.send, found.issue, found.path))
        await self.a.act(self.who(request), "issue.send", found.slug, control.noted, detail=line)
        return JSONResponse({"slug": found.slug, "message": line}, 202)

    @api("operator")
    async def pause(self, request: Request) -> Response:
        """Pause the issue's send in every process that delivers it (each stops at its next batch).
        ---
        summary: Pause a send
        parameters: [{name: slug, in: path, required: true, schema: {type: string}}]
        responses:
          200: {description: "the issue, now paused"}
          409: {description: the issue is not being sent}
        """
        slug, who = request.path_params["slug"], self.who(request)
        await self.refusing(self.a.act(who, "issue.pause", slug, control.pause, slug, who.actor, self.a.now.now()))
        self.sends.stop(slug)
        return JSONResponse((await self.found(request)).as_json())

    @api("operator")
    async def resume(self, request: Request) -> Response:
        """Go on with a paused send (by an operator, or by a fault once mended): from this server, or by the workers.
        ---
        summary: Resume a send
        parameters: [{name: slug, in: path, required: true, schema: {type: string}}]
        responses:
          202: {description: "{slug, message}"}
          409: {description: the send is not paused}
        """
        found = await self.found(request, need_file=True)
        assert found.issue is not None
        who = self.who(request)
        await self.refusing(run_in_threadpool(self.sends.settle, found.slug))
        await self.refusing(self.a.act(who, "issue.resume", found.slug, control.resume, found.slug, self.a.now.now()))
        line = await self.refusing(run_in_threadpool(self.sends.resume, found.issue, found.path))
        return JSONResponse({"slug": found.slug, "message": line}, 202)

    @api("operator")
    async def cancel(self, request: Request) -> Response:
        """End the send for good: the rows still queued or deferred are skipped, nothing sent is touched.
        ---
        summary: Cancel a send
        parameters: [{name: slug, in: path, required: true, schema: {type: string}}]
        requestBody:
          required: true
          content: {application/json: {schema: {type: object, required: [confirm],
            properties: {confirm: {type: string, description: "the issue's date"}}}}}
        responses:
          200: {description: "{slug, skipped}"}
          400: {description: the body does not name the issue's date}
          409: {description: "the issue was sent already, or never"}
        """
        found = await self.found(request)
        self.confirmed(found.issue.date.isoformat() if found.issue else found.slug, await self.a.body(request))
        who = self.who(request)
        skipped = await self.refusing(self.a.act(who, "issue.cancel", found.slug, control.cancel, found.slug,
                                                 who.actor, self.a.now.now()))
        self.sends.stop(found.slug)
        return JSONResponse({"slug": found.slug, "skipped": skipped})

    @api("operator")
    async def get_report(self, request: Request) -> Response:
        """The delivery report, as `newsletter report ISSUE --json` prints it, with the papers' click counts.
        ---
        summary: An issue's delivery report
        parameters: [{name: slug, in: path, required: true, schema: {type: string}}]
        responses:
          200: {description: "{issue, state, counts, rate_per_second, failures, unknown, feedback, rates, domains,
            per_minute, …, clicks: {tracking, total, by_kind, papers: [{paper, title, areas, clicks, by_kind}],
            areas: [{area, clicks, top}], per_day: [{day, clicks}]}}"}
          404: {description: the issue has not been sent}
        """
        slug = request.path_params["slug"]
        found = await self.a.db(_report_json, slug, self.a.config)
        if found is None:
            raise ApiError(404, f"{slug} has not been sent: there is no report")
        return JSONResponse(found)

    # --- helpers ------------------------------------------------------------------------------------------------

    async def found(self, request: Request, need_file: bool = False) -> IssueStatus:
        slug = request.path_params["slug"]
        found = await self.a.db(self.status.issue, slug)
        if found is None:
            raise ApiError(404, f"no issue {slug!r}")
        if need_file and (found.issue is None or found.path is None):
            raise ApiError(404 if found.error == "no issue file" else 400, f"{slug}: {found.error}")
        return found

    @staticmethod
    def who(request: Request) -> Who:
        who: Who = request.state.who
        return who

    @staticmethod
    def confirmed(date: str, body: dict[str, Any]) -> None:
        try:
            control.confirm(date, str(body.get("confirm", "")))
        except ActionRefused as exc:
            raise ApiError(400, str(exc)) from None

    @staticmethod
    async def refusing(work: Awaitable[T]) -> T:
        """Await ``work``; a refusal the issue's state explains is 409 (other mistakes stay 400)."""
        try:
            return await work
        except (ActionRefused, NotReady, NothingToSend) as exc:
            raise ApiError(409, str(exc)) from None


def _report_json(conn: Connection, slug: str, config: Config) -> dict[str, Any] | None:
    found, more, clicks = report(conn, slug), insights(conn, slug), click_report(conn, config, slug)
    if found is None or more is None or clicks is None:
        return None
    return {**found.as_json(), **more.as_json(), **clicks.as_json()}
