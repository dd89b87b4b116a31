"""``/r/<token>``: a tracked paper link (clicks.py) followed; counted unless a scanner followed it, then redirected
to that paper's link as the issue file has it. A bad token, or one naming a paper or kind the issue does not
have, gets a 404 page and no redirect: the target never comes from the URL.

Counted clicks are written by group commit (``ClickWriter``). A request adds its count to the batch being
gathered and waits for that batch's commit before it answers, so every click answered with a redirect is in the
database: a hard kill loses none that was answered (only those of the batch in flight, whose readers got no
answer). One thread writes: it takes all that is pending and adds it in one transaction (one UPSERT over the
batch's distinct keys, ``clicks.add``). Requests that arrive during a commit join the next batch, so under load
batches grow rather than commits queue. Measured with bench/clicks.py (16 connections, this 2-core machine under
other work): 3,671 counted clicks/s, 63 % of a bare Starlette redirect under the same uvicorn; letting each batch
gather for 2 ms more (``GATHER``) made it 2,525/s, as every reader then waited those 2 ms.

When the database refuses a batch, its counts go back into the next one, and its readers are redirected all the
same (after at most ``WAIT`` seconds): a database in trouble never keeps a reader from a paper. Those counts are
then only in memory until a batch commits, and the log says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import clicks, lifecycle
from ..clicks import Click, Key
from ..clock import Clock
from ..errors import BadToken, NewsletterError
from . import issues
from .filecache import FileCache
from .pages import Pages

log = logging.getLogger("newsletter.web.clicks")
GATHER = 0.0    # seconds a batch waits for more clicks after its first (0: what came during the last commit)
MOST = 1000     # ... unless this many are pending
WAIT = 5.0      # the longest a reader waits for the count of their click before being redirected anyway
RETRY = 1.0     # after a refused batch, the writer waits this long before the next


def _batch() -> Future[None]:
    """A batch's future, which no waiter can cancel for the others (a reader who goes away cancels only their own
    wait)."""
    future: Future[None] = Future()
    future.set_running_or_notify_cancel()
    return future


def _call_in(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: object) -> None:
    """``fn(*args)`` in ``loop``, from the writer's thread; nothing if the loop is gone (a test client's)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


class ClickWriter:
    """Counts from every request of this process, committed in batches by one thread; ``add`` returns the future
    of the batch the count joined, done once it is committed, and ``count`` waits for it in an event loop."""

    def __init__(self, engine: Engine, gather: float = GATHER, most: int = MOST) -> None:
        self.engine, self.gather, self.most = engine, gather, most
        self._cond = threading.Condition()
        self._pending: Counter[Key] = Counter()
        self._size = 0
        self._future = _batch()
        self._thread: threading.Thread | None = None
        self._closing = False
        # per event loop and batch: the future its readers there wait on, and the WAIT timer
        self._waiting: dict[tuple[asyncio.AbstractEventLoop, Future[None]],
                            tuple[asyncio.Future[None], asyncio.TimerHandle]] = {}
        self.written = 0  # clicks this writer committed
        self.batches = 0  # ... in this many transactions

    @property
    def running(self) -> bool:
        """Whether the writer's thread is there (it starts at the first click, ends with ``close``)."""
        return self._thread is not None

    def add(self, key: Key) -> Future[None]:
        with self._cond:
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(target=self._run, name="click-writer", daemon=True)
                self._thread.start()
            self._pending[key] += 1
            self._size += 1
            if self._size == 1 or self._size >= self.most:
                self._cond.notify()
            return self._future

    async def count(self, key: Key) -> None:
        """``add``, then wait for the commit of the batch, at most WAIT seconds. The readers of one batch in one event
        loop share one future, which the writer wakes once: a wake-up per batch rather than per reader (with
        asyncio.wrap_future and asyncio.wait per reader, a click cost 30 µs more of the loop's time)."""
        batch = self.add(key)
        loop = asyncio.get_running_loop()
        found = self._waiting.get((loop, batch))
        if found is None:
            found = self._waiting[(loop, batch)] = (loop.create_future(),
                                                   loop.call_later(WAIT, self._release, loop, batch))
            batch.add_done_callback(lambda _: _call_in(loop, self._release, loop, batch))
        await asyncio.shield(found[0])  # a reader who goes away stops waiting; the others wait on

    def _release(self, loop: asyncio.AbstractEventLoop, batch: Future[None]) -> None:
        """The batch is committed (or WAIT has passed): its readers in ``loop`` are answered."""
        found = self._waiting.pop((loop, batch), None)
        if found is not None:
            found[1].cancel()
            found[0].set_result(None)

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is pending and stop the thread (the app's shutdown; a later ``add`` starts it again)."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            pending, future = taken
            left = self._write(pending)
            future.set_result(None)  # its readers go to their papers, even when the counts wait for the next batch
            if not left:
                continue
            with self._cond:
                if self._closing:
                    log.error("%d click(s) not written: the database refused them at shutdown", left.total())
                    continue
                self._pending.update(left)
                self._size += left.total()
            time.sleep(RETRY)

    def _take(self) -> tuple[Counter[Key], Future[None]] | None:
        """The next batch, once something is pending and ``gather`` has passed (or ``most`` are pending, or it is
        closing); None when closing with nothing pending."""
        with self._cond:
            self._cond.wait_for(lambda: self._size > 0 or self._closing)
            if not self._size:
                self._thread = None
                return None
            if self.gather and not self._closing:
                self._cond.wait_for(lambda: self._size >= self.most or self._closing, timeout=self.gather)
            taken = self._pending, self._future
            self._pending, self._future, self._size = Counter(), _batch(), 0
            return taken

    def _write(self, pending: Counter[Key]) -> Counter[Key]:
        """One transaction for the whole batch; what is left unwritten (the database refused it: logged)."""
        try:
            with self.engine.begin() as conn:
                clicks.add(conn, pending)
        except IntegrityError:  # a row of an issue that is gone: the others are written one by one
            return self._write_each(pending)
        except SQLAlchemyError as exc:
            log.warning("%d click(s) kept for the next batch: %s", pending.total(), str(exc).splitlines()[0])
            return pending
        self.written += pending.total()
        self.batches += 1
        return Counter()

    def _write_each(self, pending: Counter[Key]) -> Counter[Key]:
        left = Counter(pending)
        for key, count in pending.items():
            try:
                with self.engine.begin() as conn:
                    clicks.add(conn, {key: count})
            except IntegrityError:
                log.error("%d click(s) of issue id %d dropped: it is no longer in the database", count, key[0])
            except SQLAlchemyError:
                return left
            else:
                self.written += count
            del left[key]
        self.batches += 1
        return left


class QuietClicks(logging.Filter):
    """Keeps the tracked links out of uvicorn's access log: a line there would tie a client's address to the paper it
    followed, to the second, which is just what counting clicks must not record. (A line also cost 70 µs of the
    event loop, as much as half a bare redirect's: bench/clicks.py's reference server with and without its log.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args  # uvicorn's: client address, method, path with query, HTTP version, status
        return not (isinstance(args, tuple) and len(args) > 2 and str(args[2]).startswith("/r/"))


def quiet_access_log(name: str) -> None:
    """``QuietClicks`` first on the logger ``name``, once (before the redaction filter: a dropped line needs none)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, QuietClicks) for f in logger.filters):
        logger.filters.insert(0, QuietClicks())


