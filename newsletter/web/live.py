"""``newsletter preview ISSUE --serve``: every group of an issue in a local page, re-rendered on each save.

watchfiles watches the issue's folder (editors save by writing a new file and renaming it over the
old one, which a watch on the file itself would lose) and the templates folder; each save reloads
the issue and renders all its groups (about 0.2 s for the 15 groups of a shipped issue) in a worker
thread, and pushes a summary to every open page as a server-sent event. The events are a plain
``text/event-stream`` StreamingResponse: twenty lines, no extra dependency. A mistake in the file
keeps the last good render on the page, under the mistake's one-line errors.

The page binds loopback only and answers only to a loopback Host (a DNS-rebinding page cannot read
it); its POSTs, "send me a test" and "add papers by arXiv id", need the random token of this run, which
only the page has.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import socket
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import jinja2
import sqlalchemy as sa
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from watchfiles import Change, awatch

from .. import spamcheck
from ..areas import all_groups, group_key, label
from ..arxiv import Client, client_for
from ..config import Config
from ..content import Issue, load_issue
from ..errors import NewsletterError
from ..links import sample_links
from ..papers import add_papers
from ..preview import SAMPLE_NAME
from ..render import GMAIL_CLIP_BYTES, Renderer, preview_slots
from ..send import control
from ..send.compose import prepare
from ..send.mailer import sizing_mailer

DEFAULT_PORT = 8025
HOST = "127.0.0.1"
KEEPALIVE_SECONDS = 15.0
TEMPLATES = Path(__file__).with_name("templates")


@dataclass(frozen=True)
class GroupView:
    """One group as the page shows it: the sample subscriber's HTML and text, and the message's size as sent."""

    key: str
    subject: str
    html: str
    text: str
    size: int


@dataclass(frozen=True)
class Snapshot:
    """What the page shows after one save: the issue's groups (None: no paper meets it) and any mistakes."""

    version: int
    title: str
    errors: tuple[str, ...]
    groups: dict[str, GroupView | None]
    areas: dict[str, tuple[str, ...]]
    issue: Issue | None

    def label(self, key: str) -> str:
        return "All areas" if key == "all" else label(self.areas[key])

    def summary(self) -> dict[str, Any]:
        groups = [{"key": key, "label": self.label(key), "empty": view is None,
                   "subject": view.subject if view else "", "size": view.size if view else 0}
                  for key, view in self.groups.items()]
        return {"version": self.version, "title": self.title, "errors": list(self.errors), "groups": groups,
                "clip": GMAIL_CLIP_BYTES}


def build(config: Config, path: Path, version: int, last: Snapshot | None = None) -> Snapshot:
    """Load and render the issue; on a mistake keep ``last``'s groups and say what is wrong, one line each."""
    try:
        issue = load_issue(path, config.newsletter.areas)
        groups, areas = render_groups(config, issue)
    except NewsletterError as exc:
        errors = tuple(line for line in str(exc).splitlines() if line.strip())
    except Exception as exc:  # a crash in a template or the MJML compiler: shown, and the next save retries
        errors = (f"{path}: {type(exc).__name__}: {exc}",)
    else:
        return Snapshot(version, issue.title, (), groups, areas, issue)
    if last is None:
        return Snapshot(version, path.stem, errors, {}, {}, None)
    return dataclasses.replace(last, version=version, errors=errors)


def render_groups(config: Config, issue: Issue) -> tuple[dict[str, GroupView | None], dict[str, tuple[str, ...]]]:
    """Every group of the issue, in configured order, sized as ``issue check`` sizes it (headers, signature)."""
    renderer, mailer = Renderer(config), sizing_mailer(config)
    sender = dataclasses.replace(mailer.sender, campaign=issue.slug)
    links = sample_links(config)
    slots = preview_slots(config, SAMPLE_NAME)
    views: dict[str, GroupView | None] = {}
    keys: dict[str, tuple[str, ...]] = {}
    for areas in all_groups(renderer.areas):
        key = group_key(areas, renderer.areas)
        keys[key] = areas
        group = renderer.render(issue, areas)
        if group is None:
            views[key] = None
            continue
        html, text = group.fill(slots)
        views[key] = GroupView(key, group.subject, html, text, mailer.size(prepare(group, sender), links))
    return views, keys


def spam_line(config: Config, issue: Issue, key: str) -> str:
    """SpamAssassin's local score of one group's copy (about a second), as ``issue check --spam`` words it."""
    command = spamcheck.spamassassin()
    if command is None:
        return "spamassassin is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        for found, path in spamcheck.write_copies(config, issue, Path(tmp), only=key):
            return spamcheck.score_file(path, found, command).line()
    return f"{key}: no paper meets this group"


