"""The one clock: what time it is, and waiting for a while unless told to stop.

Every module takes a ``Clock`` where it needs time, so tests run retries, leases and the weekly
schedule on a clock they move themselves (``ManualClock`` in tests/), never on the wall clock.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        """Wait ``seconds`` or until ``stop`` is set, whichever comes first."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float, stop: threading.Event) -> None:
        if seconds > 0:
            stop.wait(seconds)


SYSTEM = SystemClock()


def utcnow() -> datetime:
    return SYSTEM.now()


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes for timezone-aware columns; they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)
