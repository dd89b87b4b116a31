"""What mail that comes back does to a subscriber: suppress on a hard bounce, score soft ones, and
unsubscribe on a complaint (the feedback loop, ``newsletter/feedback/``, decides which applies).

The soft-bounce score is GNU Mailman's: a point a day at most, reset when the last bounce is older
than the window; at the threshold the address is suppressed like a hard bounce.

    soft bounce ─► score (≤ 1 a day, reset after the window) ─► threshold ─► bounced
    hard bounce ─────────────────────────────────────────────────────────► bounced
    complaint   ─► unsubscribed, and its hash on the suppression list
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..clock import aware
from ..store import tables as t
from .events import change_status
from .subscribers import suppress

REASON_MAX = 500
BOUNCEABLE = ("pending", "active", "unsubscribed")  # blocked stays blocked, bounced stays bounced


def soft_score(score: int, last: datetime | None, now: datetime, window: timedelta) -> int:
    """The score after one more soft bounce at ``now`` (pure: Mailman's rule)."""
    if last is None or now - aware(last) > window:
        return 1
    if aware(last).date() == now.date():
        return score  # at most one point a day
    return score + 1


def mark_bounced(conn: Connection, subscriber_id: int, now: datetime, reason: str = "") -> bool:
    """A hard bounce (or enough soft ones): never mailed again; an import cannot reactivate it.

    True when this changed the status (an active, pending or unsubscribed subscriber).
    """
    cause = reason or "hard bounce: the relay refused the address when sending"
    return change_status(conn, subscriber_id, "bounced", cause, now, only_from=BOUNCEABLE,
                         status_reason=reason[:REASON_MAX] or None)


def add_soft_bounce(conn: Connection, subscriber_id: int, now: datetime, window: timedelta, threshold: int,
                    reason: str) -> tuple[int, bool]:
    """Score one soft bounce; (the new score, whether it suppressed the subscriber)."""
    s = t.subscribers.c
    row = conn.execute(sa.select(s.bounce_score, s.last_bounce_at).where(s.id == subscriber_id)).first()
    if row is None:
        return 0, False
    score = soft_score(row.bounce_score, row.last_bounce_at, now, window)
    conn.execute(t.subscribers.update().where(s.id == subscriber_id)
                 .values(bounce_score=score, last_bounce_at=now, updated_at=now))
    if score >= threshold:
        why = f"{score} soft bounces within {window.days} days; the last: {reason}"
        return score, mark_bounced(conn, subscriber_id, now, why)
    return score, False


def complained(conn: Connection, subscriber_id: int, email: str, now: datetime, reason: str) -> bool:
    """A spam complaint: unsubscribed at once and on the suppression list; True when it was subscribed."""
    changed = change_status(conn, subscriber_id, "unsubscribed", reason, now, only_from=("active", "pending"),
                            unsubscribed_at=now, status_reason=reason[:REASON_MAX])
    if email:
        suppress(conn, email, "complaint", now)
    return changed
