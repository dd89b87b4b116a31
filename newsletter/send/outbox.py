"""The outbox: one row per (issue, subscriber), the delivery log and the only truth of a send.

Sending twice is impossible by construction: a row is created once (unique key), a worker sends it
only after claiming it, and marks it ``sending`` in a committed transaction right before the SMTP
transaction (the same transaction writes the previous row's result, so a message costs one
commit), so a process that dies leaves at most one ``sending`` row per connection: the one in
flight, or the one just sent whose result was waiting for the next commit. That row becomes
``unknown``, never resent unless asked. The row states are drawn in ``lifecycle.py``; what an
outcome means for a row is ``policy.py``'s, so this module only reads and writes. Every query
below is named and says why it has its shape (after listmonk's queries.sql).
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..clock import aware
from ..lifecycle import DUE, IN_FLIGHT, RowState
from ..store import keyset_pages
from ..store import tables as t
from ..store.oncursor import OnCursor
from .transport import Result

PAGE = 1000
NO_MATCH = "no paper this week meets the chosen areas"


def worker_name(suffix: str = "") -> str:
    """Who holds a claim: host and pid, so a dead local process can be told from a live remote one."""
    return f"{socket.gethostname()}:{os.getpid()}{':' + suffix if suffix else ''}"


@dataclass(frozen=True)
class Row:
    id: int
    subscriber_id: int | None
    email: str
    name: str
    group_key: str
    attempts: int                  # attempts before this one
    message_id: str | None = None  # set when the claim also began the row (``claim(..., begin=domain)``)


@dataclass(frozen=True)
class Counts:
    queued: int = 0
    skipped: int = 0


# --- enqueue -----------------------------------------------------------------------------------


def active_subscribers(conn: Connection, page: int = PAGE, new_for: int | None = None,
                       ) -> Iterator[Sequence[sa.Row[Any]]]:
    """Active subscribers (id, email, name, areas) in keyset-paged batches, never the whole list in memory;
    with ``new_for``, only those with no row in that issue's outbox (``mailable``)."""
    s = t.subscribers.c
    return keyset_pages(conn, sa.select(s.id, s.email, s.name, s.areas).where(*mailable(new_for)), s.id, page)


def mailable(new_for: int | None = None, only: int | None = None) -> list[sa.ColumnElement[bool]]:
    """Who may be mailed, written once: an active subscriber; for ``new_for`` (an issue's id), only one
    with no row of that issue yet, so a later send to newcomers never reaches anyone it reached before;
    ``only`` narrows it to one subscriber id (a late joiner's copy on confirmation)."""
    s, o = t.subscribers.c, t.outbox.c
    where = [s.status == "active"]
    if new_for is not None:
        where.append(~sa.exists().where(o.issue_id == new_for, o.subscriber_id == s.id))
    if only is not None:
        where.append(s.id == only)
    return where