class LivePreview:
    """The watched issue, its latest snapshot, and the open pages waiting for the next one."""

    def __init__(self, config: Config, path: Path, engine: Callable[[], sa.Engine], initial: str = "all") -> None:
        self.config, self.path, self.engine, self.initial = config, path.resolve(), engine, initial
        self.templates = config.path("templates")
        self.token = secrets.token_urlsafe(24)
        self.snapshot = Snapshot(0, path.stem, (), {}, {}, None)
        self.stopping = False
        self._changed = asyncio.Event()
        self._spam: dict[tuple[int, str], str] = {}
        self._arxiv: Client | None = None  # one client: its spacing of requests holds across clicks
        self._adding = threading.Lock()

    async def refresh(self) -> None:
        version = self.snapshot.version + 1
        self.snapshot = await anyio.to_thread.run_sync(build, self.config, self.path, version, self.snapshot)
        self._notify()

    def stop(self) -> None:
        """End every open event stream, so the server can shut down (uvicorn waits for open responses)."""
        self.stopping = True
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def relevant(self, change: Change, name: str) -> bool:
        path = Path(name)
        return path == self.path or self.templates in path.parents

    async def watch(self, ready: asyncio.Event, stop: asyncio.Event) -> None:
        """Re-render on every save of the issue or a template until ``stop``; ``ready`` once the first render is in."""
        changes = awatch(self.path.parent, self.templates, watch_filter=self.relevant, stop_event=stop, step=50,
                         debounce=800)
        pending = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0)  # its first step sets up the watches: a save from now on is seen
        await self.refresh()
        ready.set()
        while True:
            try:
                await pending
            except StopAsyncIteration:
                return
            await self.refresh()
            pending = asyncio.ensure_future(anext(changes))

    async def events(self) -> AsyncIterator[str]:
        """The event stream of one page: the current snapshot at once, then each new one."""
        seen = -1
        while not self.stopping:
            if self.snapshot.version != seen:
                seen = self.snapshot.version
                yield f"event: update\ndata: {json.dumps(self.snapshot.summary())}\n\n"
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), KEEPALIVE_SECONDS)
                continue
            yield ": keep-alive\n\n"  # a closed tab shows up as a failed write

    def view(self, key: str) -> GroupView:
        view = self.snapshot.groups.get(key)
        if view is None:
            raise LookupError(key)
        return view

    async def spam(self, key: str) -> str:
        snap = self.snapshot
        if snap.issue is None or key not in snap.groups:
            return "no render to score yet"
        if (snap.version, key) not in self._spam:
            try:
                line = await anyio.to_thread.run_sync(spam_line, self.config, snap.issue, key)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:  # said on the page, not a 500
                line = f"{key}: no score: {exc}"
            self._spam[snap.version, key] = line
        return self._spam[snap.version, key]

    def send_test(self, to: str, key: str) -> tuple[bool, str]:
        """One [Test] copy of the group through the send path a real send uses (``send --test-to``)."""
        snap = self.snapshot
        if snap.errors or snap.issue is None:
            return False, "the issue file has mistakes: fix them first"
        if snap.groups.get(key) is None:
            return False, f"no paper meets the group {key}: nothing to send"
        try:
            return True, control.test_copy(self.config, self.engine(), snap.issue, self.path, to, snap.areas[key])
        except NewsletterError as exc:
            return False, str(exc)

    def add_papers(self, ids: str) -> tuple[bool, str]:
        """``issue add`` from the page, through the same library call; the watcher re-renders once the file is
        replaced. One at a time: two clicks at once would each append to the file as the other found it."""
        with self._adding:
            try:
                self._arxiv = self._arxiv or client_for(self.config)
                done = add_papers(self.path, [ids], self.config, self._arxiv)
            except NewsletterError as exc:
                return False, str(exc)
        return True, "\n".join(done.lines)


def create_live_app(live: LivePreview) -> Starlette:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    page = env.get_template("live.html.j2")

    async def index(request: Request) -> Response:
        return HTMLResponse(page.render(
            token=live.token, file=str(live.path), initial=live.initial, editor=live.config.newsletter.editor,
            spam=spamcheck.spamassassin() is not None))

    async def events(request: Request) -> Response:
        return StreamingResponse(live.events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def group(request: Request) -> Response:
        try:
            view = live.view(request.path_params["key"])
        except LookupError:
            return PlainTextResponse("no such group in the last good render", status_code=404)
        if request.path_params["part"] == "text":
            return PlainTextResponse(view.text, headers={"Cache-Control": "no-store"})
        return HTMLResponse(view.html, headers={"Cache-Control": "no-store"})

    async def spam(request: Request) -> Response:
        return JSONResponse({"line": await live.spam(request.path_params["key"])})

    async def test_send(request: Request) -> Response:
        form = await request.form()
        if not secrets.compare_digest(str(form.get("token", "")), live.token):
            return JSONResponse({"ok": False, "message": "wrong token: reload the page"}, status_code=403)
        to = str(form.get("to", "")).strip() or live.config.newsletter.editor
        if not to:
            return JSONResponse({"ok": False, "message": "no address: fill it in, or set [newsletter] editor"})
        ok, message = await anyio.to_thread.run_sync(live.send_test, to, str(form.get("group", "all")))
        return JSONResponse({"ok": ok, "message": message})

    async def arxiv_add(request: Request) -> Response:
        form = await request.form()
        if not secrets.compare_digest(str(form.get("token", "")), live.token):  # as "send me a test"
            return JSONResponse({"ok": False, "message": "wrong token: reload the page"}, status_code=403)
        ok, message = await anyio.to_thread.run_sync(live.add_papers, str(form.get("ids", "")))
        return JSONResponse({"ok": ok, "message": message})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ready, stop = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(live.watch(ready, stop))
        await ready.wait()
        try:
            yield
        finally:
            live.stop()
            stop.set()
            await task

    return Starlette(routes=[
        Route("/", index), Route("/events", events), Route("/group/{key}/{part}", group),
        Route("/spam/{key}", spam), Route("/test", test_send, methods=["POST"]),
        Route("/arxiv", arxiv_add, methods=["POST"]),
    ], middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])],
        lifespan=lifespan)


class LiveServer(uvicorn.Server):
    """uvicorn that ends the open event streams first: otherwise its shutdown waits for them for ever."""

    def __init__(self, live: LivePreview, port: int, **options: Any) -> None:
        super().__init__(uvicorn.Config(create_live_app(live), host=HOST, port=port, **options))
        self.live = live

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.live.stop()
        await super().shutdown(sockets)


def serve(config: Config, path: Path, port: int, engine: Callable[[], sa.Engine], initial: str = "all") -> None:
    """Run the live preview on loopback until interrupted."""
    LiveServer(LivePreview(config, path, engine, initial), port, log_level="warning").run()
