"""``newsletter bounces report``: what came back, by verdict and by recipient domain, and what is kept for a
person: the notices that named someone without proof (unproven) and the ones no rule could read (unknown)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..store import tables as t

TOP_DOMAINS = 20
FOR_A_PERSON = 10  # the newest unproven and unknown notices the report lists


@dataclass(frozen=True)
class Kept:
    """A notice kept for a person: ``bounces show ID`` prints it whole."""

    id: int
    received_at: datetime
    source: str
    kind: str
    recipient: str | None
    action: str

    def line(self) -> str:
        return f"#{self.id} {self.received_at:%Y-%m-%d %H:%M} {self.source}: {self.kind}: {self.action}"


@dataclass(frozen=True)
class BounceReport:
    issue: str | None
    by_kind: dict[str, int]                    # bounce, complaint, auto-reply, not-bounce, unknown, unsubscribe
    by_class: dict[str, int]                   # hard, soft (bounces)
    by_domain: list[tuple[str, int, int, int]]  # (domain, hard, soft, complaints), most first
    ignored: int                               # notices that changed nothing (forged, replayed, never sent)
    unproven: int                              # named someone without proof the engine mailed them: nothing done
    for_a_person: list[Kept]                   # the newest unproven and unknown notices

    def as_json(self) -> dict[str, object]:
        return {"issue": self.issue, "by_kind": self.by_kind, "by_class": self.by_class, "ignored": self.ignored,
                "unproven": self.unproven,
                "by_domain": [{"domain": d, "hard": h, "soft": s, "complaints": c} for d, h, s, c in self.by_domain],
                "for_a_person": [{"id": k.id, "received_at": k.received_at.isoformat(), "source": k.source,
                                  "kind": k.kind, "recipient": k.recipient, "action": k.action}
                                 for k in self.for_a_person]}


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
    unproven = conn.scalar(sa.select(count()).where(*where, b.proof == "none")) or 0
    kept = [] if issue is not None else kept_for_a_person(conn, FOR_A_PERSON)
    return BounceReport(issue, by_kind, by_class, [(d, h, s, c) for d, h, s, c in rows], ignored, unproven, kept)


def kept_for_a_person(conn: Connection, limit: int) -> list[Kept]:
    """The newest notices that changed nothing and need a person: unproven, or unreadable by every rule."""
    b = t.bounce_log.c
    found = conn.execute(sa.select(b.id, b.received_at, b.source, b.kind, b.recipient, b.action)
                         .where(sa.or_(b.proof == "none", b.kind == "unknown")).order_by(b.id.desc()).limit(limit))
    return [Kept(*row) for row in found]


def notice(conn: Connection, notice_id: int) -> tuple[Kept, bytes | None] | None:
    """One logged notice and its raw text (None once forgotten); None if there is no such notice."""
    b = t.bounce_log.c
    found = conn.execute(sa.select(b.id, b.received_at, b.source, b.kind, b.recipient, b.action, b.raw)
                         .where(b.id == notice_id)).first()
    return (Kept(*found[:6]), found.raw) if found else None
