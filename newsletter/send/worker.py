"""``newsletter worker``: deliver the due rows of every issue being sent, alongside any number of peers.

``newsletter send ISSUE --enqueue`` (or the weekly job) makes the outbox; workers on any number of
machines then loop: for each issue in state ``sending``, undo what dead peers left (their claimed
rows return to the queue, their mid-transfer rows become ``unknown``: ``outbox.recover``), claim
batches with ``FOR UPDATE SKIP LOCKED`` under a lease, deliver them over their own SMTP connections,
and mark the issue sent when nothing is left. The outbox row stays the only truth, so workers need
no coordination beyond the database. Each pass is ``Campaign.run(Mode.DELIVER)``.

Rates: ``[smtp] rate_per_hour`` holds across all workers together (``outbox.hourly_budget``);
``rate_per_second`` is each worker's own share: set it to the relay's limit divided by the workers.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import sqlalchemy as sa

from .. import lifecycle
from ..clock import SYSTEM, Clock
from ..config import Config
from ..content import find_issue, load_issue
from ..lifecycle import IssueState
from .campaign import Campaign, Mode

log = logging.getLogger("newsletter.worker")
POLL_SECONDS = 2.0


@dataclass
class Totals:
    rounds: int = 0
    delivered: int = 0


class Worker:
    """One worker process: its own SMTP connections (``[smtp] connections``), any number of issues."""

    def __init__(self, config: Config, engine: sa.Engine, stop: threading.Event | None = None,
                 clock: Clock = SYSTEM) -> None:
        self.config, self.engine, self.clock = config, engine, clock
        self.stop = stop or threading.Event()
        self.campaigns: dict[str, Campaign] = {}  # each issue rendered once per group, per process
        self.totals = Totals()

    def run(self, exit_when_idle: bool = False, poll: float = POLL_SECONDS) -> Totals:
        """Serve until stopped; with ``exit_when_idle``, until a round finds nothing to deliver."""
        while not self.stop.is_set():
            moved = self.round()
            if exit_when_idle and not moved:
                break
            if not moved:
                self.clock.sleep(poll, self.stop)
        return self.totals

    def round(self) -> int:
        """One pass over the issues being sent (a paused one waits for an operator); how many it delivered."""
        self.totals.rounds += 1
        with self.engine.connect() as conn:
            sending = lifecycle.issues_in(conn, IssueState.SENDING)
        moved = 0
        for _iid, slug in sending:
            if self.stop.is_set():
                break
            moved += self._serve(slug)
        self.totals.delivered += moved
        return moved

    def _serve(self, slug: str) -> int:
        run = self._campaign(slug).run(Mode.DELIVER)
        assert run.started is not None
        if run.started.recovered_unknown:
            log.warning("%s: %d row(s) were mid-transfer in a worker that died: marked unknown", slug,
                        run.started.recovered_unknown)
        if run.state is not IssueState.SENDING:
            log.info("%s: %s%s", slug, run.state, f" ({run.fault})" if run.fault else "")
        return run.delivered

    def _campaign(self, slug: str) -> Campaign:
        if slug not in self.campaigns:
            path = find_issue(self.config.path("issues"), slug)
            issue = load_issue(path, self.config.newsletter.areas)
            self.campaigns[slug] = Campaign(self.config, self.engine, issue, path=path, clock=self.clock,
                                            stop=self.stop)
        return self.campaigns[slug]