Table = dict[tuple[str, str], str]  # (paper anchor, kind) → URL


class Targets:
    """Each issue's tracked targets, read from its file once per version of the file, which is looked at (a stat) at
    most once a ``RECHECK`` seconds: a stat a click cost 57 µs of the event loop's time at 3,000 clicks/s (it lets
    the writer's thread take the GIL), and an editor's fix to a sent issue's link shows within a second."""

    RECHECK = 1.0

    def __init__(self, pages: Pages, clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.clock = pages.config, clock
        self._files: FileCache[Table] = FileCache()
        self._known: dict[str, tuple[float, Path, Table]] = {}  # slug → when last looked at, its file, its table

    def get(self, click: Click) -> str | None:
        """The URL the click leads to; None when the issue, the paper or its link of that kind is not there.
        ``NewsletterError`` when the issue file is broken."""
        known = self._known.get(click.slug)
        if known is None or self.clock() - known[0] >= self.RECHECK:
            known = self._look(click.slug, known[1] if known else None)
            if known is None:
                return None
        return known[2].get((click.paper, click.kind))

    def _look(self, slug: str, path: Path | None) -> tuple[float, Path, Table] | None:
        path = path or issues.issue_file(self.config, slug)
        try:
            found = (self.clock(), path, self._files.get(path, self._table)) if path else None
        except FileNotFoundError:
            found = None
        if found is None:
            self._known.pop(slug, None)
        else:
            self._known[slug] = found
        return found

    def _table(self, path: Path) -> Table:
        issue = issues.load(self.config, path)
        archive = f"{self.config.newsletter.base_url}/archive/{issue.slug}"
        return {(paper.anchor, kind): url for paper in issue.papers for kind in clicks.KINDS
                if (url := clicks.target(paper, kind, archive)) is not None}


class Redirects:
    """The ``/r/{token}`` endpoint of one app, with its writer (``close`` it at shutdown)."""

    def __init__(self, pages: Pages, now: Clock, writer: ClickWriter | None = None) -> None:
        self.pages, self.now = pages, now
        self.tracking = pages.config.tracking
        self.writer = writer or ClickWriter(pages.engine)
        self.targets = Targets(pages)
        self._issue_ids: dict[str, int] = {}

    async def follow(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            found = self.target(token)
        except NewsletterError as exc:  # the issue file went bad since: the editor's to fix, said in the log
            log.error("a click on /r/%s cannot be followed: %s", token, str(exc).replace("\n", "; "))
            return self.pages.message(request, 503, "This link cannot be followed",
                                      "This link cannot be followed at the moment. Please try again later.")
        if found is None:
            return self.pages.message(request, 404, "This link does not work", "The link is damaged or no longer "
                                      "valid.", link="/archive", link_text="All issues")
        click, url = found
        if self.tracking.clicks:
            await self.count(request, click)
        return RedirectResponse(url, 302)

    def target(self, token: str) -> tuple[Click, str] | None:
        """The click a token names and where it leads, or None: a bad token, an unknown issue, paper or kind."""
        try:
            click = clicks.read(self.pages.links, token)
        except BadToken:
            return None
        url = self.targets.get(click)
        return (click, url) if url is not None else None

    async def count(self, request: Request, click: Click) -> None:
        """Count the click unless a scanner made it; return once its batch is committed (at most WAIT seconds)."""
        now = self.now.now()
        why = clicks.not_counted(request.method, request.headers.get("user-agent", ""), click.made, now,
                                 self.tracking.ignore_first_seconds)
        iid = await self.issue_id(click.slug) if why is None else None
        if iid is not None:
            await self.writer.count(clicks.key(iid, click, now))

    async def issue_id(self, slug: str) -> int | None:
        """The issue's id (its send has started), read once per process; None for an issue never sent."""
        if slug not in self._issue_ids:
            found = await self.pages.db(lifecycle.issue_id, slug)
            if found is None:
                return None
            self._issue_ids[slug] = found
        return self._issue_ids[slug]
