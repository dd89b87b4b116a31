"""One leader among processes that share a database: the weekly scheduler runs in one place only.

On PostgreSQL the leader holds a session-level advisory lock on a connection of its own, so the lock
goes with the process: a leader that dies (kill -9, a lost host) drops its connection and the lock
with it, and a standby that keeps asking takes over. On SQLite, which is single-host by design, an
exclusive ``flock`` on a file beside the database does the same for processes of one machine.

    standby ──try every POLL s──► leader ──its connection checked every POLL s──► lost: step down
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("newsletter.leader")
POLL = 2.0  # seconds between a standby's tries, and between a leader's checks of its lock
SCHEDULER_LOCK = 0x6E6C7363  # pg_advisory_lock key of the weekly scheduler ("nlsc")


class Leadership:
    """Try, hold and check one named leadership; ``acquire`` waits as a standby until it leads or is stopped."""

    def __init__(self, engine: Engine, key: int = SCHEDULER_LOCK, what: str = "scheduler") -> None:
        self.engine, self.key, self.what = engine, key, what
        self._conn: Connection | None = None
        self._file: int | None = None

    def try_acquire(self) -> bool:
        if self.engine.dialect.name == "postgresql":
            return self._try_postgres()
        return self._try_file()

    def acquire(self, stop: threading.Event, poll: float = POLL) -> bool:
        """Lead, or wait as a standby until leading (True) or until ``stop`` is set (False)."""
        if self.try_acquire():
            log.info("this %s leads (pid %d)", self.what, os.getpid())
            return True
        log.info("another %s leads on this database: standing by, trying again every %.0f s", self.what, poll)
        while not stop.wait(poll):
            if self.try_acquire():
                log.info("the leading %s is gone: this one (pid %d) takes over", self.what, os.getpid())
                return True
        return False

    def held(self) -> bool:
        """Still the leader? On PostgreSQL the lock lives as long as its connection answers."""
        if self._conn is None:
            return self._file is not None
        try:
            self._conn.exec_driver_sql("SELECT 1")
            return True
        except sa.exc.DBAPIError:
            log.error("the %s's connection to the database was lost, and its lock with it: stepping down", self.what)
            self.release()
            return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sa.exc.DBAPIError):
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
                self._conn.commit()
            with contextlib.suppress(sa.exc.DBAPIError):
                self._conn.close()
            self._conn = None
        if self._file is not None:
            os.close(self._file)  # closing drops the flock
            self._file = None

    def _try_postgres(self) -> bool:
        conn = self._conn or self.engine.connect()
        got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar())
        conn.commit()  # a session lock outlives transactions; no transaction stays open on this connection
        if got:
            self._conn = conn
        else:
            conn.close()
        return got

    def _try_file(self) -> bool:
        path = lock_file(self.engine)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._file = fd
        return True


def lock_file(engine: Engine) -> Path:
    """The file whose flock stands for the leadership on SQLite: beside the database file."""
    database = engine.url.database or ""
    if database in ("", ":memory:"):
        return Path(os.environ.get("TMPDIR", "/tmp")) / f"newsletter-{os.getuid()}-scheduler.lock"
    return Path(f"{database}.scheduler.lock")


@contextlib.contextmanager
def leading(engine: Engine, stop: threading.Event, what: str = "scheduler") -> Iterator[Leadership | None]:
    """The leadership while held (None if stopped while standing by); released on the way out."""
    lead = Leadership(engine, what=what)
    try:
        yield lead if lead.acquire(stop) else None
    finally:
        lead.release()
