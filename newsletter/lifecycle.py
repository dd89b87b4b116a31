"""The life of an issue and of its outbox rows, in one place.

An issue file is a *draft* until it is ready (``ready = true`` in the file, or ``newsletter issue
approve``: the ``approvals`` table, which holds the hash of the bytes approved, so an edit after approval
needs approving again; ``readiness`` is that rule, written once). Only a ready issue goes to the list; a
test copy of a draft is what editors send. Once its send starts, the issue has a row in ``issues``:

    draft ──ready/approve──► (ready) ──send──► sending ────────────► sent
                                                  │  ▲                  ▲
                      a fault or an operator      ▼  │ send again,      │ cancel: the rows still to
                      (``newsletter pause``) pauses  │ or resume        │ deliver become skipped
                                                paused ─────────────────┘

A change of state is ``move``: one conditional UPDATE from the states it may leave, so an operator's pause
and a send's own end, in two processes at once, cannot overwrite each other (send/control.py has the
operator's side, ``Campaign.finish`` the send's).

Each outbox row (one per subscriber and issue) moves through ``RowState``:

    queued ──claim──► (claimed: lease) ──begin──► sending ──► sent | deferred | failed
       ▲                    │ lease runs out                    │
       └────────────────────┘           deferred, when due ◄────┘        process died: unknown
                                  no usable answer after DATA's final dot: unknown (never claimed again)
    skipped: no paper meets the subscriber's areas, or they left before their turn
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
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
# An operator's pause and cancel give the issue these reasons, naming who (send/control.py): a send's own end
# never overwrites them, and the weekly job does not resume an operator's pause.
PAUSED_BY = "paused by "
CANCELLED_BY = "cancelled by "


# --- readiness -----------------------------------------------------------------------------------


class Readiness(enum.StrEnum):
    FILE = "file"          # ready = true in the file
    APPROVED = "approved"  # `issue approve` of exactly these bytes
    CHANGED = "changed"    # approved, but the file changed since (or approved before hashes were kept)
    DRAFT = "draft"

    @property
    def ready(self) -> bool:
        return self in (Readiness.FILE, Readiness.APPROVED)


def approve(conn: Connection, issue: Issue, now: datetime) -> None:
    """Approve the issue's content as loaded (``newsletter issue approve``): its file's hash is what is ready.
    Approving the same bytes again keeps the first time; approving changed bytes replaces both."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    row = insert(t.approvals).values(slug=issue.slug, approved_at=now, content_hash=issue.content_hash)
    conn.execute(row.on_conflict_do_update(
        index_elements=[t.approvals.c.slug], set_={"approved_at": now, "content_hash": issue.content_hash},
        where=t.approvals.c.content_hash.is_distinct_from(issue.content_hash)))


def approved_hashes(conn: Connection, slugs: Iterable[str] | None = None) -> dict[str, str | None]:
    """slug → the content hash approved (None: approved before migration 0006), for ``slugs`` or every approval."""
    a = t.approvals.c
    query = sa.select(a.slug, a.content_hash)
    if slugs is not None:
        query = query.where(a.slug.in_(list(slugs)))
    return {r.slug: r.content_hash for r in conn.execute(query)}


def readiness(issue: Issue, approved: Mapping[str, str | None]) -> Readiness:
    """THE rule for "may this issue go to the list", called by send, the scheduler, ``issue list`` (and the web
    console): ready in its file, or approved with the hash of the bytes loaded now. An edit after approval,
    or an approval from before hashes were kept, is not an approval of what would be sent."""
    if issue.ready:
        return Readiness.FILE
    if issue.slug not in approved:
        return Readiness.DRAFT
    stored = approved[issue.slug]
    return Readiness.APPROVED if stored is not None and stored == issue.content_hash else Readiness.CHANGED


def issue_readiness(conn: Connection, issue: Issue) -> Readiness:
    return readiness(issue, approved_hashes(conn, [issue.slug]))


def is_approved(conn: Connection, issue: Issue) -> bool:
    return issue_readiness(conn, issue) is Readiness.APPROVED


def is_ready(conn: Connection, issue: Issue) -> bool:
    return issue_readiness(conn, issue).ready


def require_ready(conn: Connection, issue: Issue, path: Path | None = None) -> None:
    """The gate before an issue goes to the whole list; a draft raises ``NotReady`` in one line."""
    state = issue_readiness(conn, issue)
    where = path or Path(f"{issue.slug}.toml")
    if state is Readiness.CHANGED:
        raise NotReady(f"{where}: {issue.slug} changed since it was approved (or was approved before approvals "
                       f"kept the file's hash): nothing sent; check it and run `newsletter issue approve "
                       f"{issue.slug}` again")
    if not state.ready:
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


def state_of(conn: Connection, iid: int) -> tuple[IssueState, str | None]:
    """The issue's state and the reason it stopped (a fault's, or ``paused by …``/``cancelled by …``)."""
    row = conn.execute(sa.select(t.issues.c.state, t.issues.c.pause_reason).where(t.issues.c.id == iid)).one()
    return IssueState(row.state), row.pause_reason


def move(conn: Connection, iid: int, leaving: Iterable[IssueState], state: IssueState, now: datetime,
         reason: str | None = None) -> bool:
    """``set_issue_state`` only if the issue is in one of ``leaving`` now; False (nothing written) otherwise.
    One UPDATE with the condition in it: whoever moves the issue first wins, the other sees False."""
    values: dict[str, object] = {"state": state, "pause_reason": reason}
    if state is IssueState.SENT:
        values["finished_at"] = now
    i = t.issues.c
    return conn.execute(t.issues.update().where(i.id == iid, i.state.in_([s.value for s in leaving]))
                        .values(**values)).rowcount == 1


def issues_in(conn: Connection, state: IssueState) -> list[tuple[int, str]]:
    """(id, slug) of the issues in ``state``, oldest first."""
    i = t.issues.c
    return [(r.id, r.slug) for r in conn.execute(sa.select(i.id, i.slug).where(i.state == state).order_by(i.id))]
