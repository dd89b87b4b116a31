"""One send on every core: ``[smtp] processes`` delivering processes over one issue's outbox.

Once the relay keeps up, a send is bound by CPU: composing a copy, signing it, speaking SMTP and the commit
that begins it cost 0.6 to 1.2 ms of CPU a message, and one Python process uses one core. So a send with more
than one process starts that many helpers and waits for them; each runs ``Campaign.run(Mode.DELIVER)`` over the
same outbox, exactly what ``newsletter worker`` runs, and the guarantees are the workers': a row is claimed by one
process at a time, begun in a commit before its transfer and its result written after. When the helpers are
done, the parent delivers what they left (rows deferred meanwhile, as they come due; the rows of a helper that
died) with its own threads.

- ``[smtp] connections`` is the total, shared out among the processes (4 over 2: 2 each), so the crash bound
  stays the one-process bound: at most ``commit_every`` x ``connections`` rows of unknown fate, whichever
  process dies. ``rate_per_second`` is shared out the same way; ``rate_per_hour`` is counted in the database.
- A helper that dies: its claimed rows go back to the queue and its rows mid-transfer become unknown
  (``outbox.recover``, once its pid is gone), and the parent's own pass delivers the rest.
- The parent stopped (SIGTERM, Ctrl-C): the helpers stop after the message in flight; the parent killed: each
  helper sees its parent gone within ``WATCH_SECONDS`` and stops the same way. An operator's pause or cancel,
  and a helper's fault (which pauses the issue with its reason), reach every process at its next claim.

Helpers are forked where the caller is its process's only thread (the CLI: nothing to import or render again);
a caller with threads of its own (the web server, the scheduler) spawns them, as forking those is unsafe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

from ..config import Config
from ..content import Issue

WATCH_SECONDS = 0.5
TICK_SECONDS = 0.2
# A helper costs 10 ms (fork) to 600 ms (spawn: imports, rendering) to start; 200 rows take one about 0.2 s. A send
# of fewer rows (a late joiner's copy, a small list) stays in one process.
ROWS_A_PROCESS = 200


def cores() -> int:
    """The cores this process may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def processes_for(config: Config, url: str, due: int) -> int:
    """How many processes deliver a send of ``due`` rows: ``[smtp] processes``, else one a core; never more than
    the connections, nor than one a ``ROWS_A_PROCESS`` rows.

    Unset, a rate-limited send gets one (the limit, not the CPU, sets its pace) and so does an in-memory database.
    """
    smtp = config.smtp
    wanted = smtp.processes or (1 if smtp.rate_per_second or smtp.rate_per_hour else cores())
    if ":memory:" in url or url.rstrip("/") == "sqlite:":
        return 1
    return max(1, min(wanted, smtp.connections, due // ROWS_A_PROCESS))


def shares(config: Config, count: int) -> list[Config]:
    """``count`` configs that split ``connections`` and ``rate_per_second`` between them, each for one process."""
    smtp = config.smtp
    out = []
    for k in range(count):
        connections = smtp.connections // count + (1 if k < smtp.connections % count else 0)
        part = smtp.model_copy(update={"connections": connections, "processes": 1,
                                       "rate_per_second": smtp.rate_per_second / count})
        out.append(config.model_copy(update={"smtp": part}))
    return out


@dataclass
class Job:
    """What a helper process needs: picklable (spawn), or inherited as it is (fork, with the rendered groups)."""

    config: Config
    issue: Issue
    path: Path | None
    url: str
    parent: int
    groups: Any = None  # the parent's rendered groups, forked only


Target = Callable[[Job, Any, Any], None]  # (job, the parent's stop event, the shared count of delivered messages)


class Helpers:
    """The helper processes of one send: started, counted while they run, stopped with the parent, joined."""

    def __init__(self, target: Target, jobs: list[Job], stop: threading.Event) -> None:
        forking = threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
        ctx: Any = multiprocessing.get_context("fork" if forking else "spawn")
        if not forking:
            jobs = [dataclasses.replace(job, groups=None) for job in jobs]
        self.parent_stop = stop
        self.stop = ctx.Event()
        self.count: Synchronized[int] = ctx.Value("q", 0)
        self.procs = [ctx.Process(target=target, args=(job, self.stop, self.count), daemon=True,
                                  name=f"newsletter-send-{n}") for n, job in enumerate(jobs, 1)]

    @property
    def done(self) -> int:
        return int(self.count.value)

    def start(self) -> None:
        for proc in self.procs:
            proc.start()

    def wait(self, tick: Callable[[int], None]) -> list[int]:
        """Until every helper has exited, passing on their progress and the parent's stop; their exit codes."""
        told = 0
        while alive := [proc.sentinel for proc in self.procs if proc.is_alive()]:
            if self.parent_stop.is_set():
                self.stop.set()
            multiprocessing.connection.wait(alive, TICK_SECONDS)
            told = self._tell(tick, told)
        self._tell(tick, told)
        return [proc.exitcode or 0 for proc in self.procs]

    def _tell(self, tick: Callable[[int], None], told: int) -> int:
        now = self.done
        if now > told:
            tick(now - told)
        return now

    def kill(self) -> None:
        """The parent is leaving by an exception: stop the helpers and wait for their message in flight."""
        self.stop.set()
        for proc in self.procs:
            proc.join()


@contextlib.contextmanager
def helper_process(job: Job, stop: Any) -> Iterator[threading.Event]:
    """Inside a helper: the stop event its send watches, set by SIGTERM or SIGINT, the parent's stop, or the
    parent gone."""
    local = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _sig, _frame: local.set())

    def watch() -> None:
        while not local.wait(WATCH_SECONDS):
            if stop.is_set() or os.getppid() != job.parent:
                local.set()

    watcher = threading.Thread(target=watch, daemon=True, name="parent-watch")
    watcher.start()
    try:
        yield local
    finally:
        local.set()
        watcher.join()
