"""Where every issue stands, for the console's dashboard and the API: readiness, state, counts by row state, what
came back (bounce and complaint rates against the bulk-sender lines), and the next weekly send.

Counting a large outbox is the costly read (42 ms at 1,000,000 rows on SQLite, ``report.state_counts``), so a
``Status`` keeps counts: those of a sent issue for as long as it stays sent with the same ``finished_at`` (no row of
a sent issue changes state; a resend or a send to newcomers makes it ``sending`` first), those of any other issue
for ``FRESH`` seconds, which every open progress stream of the process then shares. What came back is read each
time: bounces and complaints arrive for days after a send, and their issue index makes the read small.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import lifecycle, schedule
from ..clock import aware
from ..config import Config
from ..content import Issue, issue_files, load_issue
from ..errors import NewsletterError
from ..lifecycle import IssueState, Readiness, RowState
from ..store import tables as t
from .report import COMPLAINT_LINE, returned, state_counts

FRESH = 0.4       # seconds a running send's counts are shared (progress streams read every 0.5 s)
NEAR = COMPLAINT_LINE / 2  # complaints from here are marked "near" Gmail's and Yahoo's 0.3 % line
LEFT = (RowState.QUEUED, RowState.SENDING, RowState.DEFERRED)  # rows a send has still to finish


@dataclass(frozen=True)
class Progress:
    """A send's state and its rows by state (all zero before it starts)."""

    state: IssueState | None
    reason: str | None
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def left(self) -> int:
        return sum(self.counts.get(s, 0) for s in LEFT)

    @property
    def done(self) -> int:
        return self.total - self.left

    @property
    def percent(self) -> int:
        """Whole percent of the rows done, 100 only when none is left."""
        return 100 if not self.left else self.done * 100 // self.total

    def as_json(self) -> dict[str, Any]:
        return {"state": self.state.value if self.state else None, "reason": self.reason, "counts": self.counts,
                "total": self.total, "done": self.done, "left": self.left, "percent": self.percent}


@dataclass(frozen=True)
class IssueStatus:
    """One issue: its file (or the mistake that keeps it from loading) and its send."""

    slug: str
    title: str
    issue: Issue | None
    path: Path | None
    readiness: Readiness | None  # None: the file does not load (``error``) or is gone
    error: str | None
    progress: Progress
    returned: dict[str, int]     # bounced_hard, bounced_soft, complained

    def rates(self) -> dict[str, float | None]:
        """Bounces and complaints over the messages sent."""
        sent = self.progress.counts.get(RowState.SENT, 0)
        bounced = self.returned.get("bounced_hard", 0) + self.returned.get("bounced_soft", 0)
        complained = self.returned.get("complained", 0)
        return {"bounced": bounced / sent if sent else None, "complained": complained / sent if sent else None}

    def complaints(self) -> str | None:
        """``over`` Gmail's and Yahoo's 0.3 % line, ``near`` it (from half of it), ``ok``; None before a send."""
        rate = self.rates()["complained"]
        if rate is None:
            return None
        return "over" if rate >= COMPLAINT_LINE else "near" if rate >= NEAR else "ok"

    def as_json(self) -> dict[str, Any]:
        return {"slug": self.slug, "title": self.title, "date": self.issue.date.isoformat() if self.issue else None,
                "readiness": self.readiness.value if self.readiness else None,
                "ready": bool(self.readiness and self.readiness.ready), "error": self.error,
                **self.progress.as_json(), "returned": self.returned, "rates": self.rates(),
                "complaints": self.complaints(), "complaint_line": COMPLAINT_LINE}


@dataclass(frozen=True)
class NextSend:
    at: datetime
    slug: str | None               # the issue that week's send would take, if its file exists
    readiness: Readiness | None


