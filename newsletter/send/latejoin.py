"""A reader who confirms soon after a send gets that issue once: the welcome is the latest issue's copy,
opening with a welcome (subject "Welcome to <name>: …", a line before the greeting) instead of this week's hello.

The rule is written here once and the web's confirm page calls it. The latest issue whose send has
finished (state ``sent``) and started within ``[newsletter] late_joiners_days`` (0: off) goes to this
one subscriber through ``Campaign`` with ``send --new-subscribers`` semantics narrowed to them: the copy
of their areas' group, DKIM-signed, its row in the outbox like every other copy. The outbox's unique
(issue, subscriber) key and ``outbox.mailable`` make "never twice" hold by construction: confirming
again, or a later ``send --new-subscribers``, finds the row and sends nothing. The window runs from
the send's start, which a late joiner's copy never moves.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from ..clock import SYSTEM, Clock
from ..config import Config
from ..content import issue_files, load_issue
from ..errors import NothingToSend
from ..lifecycle import IssueState
from ..store import tables as t
from .campaign import Campaign, Mode, Options, Run

log = logging.getLogger(__name__)


def latest_sent(conn: sa.Connection, since: datetime) -> str | None:
    """The slug of the latest issue whose send is done and started at ``since`` or later."""
    i = t.issues.c
    return conn.scalar(sa.select(i.slug).where(i.state == IssueState.SENT.value, i.started_at >= since)
                       .order_by(i.started_at.desc(), i.id.desc()).limit(1))


def issue_path(config: Config, slug: str) -> Path | None:
    """The issue's file among the issue files, looked up by stem (a sent issue's file may be gone)."""
    return next((p for p in issue_files(config.path("issues")) if p.stem == slug), None)


def send_latest(config: Config, engine: sa.Engine, subscriber: int, clock: Clock = SYSTEM) -> Run | None:
    """Send the latest issue to one newly confirmed subscriber if it is within the window and they have no
    row for it; None when there is nothing to send (window off or passed, already sent, no paper of theirs)."""
    days = config.newsletter.late_joiners_days
    if days <= 0:
        return None
    with engine.connect() as conn:
        slug = latest_sent(conn, clock.now() - timedelta(days=days))
    path = issue_path(config, slug) if slug else None
    if path is None:
        if slug:
            log.warning("late joiner %d: the file of %s is gone; nothing sent", subscriber, slug)
        return None
    campaign = Campaign(config, engine, load_issue(path, config.newsletter.areas), path=path, clock=clock,
                        welcome=True)
    try:
        return campaign.run(Mode.SEND, Options(wait=False, new_subscribers=True, subscriber=subscriber))
    except NothingToSend:  # a row exists already, or no paper of the issue meets their areas
        return None