def enqueue(conn: Connection, iid: int, group_of: Callable[[str], str | None], now: datetime,
            new_only: bool = False, only: int | None = None) -> Counts:
    """Insert one outbox row per active subscriber; a group meeting no paper is skipped.

    One INSERT ... SELECT: the group of a subscriber depends only on the stored areas, which take
    a handful of distinct values, so they are mapped in Python first and the mapping goes into the
    statement as a CASE. (Row by row through Python this took 3.4 s for 100,000 subscribers.)
    Runs in the caller's transaction together with ``create_issue``: the outbox of an issue is
    either complete or absent, so a crash during enqueue leaves nothing half-made.
    ``new_only`` (``send --new-subscribers``): only subscribers with no row for the issue yet; the
    unique (issue_id, subscriber_id) key would refuse a second row anyway. Its counts are the new
    rows' (RETURNING), not the issue's. ``only`` (with ``new_only``): that one subscriber, if new.
    """
    s, o = t.subscribers.c, t.outbox.c
    who = mailable(iid if new_only else None, only)
    keys = {areas: group_of(areas) for areas in conn.scalars(sa.select(s.areas).where(*who).distinct())}
    if not keys:
        return Counts()
    wanted = {areas: key for areas, key in keys.items() if key}
    is_queued = s.areas.in_(list(wanted)) if wanted else sa.false()
    group_key = sa.case(wanted, value=s.areas, else_="") if wanted else sa.literal("")
    insert = t.outbox.insert().from_select(
        [o.issue_id, o.subscriber_id, o.email, o.name, o.group_key, o.state, o.reason, o.attempts, o.created_at,
         o.updated_at],
        sa.select(sa.literal(iid), s.id, s.email, s.name, group_key,
                  sa.case((is_queued, RowState.QUEUED.value), else_=RowState.SKIPPED.value),
                  sa.case((is_queued, sa.null()), else_=NO_MATCH),
                  sa.literal(0), sa.literal(now, t.When), sa.literal(now, t.When))
        .where(*who).order_by(s.id))
    if new_only:
        made = list(conn.scalars(insert.returning(o.state)))
        return Counts(made.count(RowState.QUEUED), made.count(RowState.SKIPPED))
    conn.execute(insert)
    counts = {state: n for state, n in conn.execute(
        sa.select(o.state, sa.func.count()).where(o.issue_id == iid).group_by(o.state))}
    return Counts(counts.get(RowState.QUEUED, 0), counts.get(RowState.SKIPPED, 0))


# --- claim, begin, record ----------------------------------------------------------------------


def claim(conn: Connection, iid: int, worker: str, limit: int, lease: timedelta, now: datetime,
          due_by: datetime | None = None, begin: str | None = None) -> list[Row]:
    """Take up to ``limit`` due rows for this worker, oldest first.

    Due: queued, or deferred with its next attempt at or before ``due_by`` (default ``now``: a run
    that must not retry what it deferred itself passes its own start), and claimed by no one: a
    claim whose worker stopped renewing it is released by ``recover`` (every heartbeat), not here,
    so claimed rows leave the index the claim walks and it reads only rows it may take.
    On PostgreSQL the inner SELECT uses FOR UPDATE SKIP LOCKED so concurrent workers take disjoint
    rows without waiting on each other; SQLite serialises writers, so the plain form is enough. Both
    walk the partial index ix_outbox_due in id order and stop after ``limit`` rows they may take.
    With ``begin`` (the sender's domain) the claimed rows are begun in the same update (see ``begin``).
    """
    values = {"iid": iid, "due_by": due_by or now, "limit": limit, "worker": worker, "lease": now + lease, "now": now}
    if begin is not None:
        values["at"] = f"@{begin}>"
    rows = conn.execute(_claim_statement(conn.dialect.name, begin is not None), values).all()
    made = [Row(r[0], r[1], r[2], r[3], r[4], r[5], r[6] if begin is not None else None) for r in rows]
    return sorted(made, key=lambda r: r.id)


@functools.cache
def _claim_statement(dialect: str, begin: bool) -> sa.Update:
    """``claim``'s statement, built once per dialect and form: made afresh at each claim it cost more than it ran
    (with commit_every = 8, a claim every 8 messages: 85 µs of Python a message, in py-spy's --gil profile)."""
    o = t.outbox.c
    due = (
        sa.select(o.id)
        .where(o.issue_id == sa.bindparam("iid"), o.state.in_(_DUE_LITERAL), o.claimed_by.is_(None),
               sa.or_(o.next_attempt_at.is_(None), o.next_attempt_at <= sa.bindparam("due_by", type_=t.When)))
        .order_by(o.id).limit(sa.bindparam("limit", type_=sa.Integer, literal_execute=True))  # as PG plans it
    )
    if dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)
    values: dict[str, Any] = {"claimed_by": sa.bindparam("worker"), "lease_until": sa.bindparam("lease", type_=t.When),
                              "updated_at": sa.bindparam("now", type_=t.When)}
    if begin:  # claim and begin in one update: a row version fewer (see ``begin``)
        values |= {"state": RowState.SENDING.value, "attempts": o.attempts + 1,
                   "message_id": _new_message_id(dialect, sa.bindparam("at", type_=sa.String))}
    return (t.outbox.update().where(o.id.in_(due.scalar_subquery())).values(**values)
            .returning(o.id, o.subscriber_id, o.email, o.name, o.group_key, o.attempts - (1 if begin else 0),
                       o.message_id))


