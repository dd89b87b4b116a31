"""Writers of one SQLite file taking turns, across the threads of a process and across processes.

SQLite lets one writer in at a time; a connection that finds the file locked sleeps in SQLite's busy handler,
1, 2, 5, 10 ms and more between tries. That is nothing for a web request, but the sending threads write once a
message: measured with two delivering processes of one thread each, 5,000 messages, commit_every = 1, 1,740
messages/s (1.2x one process) waiting in that handler. So a send's writers queue on a lock file beside the
database instead (``fcntl.flock``, which hands the lock to the next waiter as soon as it is free) and, within a
process, on a thread lock first (threads sharing one descriptor would all hold its flock at once).

The kernel releases a dead process's flock, so a killed process never leaves the lock held. Other writers of the
file (the web server, ``bounces receive``) do not take this lock: they meet the send in SQLite's own handler.
PostgreSQL needs none of this (row locks), and a platform without ``fcntl`` keeps the thread lock only.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from sqlalchemy.engine import Engine

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

_turns: dict[tuple[int, str], WriterTurn] = {}
_turns_lock = threading.Lock()


class WriterTurn:
    """One process's turn-taking for one SQLite file: a thread lock, then the file's flock."""

    def __init__(self, path: str) -> None:
        self.lock = threading.Lock()
        self.fd: int | None = None
        if fcntl is not None:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def __enter__(self) -> None:
        self.lock.acquire()
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except BaseException:
                self.lock.release()
                raise

    def __exit__(self, *_exc: object) -> None:
        try:
            if self.fd is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            self.lock.release()


def writer_turn(engine: Engine) -> contextlib.AbstractContextManager[object]:
    """A reusable context that gives this thread the turn to write to ``engine``'s SQLite file (a no-op elsewhere).

    One ``WriterTurn`` per file and per process: a forked child opens its own descriptor, as a descriptor shared
    with its parent would share the parent's lock too.
    """
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        return threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
    path = str(Path(database).resolve()) + "-turn"
    key = (os.getpid(), path)
    with _turns_lock:
        turn = _turns.get(key)
        if turn is None:
            turn = _turns[key] = WriterTurn(path)
    return turn