class Status:
    """The reads above for one database, with their caches (one per process and face)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._files: dict[Path, tuple[int, Issue]] = {}
        self._counts: dict[int, tuple[object, float, dict[str, int]]] = {}
        self._lock = threading.Lock()

    def issues(self, conn: Connection) -> list[IssueStatus]:
        """Every issue file, and every issue sent whose file is gone, newest first."""
        files = {p.stem: p for p in issue_files(self.config.path("issues"))}
        rows = {r.slug: r for r in conn.execute(_ISSUE_ROWS)}
        approved = lifecycle.approved_hashes(conn)
        return [self._one(conn, slug, files.get(slug), rows.get(slug), approved)
                for slug in sorted(files.keys() | rows.keys(), reverse=True)]

    def issue(self, conn: Connection, slug: str) -> IssueStatus | None:
        path = next((p for p in issue_files(self.config.path("issues")) if p.stem == slug), None)
        row = conn.execute(_ISSUE_ROWS.where(t.issues.c.slug == slug)).first()
        if path is None and row is None:
            return None
        return self._one(conn, slug, path, row, lifecycle.approved_hashes(conn, [slug]))

    def progress(self, conn: Connection, slug: str) -> Progress:
        row = conn.execute(_ISSUE_ROWS.where(t.issues.c.slug == slug)).first()
        return self._progress(conn, row)

    def next_send(self, conn: Connection, now: datetime) -> NextSend:
        """The next weekly slot, the issue it would take (dated within the 7 days before it) and its readiness."""
        at = schedule.next_runs(self.config.schedule, now, 1)[0]
        path = schedule.week_issue(self.config, at)
        if path is None:
            return NextSend(at, None, None)
        try:
            issue = self._load(path)
        except (NewsletterError, OSError):
            return NextSend(at, path.stem, None)
        return NextSend(at, path.stem, lifecycle.issue_readiness(conn, issue))

    def _one(self, conn: Connection, slug: str, path: Path | None, row: Any,
             approved: dict[str, str | None]) -> IssueStatus:
        issue, error = None, None
        if path is not None:
            try:
                issue = self._load(path)
            except NewsletterError as exc:
                error = str(exc).splitlines()[0]
            except OSError as exc:
                error = f"{path.name}: {exc.strerror or exc}"
        title = issue.title if issue else row.title if row is not None else slug
        readiness = lifecycle.readiness(issue, approved) if issue else None
        found = returned(conn, row.id) if row is not None else {}
        return IssueStatus(slug, title, issue, path, readiness, error if path else "no issue file",
                           self._progress(conn, row), found)

    def _load(self, path: Path) -> Issue:
        """The issue file, parsed again only when it changed (its mtime); a broken one raises each time."""
        stamp = path.stat().st_mtime_ns
        with self._lock:
            kept = self._files.get(path)
        if kept and kept[0] == stamp:
            return kept[1]
        issue = load_issue(path, self.config.newsletter.areas)
        with self._lock:
            self._files[path] = (stamp, issue)
        return issue

    def _progress(self, conn: Connection, row: Any) -> Progress:
        if row is None:
            return Progress(None, None, {s.value: 0 for s in RowState})
        state = IssueState(row.state)
        return Progress(state, row.pause_reason, self._counted(conn, row.id, state, row.finished_at))

    def _counted(self, conn: Connection, iid: int, state: IssueState, finished: datetime | None) -> dict[str, int]:
        """``state_counts``, kept while they cannot change (sent) or for ``FRESH`` seconds."""
        key = (state, aware(finished) if finished else None)
        now = time.monotonic()
        with self._lock:
            kept = self._counts.get(iid)
        if kept and kept[0] == key and (state is IssueState.SENT or now - kept[1] < FRESH):
            return kept[2]
        counts = state_counts(conn, iid)
        with self._lock:
            self._counts[iid] = (key, now, counts)
        return counts


_i = t.issues.c
_ISSUE_ROWS = sa.select(_i.id, _i.slug, _i.title, _i.state, _i.pause_reason, _i.finished_at)
