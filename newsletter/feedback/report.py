"""``newsletter bounces report``: what came back, by verdict and by recipient domain."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..store import tables as t

TOP_DOMAINS = 20


@dataclass(frozen=True)
class BounceReport:
    issue: str | None
    by_kind: dict[str, int]                    # bounce, complaint, auto-reply, not-bounce, unknown, unsubscribe
    by_class: dict[str, int]                   # hard, soft (bounces)
    by_domain: list[tuple[str, int, int, int]]  # (domain, hard, soft, complaints), most first
    ignored: int                               # notices that changed nothing (forged, replayed, never sent)

    def as_json(self) -> dict[str, object]:
        return {"issue": self.issue, "by_kind": self.by_kind, "by_class": self.by_class, "ignored": self.ignored,
                "by_domain": [{"domain": d, "hard": h, "soft": s, "complaints": c} for d, h, s, c in self.by_domain]}


def bounce_report(conn: Connection, issue: str | None = None) -> BounceReport:
    b = t.bounce_log.c
    where = []
    if issue is not None:
        where.append(b.issue_id == sa.select(t.issues.c.id).where(t.issues.c.slug == issue).scalar_subquery())
    by_kind = {k: n for k, n in conn.execute(sa.select(b.kind, sa.func.count()).where(*where).group_by(b.kind))}
    by_class = {k: n for k, n in conn.execute(sa.select(b["class"], sa.func.count())
                                               .where(*where, b.kind == "bounce", b["class"].is_not(None))
                                               .group_by(b["class"]))}
    count = sa.func.count
    rows = conn.execute(sa.select(
        b.domain, count().filter(b["class"] == "hard"), count().filter(b["class"] == "soft"),
        count().filter(b.kind == "complaint"))
        .where(*where, b.domain.is_not(None), b.kind.in_(("bounce", "complaint")))
        .group_by(b.domain).order_by(count().desc(), b.domain).limit(TOP_DOMAINS)).all()
    ignored = conn.scalar(sa.select(count()).where(*where, b.action.like("ignored%"))) or 0
    return BounceReport(issue, by_kind, by_class, [(d, h, s, c) for d, h, s, c in rows], ignored)
