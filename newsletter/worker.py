"""``newsletter worker``: deliver the due rows of every issue being sent, alongside any number of peers.

``newsletter send ISSUE --enqueue`` (or the weekly job) makes the outbox; workers on any number of
machines then loop: for each issue in state ``sending``, undo what dead peers left (their claimed
rows return to the queue, their mid-transfer rows become ``unknown``: ``outbox.recover``), claim
batches with ``FOR UPDATE SKIP LOCKED`` under a lease, deliver them over their own SMTP connections,
and mark the issue sent when nothing is left. The outbox row stays the only truth, so workers need
no coordination beyond the database.

Rates: ``[smtp] rate_per_hour`` holds across all workers together (``outbox.hourly_budget``);
``rate_per_second`` is each worker's own share: set it to the relay's limit divided by the workers.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import sqlalchemy as sa

from . import deliver, outbox
from .config import Config
from .content import find_issue, load_issue
from .store import tables as t

log = logging.getLogger("newsletter.worker")
POLL_SECONDS = 2.0


@dataclass
class Totals:
    rounds: int = 0
    delivered: int = 0


def sending_issues(engine: sa.Engine) -> list[tuple[int, str]]:
    """Issues whose send is under way, oldest first (a paused issue waits for an operator)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.issues.c.id, t.issues.c.slug).where(t.issues.c.state == "sending")
                            .order_by(t.issues.c.id)).all()
    return [(r.id, r.slug) for r in rows]


class Worker:
    """One worker process: its own SMTP connections (``[smtp] connections``), any number of issues."""

    def __init__(self, config: Config, engine: sa.Engine, stop: threading.Event | None = None) -> None:
        self.config, self.engine = config, engine
        self.stop = stop or threading.Event()
        self.groups: dict[str, deliver.Groups] = {}  # each issue rendered once per group, per process
        self.totals = Totals()

    def run(self, exit_when_idle: bool = False, poll: float = POLL_SECONDS) -> Totals:
        """Serve until stopped; with ``exit_when_idle``, until a round finds nothing to deliver."""
        while not self.stop.is_set():
            moved = self.round()
            if exit_when_idle and not moved:
                break
            if not moved:
                self.stop.wait(poll)
        return self.totals

    def round(self) -> int:
        """One pass over the issues being sent; returns how many messages this worker delivered."""
        self.totals.rounds += 1
        moved = 0
        for iid, slug in sending_issues(self.engine):
            if self.stop.is_set():
                break
            moved += self._serve(iid, slug)
        self.totals.delivered += moved
        return moved

    def _serve(self, iid: int, slug: str) -> int:
        with self.engine.begin() as conn:
            unknown = outbox.recover(conn, iid, outbox.utcnow(), outbox.local_alive)
            outbox.skip_gone(conn, iid, outbox.utcnow())
        if unknown:
            log.warning("%s: %d row(s) were mid-transfer in a worker that died: marked unknown", slug, unknown)
        groups = self._groups(slug)
        links = deliver.links_for(self.config, self.engine)
        delivery = deliver.Delivery(self.config, self.engine, groups.issue, links, groups=groups, stop=self.stop)
        delivery.run(iid, wait=False)
        state = deliver.finish_send(self.engine, iid, delivery.state.fault)
        if state != "sending":
            log.info("%s: %s%s", slug, state, f" ({delivery.state.fault})" if delivery.state.fault else "")
        return delivery.state.done

    def _groups(self, slug: str) -> deliver.Groups:
        if slug not in self.groups:
            issue = load_issue(find_issue(self.config.path("issues"), slug), self.config.newsletter.areas)
            self.groups[slug] = deliver.Groups(self.config, issue)
        return self.groups[slug]
