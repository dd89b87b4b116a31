"""The issue files in the console: the list, and each issue's page with every group's preview at desktop and phone
width (the live preview's renderer, ``web/live.py``), its size as sent and spam score, a test copy, approval.
Sending, pausing and the report are ``sending.py``'s; both pages show the same progress box.

An issue's groups are rendered once per version of its file and of the templates (about 0.2 s for fifteen
groups), and the page's frames read them from there: each frame is the group's email alone, sandboxed, with a CSP
that lets it show its inline styles and images and nothing else.
"""

from __future__ import annotations

import subprocess
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from ... import accounts, lifecycle, schedule, spamcheck
from ...areas import label
from ...content import Issue
from ...errors import NewsletterError
from ...render import GMAIL_CLIP_BYTES
from ...send import control
from ...send.background import Sends
from ...send.report import COMPLAINT_LINE
from ...send.status import IssueStatus, Status
from ..live import GroupView, render_groups, spam_line
from .auth import Who, requires
from .base import ConsoleBase, Section

PHONE, DESKTOP = 375, 700
# A group's email in its frame: its own inline styles and images, nothing else (no script, no form, no fetch).
FRAME_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; base-uri 'none'; "
             "form-action 'none'; frame-ancestors 'self'")
READY_WORDS = {"file": "ready (file)", "approved": "ready (approved)", "changed": "changed since approval",
               "draft": "draft"}
DONE = {"sending": "The send has started.", "enqueued": "The outbox is made: the workers deliver it.",
        "paused": "Paused: every process sending it stops at its next batch.", "resumed": "Sending again.",
        "cancelled": "Cancelled: the rows still to deliver are skipped."}


@dataclass(frozen=True)
class Rendered:
    views: dict[str, GroupView | None]     # group key → its render (None: no paper meets it)
    areas: dict[str, tuple[str, ...]]


class Groups:
    """Each issue's groups, rendered again only when its file or a template changed; their spam scores likewise
    (about a second each, so one per group and version however often the page asks)."""

    def __init__(self, templates: Path) -> None:
        self.templates = templates
        self._made: dict[Path, tuple[tuple[int, int], Rendered]] = {}
        self._spam: dict[tuple[Path, tuple[int, int], str], str] = {}
        self._lock = threading.Lock()

    def get(self, console: ConsoleBase, issue: Issue, path: Path) -> Rendered:
        stamp = self._stamp(path)
        with self._lock:
            kept = self._made.get(path)
        if kept and kept[0] == stamp:
            return kept[1]
        made = Rendered(*render_groups(console.config, issue))
        with self._lock:
            self._made[path] = (stamp, made)
        return made

    def spam(self, console: ConsoleBase, issue: Issue, path: Path, key: str) -> str:
        """SpamAssassin's local score of one group's copy, as ``issue check --spam`` words it."""
        at = (path, self._stamp(path), key)
        with self._lock:
            kept = self._spam.get(at)
        if kept is None:
            try:
                kept = spam_line(console.config, issue, key)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:  # said on the page, tried again later
                return f"{key}: no score: {exc}"
            with self._lock:
                self._spam[at] = kept
        return kept

    def _stamp(self, path: Path) -> tuple[int, int]:
        return path.stat().st_mtime_ns, max((p.stat().st_mtime_ns for p in self.templates.rglob("*")), default=0)


_SHARED: weakref.WeakKeyDictionary[ConsoleBase, tuple[Status, Sends, Groups]] = weakref.WeakKeyDictionary()


def shared(console: ConsoleBase) -> tuple[Status, Sends, Groups]:
    """The console's one Status (its count caches), the process's Sends, and the rendered groups, made on first use
    and shared by the dashboard's, the issues' and the sending sections."""
    if console not in _SHARED:
        _SHARED[console] = (Status(console.config), Sends.of(console.config, console.engine, console.now),
                            Groups(console.config.path("templates")))
    return _SHARED[console]


def operates(request: Request) -> bool:
    """Whether the signed-in user may send, pause, resume and cancel (the pages show those forms only then)."""
    who: Who = request.state.who
    return accounts.allows(who.role, "operator")


