"""A subscriber's history for the console and the API: the messages sent to it (outbox rows), the notices about
it (the bounce log) and its status changes (``events``), newest first.

Each list is a keyset page (``before`` an id, ``limit`` rows, one more read to know whether there are older
ones), read through the index made for it in migration 0007 (ix_outbox_subscriber_id,
ix_bounce_log_subscriber_id, ix_subscriber_events_subscriber_id_id): a subscriber with years of issues costs
one page, never the whole log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..clock import aware
from ..store import tables as t
from .events import Event, events

T = TypeVar("T")
PAGE = 20


@dataclass(frozen=True)
class Message:
    id: int
    issue: str          # the issue's slug (its date)
    state: str          # queued … sent | failed | skipped | unknown (outbox.py's row states)
    attempts: int
    sent_at: datetime | None
    reason: str         # why it failed or was skipped, or the relay's last answer


@dataclass(frozen=True)
class Notice:
    id: int
    received_at: datetime
    kind: str           # bounce | complaint | auto-reply | unsubscribe | …
    bounce_class: str   # hard | soft | ''
    status: str         # RFC 3463, e.g. 5.1.1
    diagnostic: str
    proof: str          # verp | message-id | signed-link | none | ''
    action: str         # what the policy did


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    older: int | None   # the ``before`` of the next page, None when this is the last


@dataclass(frozen=True)
class History:
    messages: Page[Message]
    notices: Page[Notice]
    events: Page[Event]


def _page(items: list[T], limit: int, key: int | None) -> Page[T]:
    return Page(items[:limit], key if len(items) > limit else None)


def messages(conn: Connection, subscriber_id: int, limit: int = PAGE, before: int | None = None) -> Page[Message]:
    o, i = t.outbox.c, t.issues.c
    query = (sa.select(o.id, i.slug, o.state, o.attempts, o.sent_at, o.reason, o.last_answer)
             .join_from(t.outbox, t.issues, o.issue_id == i.id).where(o.subscriber_id == subscriber_id))
    if before is not None:
        query = query.where(o.id < before)
    rows = conn.execute(query.order_by(o.id.desc()).limit(limit + 1)).all()
    found = [Message(r.id, r.slug, r.state, r.attempts, aware(r.sent_at) if r.sent_at else None,
                     r.reason or r.last_answer or "") for r in rows]
    return _page(found, limit, found[limit - 1].id if len(found) > limit else None)


def notices(conn: Connection, subscriber_id: int, limit: int = PAGE, before: int | None = None) -> Page[Notice]:
    b = t.bounce_log.c
    query = sa.select(b.id, b.received_at, b.kind, b["class"], b.status, b.diagnostic, b.proof, b.action) \
        .where(b.subscriber_id == subscriber_id)
    if before is not None:
        query = query.where(b.id < before)
    rows = conn.execute(query.order_by(b.id.desc()).limit(limit + 1)).all()
    found = [Notice(r[0], aware(r[1]), r[2], r[3] or "", r[4] or "", r[5] or "", r[6] or "", r[7]) for r in rows]
    return _page(found, limit, found[limit - 1].id if len(found) > limit else None)


def status_events(conn: Connection, subscriber_id: int, limit: int = PAGE, before: int | None = None) -> Page[Event]:
    found = events(conn, subscriber_id, limit + 1, before)
    return _page(found, limit, found[limit - 1].id if len(found) > limit else None)


def history(conn: Connection, subscriber_id: int, limit: int = PAGE, messages_before: int | None = None,
            notices_before: int | None = None, events_before: int | None = None) -> History:
    """The three lists of a subscriber's page, each from its own ``before``."""
    return History(messages(conn, subscriber_id, limit, messages_before),
                   notices(conn, subscriber_id, limit, notices_before),
                   status_events(conn, subscriber_id, limit, events_before))
