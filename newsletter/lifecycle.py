"""The life of an issue and of its outbox rows, in one place.

An issue file is a *draft* until it is ready (``ready = true`` in the file, or ``newsletter issue
approve``: the ``approvals`` table). Only a ready issue goes to the list; a test copy of a draft
is what editors send. Once its send starts, the issue has a row in ``issues``:

    draft ──ready/approve──► (ready) ──send──► sending ──► sent
                                                  │  ▲
                                  a fault pauses ─▼  │ send again resumes
                                                paused

Each outbox row (one per subscriber and issue) moves through ``RowState``:

    queued ──claim──► (claimed: lease) ──begin──► sending ──► sent | deferred | failed
       ▲                    │ lease runs out                    │
       └────────────────────┘           deferred, when due ◄────┘        process died: unknown
    skipped: no paper meets the subscriber's areas, or they left before their turn
"""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from .content import Issue
from .errors import NotReady
from .store import tables as t


class IssueState(enum.StrEnum):
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"


class RowState(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"


DUE = (RowState.QUEUED, RowState.DEFERRED)                  # still to deliver
IN_FLIGHT = (RowState.QUEUED, RowState.SENDING)             # not yet tried, or being tried now
PUBLISHED = (IssueState.SENDING, IssueState.PAUSED, IssueState.SENT)  # shown in the web archive


# --- readiness -----------------------------------------------------------------------------------


def approve(conn: Connection, slug: str, now: datetime) -> None:
    """Mark an issue ready to send without editing its file (``newsletter issue approve``); idempotent."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(insert(t.approvals).values(slug=slug, approved_at=now).on_conflict_do_nothing())


def is_approved(conn: Connection, slug: str) -> bool:
    return conn.scalar(sa.select(t.approvals.c.slug).where(t.approvals.c.slug == slug)) is not None


def approved_slugs(conn: Connection) -> set[str]:
    return set(conn.scalars(sa.select(t.approvals.c.slug)))


def is_ready(conn: Connection, issue: Issue) -> bool:
    return issue.ready or is_approved(conn, issue.slug)


def require_ready(conn: Connection, issue: Issue, path: Path | None = None) -> None:
    """The gate before an issue goes to the whole list; a draft raises ``NotReady`` in one line."""
    if not is_ready(conn, issue):
        where = path or Path(f"{issue.slug}.toml")
        raise NotReady(f"{where}: {issue.slug} is a draft (ready = false) and not approved: nothing sent; "
                       f"run `newsletter issue approve {issue.slug}` or set ready = true "
                       f"(`--test-to ADDRESS` sends a test copy of a draft)")


# --- the issue row -------------------------------------------------------------------------------


def issue_id(conn: Connection, slug: str) -> int | None:
    return conn.scalar(sa.select(t.issues.c.id).where(t.issues.c.slug == slug))


def issue_state(conn: Connection, slug: str) -> IssueState | None:
    state = conn.scalar(sa.select(t.issues.c.state).where(t.issues.c.slug == slug))
    return IssueState(state) if state else None


def create_issue(conn: Connection, slug: str, title: str, now: datetime) -> int:
    return conn.execute(
        t.issues.insert().values(slug=slug, title=title, state=IssueState.SENDING, created_at=now, started_at=now)
        .returning(t.issues.c.id)
    ).scalar_one()


def set_issue_state(conn: Connection, iid: int, state: IssueState, now: datetime, reason: str | None = None) -> None:
    values: dict[str, object] = {"state": state, "pause_reason": reason}
    if state is IssueState.SENT:
        values["finished_at"] = now
    conn.execute(t.issues.update().where(t.issues.c.id == iid).values(**values))


def issues_in(conn: Connection, state: IssueState) -> list[tuple[int, str]]:
    """(id, slug) of the issues in ``state``, oldest first."""
    i = t.issues.c
    return [(r.id, r.slug) for r in conn.execute(sa.select(i.id, i.slug).where(i.state == state).order_by(i.id))]
