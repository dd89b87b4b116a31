"""The delivery report of an issue: counts by row state, the send rate, every failure with its answer, and
every row whose fate is unknown with its reason (the operator decides whether to resend those)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..clock import aware
from ..lifecycle import RowState
from ..store import tables as t


@dataclass(frozen=True)
class Failure:
    email: str
    code: int | None
    answer: str
    message_id: str | None


@dataclass(frozen=True)
class Report:
    issue: str
    state: str
    pause_reason: str | None
    counts: dict[str, int]
    failures: list[Failure]
    rate: float | None  # messages per second between the first and the last sent
    feedback: dict[str, int]  # what came back about this issue's messages: bounced, complained, unsubscribed
    unknown: list[Failure] = field(default_factory=list)  # the relay may have them: never resent on its own

    def as_json(self) -> dict[str, object]:
        return {
            "issue": self.issue, "state": self.state, "pause_reason": self.pause_reason,
            "counts": self.counts, "rate_per_second": self.rate,
            "failures": [{"email": f.email, "code": f.code, "answer": f.answer} for f in self.failures],
            "unknown": [{"email": f.email, "reason": f.answer, "message_id": f.message_id} for f in self.unknown],
            "feedback": self.feedback, "rates": self.rates(),
        }

    def rates(self) -> dict[str, float | None]:
        """Each feedback count over the messages sent, with Gmail's line for complaints (0.3 %)."""
        sent = self.counts.get(RowState.SENT, 0)
        return {k: round(n / sent, 5) if sent else None for k, n in self.feedback.items()}


def report(conn: Connection, slug: str, max_failures: int = 1000) -> Report | None:
    """Counts by state, the send rate, the failed and the unknown rows with their answers: four small queries."""
    issue = conn.execute(sa.select(t.issues).where(t.issues.c.slug == slug)).first()
    if issue is None:
        return None
    o = t.outbox.c
    counts = state_counts(conn, issue.id)
    first, last = conn.execute(sa.select(sa.func.min(o.sent_at), sa.func.max(o.sent_at))
                               .where(o.issue_id == issue.id, o.state == RowState.SENT)).one()
    span = (aware(last) - aware(first)).total_seconds() if first and last else 0
    return Report(
        issue=slug, state=issue.state, pause_reason=issue.pause_reason, counts=counts,
        failures=rows_in(conn, issue.id, RowState.FAILED, max_failures),
        unknown=rows_in(conn, issue.id, RowState.UNKNOWN, max_failures),
        rate=round(counts[RowState.SENT] / span, 1) if span > 0 else None,
        feedback=feedback(conn, issue.id, issue.started_at),
    )


def state_counts(conn: Connection, iid: int) -> dict[str, int]:
    """The issue's rows by state, every state named: one count per state, each over its own range of
    ix_outbox_issue_id_state_id. Measured on SQLite at 1,000,000 rows: 42 ms for the seven counts, 75 ms for one
    GROUP BY over the issue's whole range (it reads the same entries, and groups them too)."""
    o = t.outbox.c
    return {state.value: conn.scalar(sa.select(sa.func.count()).where(o.issue_id == iid, o.state == state.value))
            or 0 for state in RowState}


def rows_in(conn: Connection, iid: int, state: RowState, limit: int) -> list[Failure]:
    """The issue's rows in ``state`` with their last answer, the first ``limit`` by id (ix_outbox_issue_id_state_id)."""
    o = t.outbox.c
    rows = conn.execute(sa.select(o.email, o.last_code, o.last_answer, o.message_id)
                        .where(o.issue_id == iid, o.state == state).order_by(o.id).limit(limit)).all()
    return [Failure(r.email, r.last_code, r.last_answer or "", r.message_id) for r in rows]


COMPLAINT_LINE = 0.003  # Gmail's bulk-sender rule: keep spam complaints below 0.3 %


def returned(conn: Connection, iid: int) -> dict[str, int]:
    """Bounced (hard, soft) and complained: distinct messages of the issue in the bounce log (its issue index);
    the dashboard's rates, without ``feedback``'s join of the sent rows with the subscribers."""
    b = t.bounce_log.c
    counted = sa.func.count(sa.distinct(b.outbox_id))
    bounced = b.kind == "bounce"
    hard, soft, complained = conn.execute(sa.select(
        counted.filter(bounced, b["class"] == "hard"), counted.filter(bounced, b["class"] == "soft"),
        counted.filter(b.kind == "complaint")).where(b.issue_id == iid, ~b.action.like("ignored%"))).one()
    return {"bounced_hard": hard, "bounced_soft": soft, "complained": complained}


def feedback(conn: Connection, iid: int, started: datetime | None) -> dict[str, int]:
    """``returned``, and unsubscribed: its recipients who unsubscribed after it went out (link, one-click or mailto)."""
    o, s = t.outbox.c, t.subscribers.c
    unsubscribed = conn.scalar(sa.select(sa.func.count()).select_from(t.outbox.join(t.subscribers,
                                                                                  o.subscriber_id == s.id))
                               .where(o.issue_id == iid, o.state == RowState.SENT, s.status == "unsubscribed",
                                      s.unsubscribed_at >= (started or datetime.min))) or 0
    return {**returned(conn, iid), "unsubscribed": unsubscribed}
