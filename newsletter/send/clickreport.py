"""An issue's click counts (``[tracking] clicks``, clicks.py) as ``newsletter report`` prints them, in its JSON, in
``report --html``, on the console's report page and in the API: the papers most clicked, by link kind, and by area
(a paper of two areas counts in both). Two GROUP BY reads over the ``clicks`` primary key; titles and areas come
from the issue file, and a paper no longer in it is shown by its anchor. The one place these rules are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import lifecycle
from ..clicks import KINDS
from ..config import Config
from ..content import ISSUE_SUFFIX, Issue, load_issue
from ..errors import NewsletterError
from ..store import tables as t

TOP = 10         # papers in the report's list (the JSON has them all)
TOP_IN_AREA = 3  # papers named for each area


@dataclass(frozen=True)
class PaperClicks:
    paper: str                 # its anchor, as the links and the archive page name it
    title: str                 # the anchor again when the issue file no longer has the paper
    areas: tuple[str, ...]
    kinds: dict[str, int]      # every kind, clicks on the paper's link of that kind

    @property
    def total(self) -> int:
        return sum(self.kinds.values())

    def as_json(self) -> dict[str, object]:
        return {"paper": self.paper, "title": self.title, "areas": list(self.areas), "clicks": self.total,
                "by_kind": self.kinds}


@dataclass(frozen=True)
class AreaClicks:
    area: str
    clicks: int                # of every paper of the area
    top: tuple[PaperClicks, ...]  # its most clicked papers with a click, at most TOP_IN_AREA


@dataclass(frozen=True)
class ClickReport:
    issue: str
    tracking: bool             # [tracking] clicks now (counts may be from before it was switched off)
    papers: list[PaperClicks]  # every paper, most clicked first, then in the issue's order
    areas: list[AreaClicks]    # in the configured order
    per_day: list[tuple[date, int]]

    @property
    def total(self) -> int:
        return sum(p.total for p in self.papers)

    def by_kind(self) -> dict[str, int]:
        return {kind: sum(p.kinds[kind] for p in self.papers) for kind in KINDS}

    def top(self) -> list[PaperClicks]:
        return [p for p in self.papers if p.total][:TOP]

    def as_json(self) -> dict[str, object]:
        return {"clicks": {
            "tracking": self.tracking, "total": self.total, "by_kind": self.by_kind(),
            "papers": [p.as_json() for p in self.papers],
            "areas": [{"area": a.area, "clicks": a.clicks, "top": [p.paper for p in a.top]} for a in self.areas],
            "per_day": [{"day": d.isoformat(), "clicks": n} for d, n in self.per_day],
        }}


def click_report(conn: Connection, config: Config, slug: str) -> ClickReport | None:
    """The issue's click counts; None for an issue never sent."""
    iid = lifecycle.issue_id(conn, slug)
    if iid is None:
        return None
    c = t.clicks.c
    counted = sa.func.sum(c.clicks)
    counts = {(r.paper, r.kind): int(r.n) for r in conn.execute(
        sa.select(c.paper, c.kind, counted.label("n")).where(c.issue_id == iid).group_by(c.paper, c.kind))}
    per_day = [(r.day, int(r.n)) for r in conn.execute(
        sa.select(c.day, counted.label("n")).where(c.issue_id == iid).group_by(c.day).order_by(c.day))]
    papers = _papers(_issue(config, slug), counts)
    return ClickReport(slug, config.tracking.clicks, papers, _areas(config.newsletter.areas, papers), per_day)


def _issue(config: Config, slug: str) -> Issue | None:
    """The issue file as it is now, or None (gone or broken: the counts are shown by anchor)."""
    try:
        return load_issue(config.path("issues") / f"{slug}{ISSUE_SUFFIX}", config.newsletter.areas)
    except (NewsletterError, OSError):
        return None


def _papers(issue: Issue | None, counts: dict[tuple[str, str], int]) -> list[PaperClicks]:
    """Every paper of the issue and every anchor counted, most clicked first (ties in the issue's order)."""
    known = [(p.anchor, p.title, tuple(p.areas)) for p in issue.papers] if issue else []
    anchors = {a for a, _, _ in known}
    known += [(a, a, ()) for a in sorted({a for a, _ in counts} - anchors)]
    papers = [PaperClicks(a, title, areas, {k: counts.get((a, k), 0) for k in KINDS}) for a, title, areas in known]
    return sorted(papers, key=lambda p: -p.total)  # sorted() is stable: ties keep the issue's order


def _areas(areas: list[str], papers: list[PaperClicks]) -> list[AreaClicks]:
    out = []
    for area in areas:
        mine = [p for p in papers if area in p.areas]
        out.append(AreaClicks(area, sum(p.total for p in mine), tuple(p for p in mine if p.total)[:TOP_IN_AREA]))
    return out