class Issues(Section):
    def __init__(self, console: ConsoleBase) -> None:
        super().__init__(console)
        self.status, self.sends, self.groups = shared(console)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/issues", self.list_page), Route("/issues/{slug}", self.issue_page),
            Route("/issues/{slug}/frame/{key}", self.frame),
            Route("/issues/{slug}/test", self.test_copy, methods=["POST"]),
            Route("/issues/{slug}/approve", self.approve, methods=["POST"]),
        ]

    @requires("editor")
    async def list_page(self, request: Request) -> Response:
        issues = await self.c.db(self.status.issues)
        return self.c.admin_page(request, "issues.html.j2", title="Issues", issues=issues, words=READY_WORDS,
                                 operator=operates(request), line=COMPLAINT_LINE)

    @requires("editor")
    async def issue_page(self, request: Request) -> Response:
        spam = request.query_params.get("spam", "")
        done = DONE.get(request.query_params.get("done", ""), "")
        return await self.show(request, notice=done, spam_key=spam)

    async def show(self, request: Request, status: int = 200, notice: str = "", error: str = "",
                   spam_key: str = "") -> Response:
        """The issue's page, with the outcome of what was just done (``notice`` or ``error``)."""
        found = await self.found(request)
        if found is None:
            return self.c.admin_page(request, "message.html.j2", 404, title="No such issue",
                                     text="There is no issue file or send by that name.")
        rendered, spam = None, ""
        if found.issue is not None and found.path is not None:
            rendered = await run_in_threadpool(self.groups.get, self.c, found.issue, found.path)
            if spam_key in rendered.views and spamcheck.spamassassin():
                spam = await run_in_threadpool(self.groups.spam, self.c, found.issue, found.path, spam_key)
        return self.c.admin_page(
            request, "issue.html.j2", status, title="Issues", s=found, rendered=rendered, notice=notice,
            error=error, spam_key=spam_key, spam=spam, can_score=spamcheck.spamassassin() is not None,
            clip=GMAIL_CLIP_BYTES, phone=PHONE, desktop=DESKTOP, words=READY_WORDS, label=label,
            editor=self.c.config.newsletter.editor, operator=operates(request))

    async def found(self, request: Request) -> IssueStatus | None:
        return await self.c.db(self.status.issue, request.path_params["slug"])

    @requires("editor")
    async def frame(self, request: Request) -> Response:
        """One group's email, for the issue page's frames (the sample subscriber's copy, as the live preview has it)."""
        found = await self.found(request)
        if found is None or found.issue is None or found.path is None:
            return PlainTextResponse("No such issue file.", 404)
        rendered = await run_in_threadpool(self.groups.get, self.c, found.issue, found.path)
        view = rendered.views.get(request.path_params["key"])
        if view is None:
            return PlainTextResponse("No paper of this issue meets this group: it gets no email.", 404)
        return HTMLResponse(view.html, headers={"Content-Security-Policy": FRAME_CSP,
                                                "X-Frame-Options": "SAMEORIGIN", "Cache-Control": "no-store"})

    @requires("editor")
    async def test_copy(self, request: Request) -> Response:
        form = await self.c.checked_form(request)
        found = await self.found(request)
        if found is None or found.issue is None or found.path is None:
            return await self.show(request, 404, error="No loadable issue file by that name.")
        key, to = str(form.get("group", "all")), str(form.get("to", "")).strip() or self.c.config.newsletter.editor
        rendered = await run_in_threadpool(self.groups.get, self.c, found.issue, found.path)
        if rendered.views.get(key) is None:
            return await self.show(request, 400, error=f"No paper meets the group {key!r}: nothing to send.")
        who: Who = request.state.who
        try:
            line = await run_in_threadpool(control.test_copy, self.c.config, self.c.engine, found.issue, found.path,
                                           to, rendered.areas[key])
        except NewsletterError as exc:
            return await self.show(request, 400, error=str(exc))
        await self.c.act(who, "issue.test", found.slug, control.noted, detail=f"group {key} to {to}")
        return await self.show(request, notice=line)

    @requires("editor")
    async def approve(self, request: Request) -> Response:
        await self.c.checked_form(request)
        found = await self.found(request)
        if found is None or found.issue is None:
            return await self.show(request, 404, error="No loadable issue file by that name.")
        issue, path, now = found.issue, found.path, self.c.stamp()
        await self.c.act(request.state.who, "issue.approve", issue.slug, lifecycle.approve, issue, now,
                         detail=f"sha256 {issue.content_hash[:12]}")
        try:
            line = await run_in_threadpool(schedule.after_approval, self.c.config, self.c.engine, issue.slug, now,
                                           lambda: self.sends.send(issue, path))
        except NewsletterError as exc:  # approved, but its send at once (within grace) was refused
            return await self.show(request, 400, error=f"Approved; its send did not start: {exc}")
        return await self.show(request, notice=line)

