"""The audit log: every operator action, who did it (a console user, an API token, the CLI) and when.

The console and the API record through ``record`` in the same transaction as the action itself, so an
action and its line are written together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .clock import aware
from .store import tables as t

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: str


def record(conn: Connection, actor: str, action: str, target: str, now: datetime, detail: str = "") -> None:
    """One line: ``actor`` (``user:ada``, ``token:ci``, ``cli``) did ``action`` to ``target``."""
    conn.execute(t.audit_log.insert().values(at=now, actor=actor[:80], action=action[:64], target=target[:320],
                                             detail=detail[:4000]))


def audited(fn: Callable[..., T], actor: str, action: str, target: str, now: datetime,
            detail: str = "") -> Callable[..., T]:
    """``fn(conn, *args)`` followed by its audit line, for one transaction: the action and its line are written
    together or not at all (the console and the API run every change through this)."""
    def run(conn: Connection, *args: Any) -> T:
        result = fn(conn, *args)
        record(conn, actor, action, target, now, detail)
        return result
    return run


def recent(conn: Connection, limit: int = 50, before: int | None = None, target: str | None = None) -> list[Entry]:
    """The newest entries first, ``limit`` at a time (keyset: those with an id below ``before``)."""
    a = t.audit_log.c
    query = sa.select(a.id, a.at, a.actor, a.action, a.target, a.detail).order_by(a.id.desc()).limit(limit)
    if before is not None:
        query = query.where(a.id < before)
    if target is not None:
        query = query.where(a.target == target)
    return [Entry(r[0], aware(r[1]), r[2], r[3], r[4], r[5]) for r in conn.execute(query)]
