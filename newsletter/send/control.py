"""An operator's hand on a send once it has started: pause, resume, cancel; the typed confirmation a send from the
console or the API asks for; one test copy. ``newsletter pause/resume/cancel``, the console and the API call these.

Each is a state change of the issue in the caller's transaction (``lifecycle.move``), so the caller writes its
audit line in the same one. Every process delivering the issue (``newsletter send``, the console's send thread,
``newsletter worker``s) reads the state at its next claim and stops as a fault stops it (``pool.Delivery``); rows
begun but not attempted go back to the queue, and ``Campaign.finish`` leaves the operator's state as it is.

    pause    sending → paused, reason "paused by <actor>"; the rows wait as they are
    resume   paused (by an operator or a fault) → sending; the caller delivers again (or the workers do)
    cancel   sending or paused → sent, reason "cancelled by <actor>"; the rows still queued or deferred become
             skipped with that reason; nothing sent, failed or in flight is touched
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import lifecycle
from ..audience import normalize_email
from ..config import Config
from ..content import Issue
from ..errors import ActionRefused
from ..lifecycle import IssueState
from ..store import tables as t
from . import outbox
from .campaign import Campaign, Mode, Options
from .transport import Outcome


def pause(conn: Connection, slug: str, actor: str, now: datetime) -> None:
    """Pause a send in progress, in every process that delivers it."""
    iid = _sent_id(conn, slug)
    if not lifecycle.move(conn, iid, [IssueState.SENDING], IssueState.PAUSED, now, f"{lifecycle.PAUSED_BY}{actor}"):
        raise ActionRefused(f"{slug} is {lifecycle.state_of(conn, iid)[0]}: only a send in progress can be paused")


def resume(conn: Connection, slug: str, now: datetime) -> int:
    """A paused send (by an operator, or by a fault once it is mended) is sending again; how many rows are due.
    The caller then delivers them (``Campaign.run(Mode.SEND)``) or leaves them to the workers."""
    iid = _sent_id(conn, slug)
    if not lifecycle.move(conn, iid, [IssueState.PAUSED], IssueState.SENDING, now):
        raise ActionRefused(f"{slug} is {lifecycle.state_of(conn, iid)[0]}: only a paused send can be resumed")
    return outbox.due_count(conn, iid)


def cancel(conn: Connection, slug: str, actor: str, now: datetime) -> int:
    """End a send for good: the issue is sent, its rows still to deliver skipped; how many were skipped."""
    iid = _sent_id(conn, slug)
    reason = f"{lifecycle.CANCELLED_BY}{actor}"
    if not lifecycle.move(conn, iid, [IssueState.SENDING, IssueState.PAUSED], IssueState.SENT, now, reason):
        raise ActionRefused(f"{slug} was sent already: nothing left to cancel")
    return outbox.cancel(conn, iid, reason, now)


def _sent_id(conn: Connection, slug: str) -> int:
    iid = lifecycle.issue_id(conn, slug)
    if iid is None:
        raise ActionRefused(f"{slug} has not been sent: there is no send to pause, resume or cancel")
    return iid


def confirm(date: str, typed: str) -> None:
    """A send or cancel from the console or the API names the issue's date (``date``), typed: a slip of the mouse,
    or a script aimed at the wrong issue, does nothing."""
    if typed.strip() != date:
        shown = repr(typed.strip()[:40]) if typed.strip() else "nothing"
        raise ActionRefused(f"type the issue's date, {date}, to confirm; {shown} was typed: nothing done")


def noted(conn: Connection) -> None:
    """The database part of an action whose work runs in transactions of its own (a send's start, a test copy):
    none, so that ``audit.audited`` writes only the action's line."""


def operator_paused(conn: Connection, slug: str) -> bool:
    """Paused by an operator (not by a fault): the weekly job leaves it to them."""
    i = t.issues.c
    reason = conn.scalar(sa.select(i.pause_reason).where(i.slug == slug, i.state == IssueState.PAUSED))
    return bool(reason and reason.startswith(lifecycle.PAUSED_BY))


def test_copy(config: Config, engine: sa.Engine, issue: Issue, path: Path | None, to: str,
              areas: tuple[str, ...]) -> str:
    """One [Test] copy of a group to ``to`` through the send path (``send --test-to``); what happened, in one line.
    A bad address or an answer other than accepted raises ``ActionRefused`` with the reason."""
    try:
        address = normalize_email(to)
    except ValueError as exc:
        raise ActionRefused(f"{to!r}: {exc}") from None
    run = Campaign(config, engine, issue, path=path).run(Mode.TEST, Options(test_to=address, test_areas=areas))
    if run.test is None or run.test.outcome is not Outcome.SENT:
        answer = run.test.answer if run.test else "no answer"
        raise ActionRefused(f"not accepted by {config.smtp.host}:{config.smtp.port}: {answer}")
    return f"Test copy of {issue.slug} ({', '.join(areas) or 'all areas'}) sent to {address}."
