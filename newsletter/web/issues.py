"""Issues on the web: the archive (sent issues only) and the editor's live preview.

The archive shows an issue only once its send has started (it has an ``issues`` row), so a draft
in ``issues/`` is never public; the preview shows any issue file, rendered from the live template
and content files on every request. An issue is looked up by its file stem among the issue files,
never by a path built from the URL.
"""

from __future__ import annotations

import html as htmllib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..config import Config
from ..content import Issue, issue_files, load_issue
from ..lifecycle import PUBLISHED
from ..render import Renderer
from ..store import tables as t
from .feeds import link_tags
from .filecache import FileCache
from .guard import CSRF_FIELD


@dataclass(frozen=True)
class Published:
    slug: str
    title: str
    started: datetime | None


def published(conn: Connection) -> list[Published]:
    """Every issue whose send has started, newest first."""
    i = t.issues.c
    rows = conn.execute(sa.select(i.slug, i.title, i.started_at).where(i.state.in_(PUBLISHED))
                        .order_by(i.created_at.desc(), i.id.desc())).all()
    return [Published(r.slug, r.title, r.started_at) for r in rows]


def is_published(conn: Connection, slug: str) -> bool:
    i = t.issues.c
    return conn.scalar(sa.select(i.id).where(i.slug == slug, i.state.in_(PUBLISHED))) is not None


def issue_file(config: Config, slug: str) -> Path | None:
    return next((p for p in issue_files(config.path("issues")) if p.stem == slug), None)


# Where the visitor's CSRF field value goes in the cached archive page; filled on every request.
CSRF_MARK = "nl-archive-csrf-field"


def web_slots(config: Config) -> dict[str, str]:
    """Slot values for the issue read on the web: no subscriber (the web render leaves out greeting and links)."""
    signup = f"{config.newsletter.base_url}/subscribe"
    return {"name": "", "email": "", "unsubscribe_url": signup, "preferences_url": signup}


class Archive:
    """Whole issues (every paper in full) as HTML, rendered once per issue file version, advertising the feeds.

    The page is the issue, not a copy of someone's email: no greeting, no reader's links, and a subscribe
    box whose CSRF field (``CSRF_MARK`` in the cached page) is the visitor's own."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._pages: FileCache[str | None] = FileCache()

    def html(self, path: Path, csrf: str) -> str | None:
        page = self._pages.get(path, self._render)
        return page.replace(CSRF_MARK, htmllib.escape(csrf), 1) if page is not None else None

    def _render(self, path: Path) -> str | None:
        issue = load_issue(path, self.config.newsletter.areas)
        # relative to /archive/<issue>, so it holds under a root path too
        web = {"action": "../subscribe", "csrf_field": CSRF_FIELD, "csrf": CSRF_MARK}
        group = Renderer(self.config).render(issue, self.config.newsletter.areas, web=web)
        if group is None:  # an issue without papers
            return None
        return group.fill(web_slots(self.config))[0].replace("</head>", link_tags(self.config) + "</head>", 1)


def load(config: Config, path: Path) -> Issue:
    return load_issue(path, config.newsletter.areas)
