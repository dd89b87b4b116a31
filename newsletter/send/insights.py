"""Where an issue's messages went and when (#17): the outcome by receiving domain, and sends per minute.

Both are aggregated in the database (GROUP BY, a window for the totals): Python gets one row per
domain shown and one per minute with sends, never the outbox rows, so memory stays flat at 1M rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..lifecycle import RowState
from ..store import tables as t

TOP_DOMAINS = 10
ERASED = "(erased)"  # rows of subscribers who were erased: their address is blanked, so is the domain


@dataclass(frozen=True)
class DomainOutcome:
    """One receiving domain's rows of an issue (skipped rows left out). ``deferred`` and ``bounced`` overlap
    the states: a row deferred and then sent counts under both ``deferred`` and ``sent``."""

    domain: str
    messages: int             # outbox rows to the domain that were meant to go out (not skipped)
    sent: int                 # accepted by the relay
    deferred: int             # deferred at least once (a 'deferred' attempt in the log) or deferred now
    failed: int               # given up on: a 5xx answer, or still refused after max_attempts
    bounced: int              # failed with a 5xx answer, or a hard bounce came back for it (bounce log)
    sent_after_deferral: int  # of ``sent``: deferred first
    failed_bounced: int       # of ``failed``: with a 5xx answer or a hard bounce

    @property
    def open(self) -> int:
        """Neither sent nor failed: queued, deferred now, being sent, or unknown."""
        return self.messages - self.sent - self.failed


@dataclass(frozen=True)
class Insights:
    domains: list[DomainOutcome]      # the top domains by messages, most first
    total: DomainOutcome              # every domain together (domain "")
    domain_count: int                 # how many domains the issue went to
    per_minute: list[tuple[datetime, int]]  # (minute, UTC; messages sent in it), minutes without sends left out

    @property
    def other(self) -> DomainOutcome | None:
        """The domains outside the top ones, together; None when there are none."""
        if self.domain_count <= len(self.domains):
            return None
        fields = {k: v - sum(getattr(d, k) for d in self.domains) for k, v in asdict(self.total).items()
                  if k != "domain"}
        return DomainOutcome(domain=f"{self.domain_count - len(self.domains)} other domains", **fields)

    def as_json(self) -> dict[str, object]:
        other = self.other
        return {
            "domains": [asdict(d) for d in self.domains], "other_domains": asdict(other) if other else None,
            "domain_count": self.domain_count,
            "per_minute": [{"minute": m.isoformat(), "sent": n} for m, n in self.per_minute],
        }


def domain_of(conn: Connection, email: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """The part after the '@' (addresses are stored as email-validator normalised them: one '@', no quoted
    local part, the domain lowercased). SQLite says instr, PostgreSQL strpos; literals, not parameters."""
    find = sa.func.strpos if conn.dialect.name == "postgresql" else sa.func.instr
    return sa.func.substr(email, find(email, sa.literal_column("'@'")) + sa.literal_column("1"))


def minute_of(conn: Connection, when: sa.ColumnElement[datetime]) -> sa.ColumnElement[int]:
    """Whole minutes since the epoch (UTC): one expression per dialect, since date truncation differs.
    SQLite keeps the UTC wall time as text; PostgreSQL a timestamptz."""
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.func.floor(sa.extract("epoch", when) / sa.literal_column("60")), sa.BigInteger)
    return sa.cast(sa.func.strftime(sa.literal_column("'%s'"), when), sa.Integer) // sa.literal_column("60")


def insights(conn: Connection, slug: str, top: int = TOP_DOMAINS) -> Insights | None:
    """Two queries: the top domains with the totals over all (a window over the grouped rows), then the
    sends per minute (the issue's sent rows through ix_outbox_issue_id_state_id). None: no such issue."""
    iid = conn.scalar(sa.select(t.issues.c.id).where(t.issues.c.slug == slug))
    if iid is None:
        return None
    o, a, b = t.outbox.c, t.delivery_attempts.c, t.bounce_log.c
    deferred_once = sa.exists().where(a.outbox_id == o.id, a.outcome == RowState.DEFERRED.value)
    hard = sa.exists().where(b.outbox_id == o.id, b.kind == "bounce", b["class"] == "hard",
                             ~b.action.like("ignored%"))
    one: sa.ColumnElement[int] = sa.literal_column("1")
    rows = sa.select(
        domain_of(conn, o.email).label("domain"), o.state,
        sa.case((o.state == RowState.DEFERRED.value, one), (deferred_once, one), else_=0).label("deferred"),
        sa.case((sa.and_(o.state == RowState.FAILED.value, o.last_code >= 500, o.last_code < 600), one),
                (hard, one), else_=0).label("bounced"),
    ).where(o.issue_id == iid, o.state != RowState.SKIPPED.value).subquery()

    def is_(state: RowState) -> sa.ColumnElement[bool]:
        return rows.c.state == state.value

    def total(cond: sa.ColumnElement[bool] | None = None, column: sa.ColumnElement[int] | None = None
              ) -> sa.ColumnElement[int]:
        value = column if column is not None else one
        return sa.func.coalesce(sa.func.sum(sa.case((cond, value), else_=0) if cond is not None else value), 0)

    sent, failed = is_(RowState.SENT), is_(RowState.FAILED)
    measures = [total(), total(sent), total(None, rows.c.deferred), total(failed), total(None, rows.c.bounced),
                total(sent, rows.c.deferred), total(failed, rows.c.bounced)]
    by_domain = sa.select(rows.c.domain, *(m.label(f"m{i}") for i, m in enumerate(measures))) \
        .group_by(rows.c.domain).subquery()
    names = [f"m{i}" for i in range(len(measures))]
    windowed = sa.select(
        by_domain.c.domain, *(by_domain.c[n] for n in names),
        *(sa.func.sum(by_domain.c[n]).over().label(f"all_{n}") for n in names),
        sa.func.count().over().label("domain_count"),
    ).order_by(by_domain.c.m0.desc(), by_domain.c.domain).limit(top)
    found = conn.execute(windowed).all()
    domains = [DomainOutcome(r.domain or ERASED, *(int(getattr(r, n)) for n in names)) for r in found]
    totals = DomainOutcome("", *(int(getattr(found[0], f"all_{n}")) if found else 0 for n in names))
    return Insights(domains, totals, found[0].domain_count if found else 0, per_minute(conn, iid))


def per_minute(conn: Connection, iid: int) -> list[tuple[datetime, int]]:
    """Messages sent in each minute of the send (by ``outbox.sent_at``), grouped in the database."""
    o = t.outbox.c
    minute = minute_of(conn, o.sent_at).label("minute")
    query = sa.select(minute, sa.func.count()).where(
        o.issue_id == iid, o.state == RowState.SENT.value, o.sent_at.is_not(None)).group_by("minute").order_by("minute")
    return [(datetime.fromtimestamp(int(m) * 60, UTC), n) for m, n in conn.execute(query)]


BLOCKS = " ▁▂▃▄▅▆▇█"


def sparkline(per_minute: list[tuple[datetime, int]], width: int = 60) -> str:
    """The sends per minute as one line of block characters, at most ``width`` wide (minutes summed
    into columns when the send was longer); a minute without sends is a space."""
    if not per_minute:
        return ""
    first = per_minute[0][0]
    span = int((per_minute[-1][0] - first).total_seconds() // 60) + 1
    columns = [0] * min(span, width)
    for minute, n in per_minute:
        columns[int((minute - first).total_seconds() // 60) * len(columns) // span] += n
    peak = max(columns)
    return "".join(BLOCKS[-(-n * (len(BLOCKS) - 1) // peak)] for n in columns)