def _new_message_id(dialect: str, at: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """A Message-ID made by the database for each row it begins: 128 random bits, then ``at`` ("@domain>")."""
    random = (sa.func.replace(sa.cast(sa.func.gen_random_uuid(), sa.String), "-", "") if dialect == "postgresql"
              else sa.func.lower(sa.func.hex(sa.func.randomblob(16))))
    return sa.literal("<") + random + at


# Written into the SQL as constants, never bound: only then can PostgreSQL's planner match the partial index
# ix_outbox_due (a prepared statement's generic plan cannot prove a parameter's value is 'queued').
_DUE_LITERAL: sa.BindParameter[list[str]] = sa.bindparam("due_states", [s.value for s in DUE], expanding=True,
                                                         literal_execute=True)


_CLAIMABLE: sa.BindParameter[list[str]] = sa.bindparam(
    "claimable_states", [s.value for s in (*DUE, RowState.SENDING)], expanding=True, literal_execute=True)

HOURLY_LOCK = 0x6E6C6872  # pg_advisory_xact_lock key: one claimer at a time measures the hourly budget


def hourly_budget(conn: Connection, per_hour: int, now: datetime) -> int:
    """How many more rows any worker may claim now without passing ``rate_per_hour`` across all workers.

    Spent: attempts logged in the last hour, plus rows claimed and not yet recorded (they will be
    attempted). Counted in the claiming transaction; on PostgreSQL an advisory lock makes
    budget-then-claim atomic across workers on any number of machines. SQLite serialises writers.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": HOURLY_LOCK})
    a, o = t.delivery_attempts.c, t.outbox.c
    used = conn.scalar(sa.select(sa.func.count()).where(a.at > now - timedelta(hours=1))) or 0
    held = conn.scalar(sa.select(sa.func.count()).where(o.claimed_by.is_not(None))) or 0
    return max(0, per_hour - used - held)


def begin(conn: Connection, row_id: int, worker: str, lease: timedelta, now: datetime, message_id: str) -> bool:
    """Mark the row ``sending`` just before its SMTP transaction (committed by the caller).

    The Message-ID is kept from here on, so even a row whose fate is unknown can be looked up in
    the relay's log.
    """
    values = {"row_id": row_id, "worker": worker, "lease": now + lease, "now": now, "message_id": message_id}
    return _BEGIN.run(conn, values) == 1


_o = t.outbox.c
_BEGIN = OnCursor(t.outbox.update().where(_o.id == sa.bindparam("row_id"), _o.claimed_by == sa.bindparam("worker"))
                   .values(state=RowState.SENDING.value, attempts=_o.attempts + 1, lease_until=sa.bindparam("lease"),
                           updated_at=sa.bindparam("now"), message_id=sa.bindparam("message_id")))
# A None bound to sent_at or next_at keeps the column's old value.
_RECORD = OnCursor(
    t.outbox.update().where(_o.id == sa.bindparam("row_id"))
    .values(state=sa.bindparam("state"), last_code=sa.bindparam("code"), last_answer=sa.bindparam("answer"),
            claimed_by=None, lease_until=None, updated_at=sa.bindparam("now"),
            sent_at=sa.func.coalesce(sa.bindparam("sent_at", type_=_o.sent_at.type), _o.sent_at),
            next_attempt_at=sa.func.coalesce(sa.bindparam("next_at", type_=_o.next_attempt_at.type),
                                             _o.next_attempt_at)))
_ATTEMPT = OnCursor(t.delivery_attempts.insert().inline().values(
    outbox_id=sa.bindparam("outbox_id"), at=sa.bindparam("at"), code=sa.bindparam("code"),
    answer=sa.bindparam("answer"), outcome=sa.bindparam("outcome")))


def record(conn: Connection, row: Row, state: RowState, result: Result, now: datetime,
           next_at: datetime | None = None) -> None:
    """Write the row's new state and the attempt to the log (the state is ``policy.after``'s)."""
    record_many(conn, [(row, state, result, next_at)], now)


Recorded = tuple[Row, RowState, Result, "datetime | None"]  # a row, its new state, the attempt, its next try


def record_many(conn: Connection, outcomes: Sequence[Recorded], now: datetime) -> None:
    """``record`` for several rows at once: two executemany calls (one round trip each on psycopg)."""
    rows = [{"row_id": row.id, "state": state.value, "code": result.code, "answer": result.answer[:1000],
             "sent_at": now if state is RowState.SENT else None, "next_at": next_at}
            for row, state, result, next_at in outcomes]
    _RECORD.run_many(conn, rows, {"now": now})
    _ATTEMPT.run_many(conn, [{"outbox_id": r["row_id"], "code": r["code"], "answer": r["answer"],
                              "outcome": r["state"]} for r in rows], {"at": now})


def renew(conn: Connection, ids: Sequence[int], holders: Sequence[str], until: datetime) -> int:
    """Heartbeat: extend the leases of the rows ``ids`` that these live holders still claim; how many rows.

    On PostgreSQL rows locked by a sending transaction of the same worker are skipped (SKIP LOCKED):
    that transaction sets their lease itself, and waiting for it deadlocked (measured with two
    workers on 100,000 rows: the heartbeat and a begin+record each held a row the other wanted).
    """
    if not ids:
        return 0
    o = t.outbox.c
    mine = sa.select(o.id).where(o.id.in_(ids), o.claimed_by.in_(holders))
    if conn.dialect.name == "postgresql":
        mine = mine.with_for_update(skip_locked=True)
    return conn.execute(t.outbox.update().where(o.id.in_(mine.scalar_subquery()))
                        .values(lease_until=until)).rowcount


def release(conn: Connection, iid: int, worker: str) -> None:
    """Give back rows claimed but not begun (on pause or shutdown)."""
    o = t.outbox.c
    conn.execute(t.outbox.update().where(o.issue_id == iid, o.claimed_by == worker, o.state != RowState.SENDING)
                 .values(claimed_by=None, lease_until=None))


def requeue(conn: Connection, row_id: int) -> None:
    """A row begun but not attempted because the whole send faulted goes back to the queue."""
    o = t.outbox.c
    conn.execute(t.outbox.update().where(o.id == row_id).values(
        state=RowState.QUEUED, attempts=o.attempts - 1, claimed_by=None, lease_until=None))


def recover(conn: Connection, iid: int, now: datetime, alive: Callable[[str], bool],
            own: Sequence[str] = ()) -> int:
    """Undo what a process that is gone left behind; return how many rows became ``unknown``.

    Gone: its lease ran out, or it ran on this host and its pid no longer exists. Its rows in
    ``sending`` were mid-transfer: their fate is unknown. Rows it had only claimed go back to the
    queue at once instead of waiting for the lease to run out. A live caller names its own holders
    in ``own``: they are never taken for gone.
    """
    o = t.outbox.c
    # a claimed row is queued, deferred or sending: the index on (issue_id, state) skips the rest of the issue
    holders = conn.execute(sa.select(o.claimed_by, sa.func.min(o.lease_until)).where(
        o.issue_id == iid, o.state.in_(_CLAIMABLE), o.claimed_by.is_not(None)).group_by(o.claimed_by)).all()
    gone = [h for h, lease in holders if h not in own and (aware(lease) < now or not alive(h))]
    if not gone:
        return 0
    mine = (o.issue_id == iid, o.claimed_by.in_(gone))
    unknown = conn.execute(t.outbox.update().where(*mine, o.state == RowState.SENDING).values(
        state=RowState.UNKNOWN, claimed_by=None, lease_until=None, updated_at=now,
        last_answer="the sending process stopped during the SMTP transaction")).rowcount
    conn.execute(t.outbox.update().where(*mine).values(claimed_by=None, lease_until=None))
    return unknown


def local_alive(holder: str) -> bool:
    """Is the claim holder a live process? Remote holders count as alive (their lease decides)."""
    host, _, rest = holder.partition(":")
    if host != socket.gethostname():
        return True
    pid = rest.split(":")[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resend_unknown(conn: Connection, iid: int) -> int:
    o = t.outbox.c
    return conn.execute(t.outbox.update().where(o.issue_id == iid, o.state == RowState.UNKNOWN)
                        .values(state=RowState.QUEUED, next_attempt_at=None)).rowcount


def next_due(conn: Connection, iid: int, now: datetime) -> datetime | None:
    """When the earliest row still to try comes due: ``now`` if one is queued, None when none is left."""
    o = t.outbox.c
    pending = conn.scalar(sa.select(sa.func.count()).where(o.issue_id == iid, o.state.in_(IN_FLIGHT)))
    if pending:
        return now
    due = conn.scalar(sa.select(sa.func.min(o.next_attempt_at)).where(o.issue_id == iid,
                                                                      o.state == RowState.DEFERRED))
    return None if due is None else aware(due)


def due_count(conn: Connection, iid: int) -> int:
    """Rows still to deliver (queued, or deferred whenever they come due)."""
    o = t.outbox.c
    return conn.scalar(sa.select(sa.func.count()).where(o.issue_id == iid, o.state.in_(DUE))) or 0


def skip_gone(conn: Connection, iid: int, now: datetime) -> int:
    """Rows still to deliver whose subscriber left (unsubscribed, bounced, erased) since enqueue.

    Found from the subscribers who are not active (few, through ix_subscribers_status_id), never by reading every
    active one: that read every subscriber at each start, of each worker (2.0 rows a message of bench/postgres.py's
    100,000, two workers)."""
    o, s = t.outbox.c, t.subscribers.c
    gone = sa.select(s.id).where(s.status.in_(_NOT_ACTIVE)).scalar_subquery()
    skipped = 0
    # two statements, each through the unique index (issue_id, subscriber_id): one with an OR read every due row
    for whose in (o.subscriber_id.is_(None), o.subscriber_id.in_(gone)):
        skipped += conn.execute(t.outbox.update().where(o.issue_id == iid, whose, o.state.in_(_DUE_LITERAL)).values(
            state=RowState.SKIPPED, reason="no longer subscribed when its turn came", updated_at=now)).rowcount
    return skipped


_NOT_ACTIVE: sa.BindParameter[list[str]] = sa.bindparam(
    "not_active", [status for status in t.SUBSCRIBER_STATUSES if status != "active"], expanding=True,
    literal_execute=True)


def cancel(conn: Connection, iid: int, reason: str, now: datetime) -> int:
    """An operator's cancel: every row still to deliver (queued or deferred, claimed or not) becomes skipped with
    ``reason``; what was sent, failed or is in flight stays as it is. Clearing the claim makes a running worker's
    ``begin`` of a row it had claimed find nothing, so that row is never sent."""
    o = t.outbox.c
    return conn.execute(t.outbox.update().where(o.issue_id == iid, o.state.in_(_DUE_LITERAL)).values(
        state=RowState.SKIPPED, reason=reason, claimed_by=None, lease_until=None, next_attempt_at=None,
        updated_at=now)).rowcount
