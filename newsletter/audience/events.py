"""A subscriber's status changes, each with its cause: the one way a status changes (``change_status``) and the
one way a new subscriber's first status is noted (``note``, ``note_imported``).

Every change of ``subscribers.status`` goes through here, whoever asks (the CLI, the web pages, the console, the
API, the feedback loop, the send engine), so the history on a subscriber's console page is complete:

    (new) ─► pending  "signed up on the web"            active  "added by user:ada" / "imported from list.csv"
    pending/unsubscribed ─► active        a confirmation or resubscribe link (the owner's proof)
    active/pending ─► unsubscribed        the link, one-click, mail to List-Unsubscribe, an operator, a complaint
    any but blocked/bounced ─► bounced    a hard bounce, soft bounces past the threshold, a 5xx when sending
    any but blocked ─► blocked            an operator; unblock gives back the status it had before

Erasing a subscriber deletes its events with it (ON DELETE CASCADE): its history goes with its address.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..clock import aware
from ..store import tables as t
from ..store.oncursor import OnCursor

CAUSE_MAX = 1000
UNBLOCKED = ("pending", "active", "unsubscribed", "bounced")  # what unblock may give back


@dataclass(frozen=True)
class Event:
    id: int
    at: datetime
    status: str
    cause: str


# Statements built once, as feedback/proof.py does: building one costs more than its cached compile, and a bounce
# run changes thousands of statuses (bench/ingest.py: 0.76 ms a hard bounce with a statement built per call). They
# run on the DBAPI cursor (store/oncursor.py), the statuses of the WHERE one bound value each, not an expanding IN
# list, which SQLAlchemy rewrote at every execution: a status change with its event took 68-82 µs, now 21-23 µs
# (SQLite, 3,000 hard bounces in two transactions). A refusal is still SQLAlchemy's DBAPIError (wrap_errors).
_NOTE = OnCursor(t.subscriber_events.insert().values(
    subscriber_id=sa.bindparam("subscriber_id"), at=sa.bindparam("at"), status=sa.bindparam("status"),
    cause=sa.bindparam("cause")), wrap_errors=True)
_MOVES: dict[tuple[tuple[str, ...], tuple[str, ...]], OnCursor] = {}


def note(conn: Connection, subscriber_id: int, status: str, cause: str, now: datetime) -> None:
    """Record that ``subscriber_id`` is now ``status`` because of ``cause`` (a new row, or after a change)."""
    _NOTE.run(conn, {"subscriber_id": subscriber_id, "at": now, "status": status, "cause": cause[:CAUSE_MAX]})


def _move(only_from: tuple[str, ...], columns: tuple[str, ...]) -> OnCursor:
    """UPDATE … SET status, updated_at and ``columns`` WHERE id and a status in ``only_from``, made once."""
    key = (only_from, columns)
    if key not in _MOVES:
        s = t.subscribers.c
        _MOVES[key] = OnCursor(t.subscribers.update()
                               .where(s.id == sa.bindparam("sid"), s.status.in_([sa.literal(x) for x in only_from]))
                               .values(status=sa.bindparam("to"), updated_at=sa.bindparam("now"),
                                       **{c: sa.bindparam(f"v_{c}") for c in columns}), wrap_errors=True)
    return _MOVES[key]


def change_status(conn: Connection, subscriber_id: int, to: str, cause: str, now: datetime, *,
                  only_from: Iterable[str], **values: Any) -> bool:
    """Move a subscriber to ``to`` if its status is one of ``only_from``, with its event; True when it moved.

    The guard is in the UPDATE's WHERE, so two requests racing to change one subscriber change it once and
    write one event. ``values`` are the columns that go with the change (``unsubscribed_at``, ``status_reason``).
    """
    columns = tuple(sorted(values))
    params = {"sid": subscriber_id, "to": to, "now": now, **{f"v_{c}": values[c] for c in columns}}
    moved = _move(tuple(only_from), columns).run(conn, params) == 1
    if moved:
        note(conn, subscriber_id, to, cause, now)
    return moved


def note_imported(conn: Connection, keys: Sequence[str], cause: str, now: datetime) -> None:
    """The events of a batch of imported rows, in one INSERT … SELECT by their ``email_key`` (no ids needed)."""
    s, e = t.subscribers.c, t.subscriber_events.c
    rows = sa.select(s.id, sa.literal(now, t.When), s.status, sa.literal(cause[:CAUSE_MAX], sa.Text)) \
        .where(s.email_key.in_(keys))
    conn.execute(t.subscriber_events.insert().from_select([e.subscriber_id, e.at, e.status, e.cause], rows))


def status_before_block(conn: Connection, subscriber_id: int) -> str:
    """The status a blocked subscriber had before its last block; ``unsubscribed`` when no event says (a block
    from before the history was kept): without its owner's word nobody is mailed again."""
    e = t.subscriber_events.c
    last_block = sa.select(sa.func.max(e.id)).where(e.subscriber_id == subscriber_id, e.status == "blocked")
    before = conn.scalar(sa.select(e.status).where(e.subscriber_id == subscriber_id,
                                                   e.id < last_block.scalar_subquery())
                         .order_by(e.id.desc()).limit(1))
    return before if before in UNBLOCKED else "unsubscribed"


def events(conn: Connection, subscriber_id: int, limit: int, before: int | None = None) -> list[Event]:
    """The newest events first, ``limit`` at a time (keyset on the id: ix_subscriber_events_subscriber_id_id)."""
    e = t.subscriber_events.c
    query = sa.select(e.id, e.at, e.status, e.cause).where(e.subscriber_id == subscriber_id)
    if before is not None:
        query = query.where(e.id < before)
    return [Event(r[0], aware(r[1]), r[2], r[3]) for r in conn.execute(query.order_by(e.id.desc()).limit(limit))]
