"""``newsletter bounces report``: what came back, by verdict and by recipient domain, and what is kept for a
person: the notices that named someone without proof (unproven) and the ones no rule could read (unknown).

The console's bounce log (``/admin/bounces``, ``/api/v1/bounces``) reads ``log_page`` and ``logged`` here, and every
face shows a stranger's text through ``printable``: one function for the terminal and the page."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..clock import aware
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
    # (Sisimai's reason: userunknown, mailboxfull, …, feedback for a complaint; hard, soft, complaints), most first
    by_reason: list[tuple[str, int, int, int]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"issue": self.issue, "by_kind": self.by_kind, "by_class": self.by_class,
                "by_reason": [{"reason": r, "hard": h, "soft": s, "complaints": c} for r, h, s, c in self.by_reason],
                "ignored": self.ignored,
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
    return BounceReport(issue, by_kind, by_class, [(d, h, s, c) for d, h, s, c in rows], ignored, unproven, kept,
                        by_reason(conn, where))


def by_reason(conn: Connection, where: list[sa.ColumnElement[bool]]) -> list[tuple[str, int, int, int]]:
    """Bounces by the reason that decided their class, hard and soft apart (notaccept can be either, a provider's
    own type can make any reason hard), and complaints (``feedback``), most first (bounce_log.reason, migration
    0009); rows logged before 0009 have no reason and are not counted."""
    b, count = t.bounce_log.c, sa.func.count
    found = conn.execute(sa.select(b.reason, count().filter(b["class"] == "hard"), count().filter(b["class"] == "soft"),
                                   count().filter(b.kind == "complaint"))
                         .where(*where, b.kind.in_(("bounce", "complaint")), b.reason.is_not(None))
                         .group_by(b.reason).order_by(count().desc(), b.reason))
    return [(reason, hard, soft, complaints) for reason, hard, soft, complaints in found]


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


# C0 and C1 controls but tab and newline (ESC starts a terminal's escape sequences, CSI is U+009B), and the bidi
# embeddings, overrides and isolates, with which a stranger's text can make an address read backwards on a page.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
KINDS = ("bounce", "complaint", "auto-reply", "not-bounce", "unknown", "unsubscribe")
PAGE = 50


def printable(text: str) -> str:
    """A stranger's text as a terminal or a page may show it: each control character as U+FFFD, so an escape
    sequence in a notice cannot drive the terminal of ``bounces show``; CRLF as one newline."""
    return CONTROL.sub("\ufffd", text.replace("\r\n", "\n"))


@dataclass(frozen=True)
class LogQuery:
    """Which notices the log shows: one kind, only the unproven ones, only one issue's (its date); empty: all."""

    kind: str = ""
    unproven: bool = False
    issue: str = ""


@dataclass(frozen=True)
class Logged:
    """One row of the bounce log, without its raw text (``logged`` reads that for one notice)."""

    id: int
    received_at: datetime
    source: str
    kind: str
    recipient: str | None
    bounce_class: str | None    # hard | soft
    status: str | None          # RFC 3463
    diagnostic: str | None
    reason: str | None          # Sisimai's name for why it failed
    proof: str | None           # verp | message-id | signed-link; none = unproven; None = nothing to prove
    action: str
    issue: str | None
    subscriber_id: int | None
    raw_until: datetime | None  # the raw text is forgotten then (None: none kept)

    def as_json(self) -> dict[str, object]:
        plain = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(self).items()}
        return {**plain, "unproven": self.proof == "none"}


@dataclass(frozen=True)
class LogPage:
    notices: list[Logged]
    older: int | None  # the cursor of the next (older) page; None on the last


def _columns(b: Any) -> list[Any]:
    return [b.id, b.received_at, b.source, b.kind, b.recipient, b["class"], b.status, b.diagnostic, b.reason,
            b.proof, b.action, t.issues.c.slug, b.subscriber_id, b.raw_until]


def _logged(row: Sequence[Any]) -> Logged:
    """A row of ``_columns`` (SQLite hands back naive datetimes; they were written in UTC)."""
    nid, received, *middle, until = row
    return Logged(*[nid, aware(received), *middle, aware(until) if until is not None else None])


def log_page(conn: Connection, query: LogQuery, before: int | None = None, limit: int = PAGE) -> LogPage:
    """The log newest first, ``limit`` notices older than ``before`` (an id), one more read to know if there is a
    next page. Keyset on the primary key: a page costs the same at the millionth notice as at the first. A filter
    the indexes do not cover (kind alone, unproven) walks the key until the page is full; an issue's walks
    ix_bounce_log_issue_id_kind."""
    b = t.bounce_log.c
    select = sa.select(*_columns(b)).outerjoin_from(t.bounce_log, t.issues, b.issue_id == t.issues.c.id)
    if query.kind:
        select = select.where(b.kind == query.kind)
    if query.unproven:
        select = select.where(b.proof == "none")
    if query.issue:
        select = select.where(b.issue_id == sa.select(t.issues.c.id).where(t.issues.c.slug == query.issue)
                              .scalar_subquery())
    if before is not None:
        select = select.where(b.id < before)
    rows = [_logged(r) for r in conn.execute(select.order_by(b.id.desc()).limit(limit + 1))]
    return LogPage(rows[:limit], rows[limit - 1].id if len(rows) > limit else None)


def logged(conn: Connection, notice_id: int) -> tuple[Logged, bytes | None] | None:
    """One notice with its raw text (None once forgotten, or never kept); None if there is no such notice."""
    b = t.bounce_log.c
    found = conn.execute(sa.select(*_columns(b), b.raw).outerjoin_from(t.bounce_log, t.issues,
                                                                       b.issue_id == t.issues.c.id)
                         .where(b.id == notice_id)).first()
    return (_logged(found[:14]), found.raw) if found else None
