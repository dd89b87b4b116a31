"""Atom feeds of sent issues: ``/feed.xml`` (one entry per issue) and ``/feed/<area>.xml`` (one per paper).

A feed lists an issue only once its send has *finished* (state ``sent``): an entry appears when
every copy is out, never while a send is running or paused, and a draft never appears. An entry's
``updated`` is that finish time, so it does not move afterwards. The per-area feeds carry one entry
per paper, linking to the paper's anchor on the issue's archive page: a reader who follows only RL
sees each RL paper as its own item, never a whole issue of which most is Vision. Every URL in a
feed is absolute, from ``[newsletter] base_url``; feedgen (lxml) escapes all text, and characters
XML cannot hold at all are dropped first.
"""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from feedgen.feed import FeedGenerator  # type: ignore[import-untyped]
from sqlalchemy.engine import Connection

from ..clock import aware
from ..config import Config
from ..content import Issue, Paper, issue_files, load_issue
from ..errors import NewsletterError
from ..lifecycle import IssueState
from ..store import tables as t
from .filecache import FileCache

log = logging.getLogger("newsletter.web")
LATEST = 20  # issues a feed looks at: a reader polls weekly, twenty weeks is plenty of catching up
MEDIA_TYPE = "application/atom+xml"
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Sent:
    slug: str
    title: str
    at: datetime  # when the send finished


def sent(conn: Connection, limit: int = LATEST) -> list[Sent]:
    """The latest finished issues, newest first."""
    i = t.issues.c
    when = sa.func.coalesce(i.finished_at, i.started_at, i.created_at)
    # finished once: a late joiner's copy (send/latejoin.py) puts the issue back to sending for a moment, which must
    # not take it out of the feed
    finished = sa.or_(i.state == IssueState.SENT, i.finished_at.is_not(None))
    rows = conn.execute(sa.select(i.slug, i.title, when.label("at")).where(finished)
                        .order_by(when.desc(), i.id.desc()).limit(limit)).all()
    return [Sent(r.slug, r.title, aware(r.at)) for r in rows]


def area_slug(area: str) -> str:
    """``RL`` → ``rl``: the area's name in its feed URL."""
    return re.sub(r"[^a-z0-9]+", "-", area.casefold()).strip("-") or "area"


def feed_urls(config: Config) -> list[tuple[str, str]]:
    """(title, absolute URL) of every feed: all issues first, then one per area."""
    nl = config.newsletter
    return [(nl.name, f"{nl.base_url}/feed.xml")] + [
        (f"{nl.name}: {area}", f"{nl.base_url}/feed/{area_slug(area)}.xml") for area in nl.areas]


def link_tags(config: Config) -> str:
    """The ``<link rel="alternate">`` elements that advertise the feeds in a page's head."""
    return "".join(f'<link rel="alternate" type="{MEDIA_TYPE}" title="{html.escape(title)}" href="{html.escape(url)}">'
                   for title, url in feed_urls(config))


def _x(text: str) -> str:
    return _NOT_XML.sub("", text)


class Feeds:
    """Builds the feeds; each issue file is read once per version (its mtime), like the archive pages."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._issues: FileCache[Issue] = FileCache()

    def area(self, slug: str) -> str | None:
        """The configured area whose feed URL uses ``slug``, or None."""
        return next((a for a in self.config.newsletter.areas if area_slug(a) == slug), None)

    def issues(self, found: list[Sent]) -> list[tuple[Sent, Issue]]:
        """The sent issues with their files; one that is gone or broken is left out (its page would 404)."""
        try:
            paths = {p.stem: p for p in issue_files(self.config.path("issues"))}
        except NewsletterError as exc:
            log.warning("feed: %s", exc)
            return []
        loaded = []
        for item in found:
            issue = self.load(paths[item.slug]) if item.slug in paths else None
            if issue is not None:
                loaded.append((item, issue))
        return loaded

    def load(self, path: Path) -> Issue | None:
        try:
            return self._issues.get(path, lambda p: load_issue(p, self.config.newsletter.areas))
        except OSError:  # removed since the folder was listed
            return None
        except NewsletterError as exc:
            log.warning("feed leaves out a sent issue: %s", exc)
            return None

    def feed(self, title: str, path: str) -> FeedGenerator:
        """An empty feed; its ``updated`` becomes its newest entry's (now, while it has none)."""
        nl = self.config.newsletter
        fg = FeedGenerator()
        fg.id(f"{nl.base_url}{path}")
        fg.title(_x(title))
        fg.author(name=_x(nl.name))
        fg.link(href=f"{nl.base_url}{path}", rel="self", type=MEDIA_TYPE)
        fg.link(href=f"{nl.base_url}/archive", rel="alternate", type="text/html")
        fg.language(nl.language)
        return fg

    def all_issues(self, found: list[Sent]) -> bytes:
        """One entry per sent issue: its title, its archive page, its papers as the summary."""
        loaded = self.issues(found)
        fg = self.feed(self.config.newsletter.name, "/feed.xml")
        for item, issue in loaded:
            url = self.archive_url(item.slug)
            fe = fg.add_entry(order="append")
            fe.id(url)
            fe.title(_x(item.title))
            fe.link(href=url, rel="alternate", type="text/html")
            fe.updated(item.at)
            fe.published(item.at)
            fe.summary(_x(_papers_summary(issue)))
            for area in dict.fromkeys(a for p in issue.papers for a in p.areas):
                fe.category(term=_x(area))
        return _finish(fg, [item.at for item, _ in loaded])

    def one_area(self, area: str, found: list[Sent]) -> bytes:
        """One entry per paper of ``area`` in the sent issues, linking to its anchor on the archive page."""
        loaded = self.issues(found)
        papers = [(item, p) for item, issue in loaded for p in issue.papers if area in p.areas]
        fg = self.feed(f"{self.config.newsletter.name}: {area}", f"/feed/{area_slug(area)}.xml")
        for item, paper in papers:
            url = f"{self.archive_url(item.slug)}#{paper.anchor}"
            fe = fg.add_entry(order="append")
            fe.id(url)
            fe.title(_x(paper.title))
            fe.link(href=url, rel="alternate", type="text/html")  # the only link: see _paper_summary
            fe.updated(item.at)
            fe.published(item.at)
            fe.summary(_x(_paper_summary(paper, item.title)))
            for name in paper.areas:
                fe.category(term=_x(name))
        return _finish(fg, [item.at for item, _ in papers])

    def archive_url(self, slug: str) -> str:
        return f"{self.config.newsletter.base_url}/archive/{slug}"


def _finish(fg: FeedGenerator, times: list[datetime]) -> bytes:
    if times:
        fg.updated(max(times))
    data: bytes = fg.atom_str(pretty=True)
    return data


def _papers_summary(issue: Issue) -> str:
    lines = [issue.preheader, ""] if issue.preheader else []
    return "\n".join(lines + [f"• {p.title} ({', '.join(p.areas)})" for p in issue.papers])


def _paper_summary(paper: Paper, issue_title: str) -> str:
    """The paper's own URL goes here, not in a ``rel="related"`` link: feedgen 1.0 writes an entry's links
    without their rel (lkiesow/python-feedgen#135), which would make it a second alternate link."""
    parts = [paper.byline, paper.status_label, paper.summary.strip(), paper.url or "",
             f"From the issue “{issue_title}”."]
    return "\n\n".join(p for p in parts if p)
