"""An issue's groups: which group each subscriber gets, each rendered and prepared once, on first use.

With ``[tracking] clicks`` on, a group's paper links carry the time it was rendered (clicks.py), and a group is
rendered again once that render is ``ignore_first_seconds`` old: every copy then goes out within that long after
the time in its links, which is what lets the web app tell a scanner's click at delivery from a reader's. Each
render is shared by every copy made from it (0.17 s for all 15 groups, at most once a period each).
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from .. import areas
from ..clicks import ClickLinks
from ..clock import SYSTEM, Clock
from ..config import Config
from ..content import Issue
from ..links import Links
from ..render import Renderer, split_papers
from .compose import PreparedGroup, Sender, prepare


class Groups:
    """Each group of one issue rendered and its MIME parts prepared at most once, thread-safe."""

    def __init__(self, config: Config, issue: Issue, sender: Sender, renderer: Renderer | None = None,
                 links: Links | None = None, clock: Clock = SYSTEM, welcome: bool = False) -> None:
        self.renderer = renderer or Renderer(config)
        self.welcome = welcome  # a newly confirmed reader's copy (send/latejoin.py): it opens with a welcome
        # links given and [tracking] clicks on: the papers' links are tracked, and renders last ``period`` at most
        self.links = links if config.tracking.clicks else None
        seconds = config.tracking.ignore_first_seconds
        self.period = timedelta(seconds=seconds) if self.links is not None and seconds else None
        self.clock = clock
        self._made: dict[str, datetime] = {}
        self.issue = issue
        self.sender = sender
        self.send_when_no_match = config.newsletter.send_when_no_match
        known = self.renderer.areas
        self.by_key = {areas.group_key(g, known): g for g in areas.all_groups(known)}
        self._prepared: dict[str, PreparedGroup | None] = {}
        self._lock = threading.Lock()
        self._keys: dict[str, str | None] = {}  # enqueue asks once per subscriber, with a handful of values

    def key_for(self, areas_field: str) -> str | None:
        """The group of a subscriber (areas stored ';'-joined), or None when it meets no paper."""
        if areas_field not in self._keys:
            self._keys[areas_field] = self._key_for(areas_field)
        return self._keys[areas_field]

    def _key_for(self, areas_field: str) -> str | None:
        group = areas.stored_group(areas_field, self.renderer.areas)
        if not split_papers(self.issue, group)[0] and not self.send_when_no_match:
            return None  # decided without rendering: enqueueing renders nothing
        return areas.group_key(group, self.renderer.areas)

    def get(self, key: str) -> PreparedGroup | None:
        with self._lock:
            now = self.clock.now()
            if key not in self._prepared or (self.period is not None and now - self._made[key] >= self.period):
                group = self.renderer.render(self.issue, self.by_key[key], track=self._track(now),
                                             welcome=self.welcome)
                self._prepared[key] = prepare(group, self.sender) if group else None
                self._made[key] = now
            return self._prepared[key]

    def _track(self, now: datetime) -> ClickLinks | None:
        return ClickLinks.at(self.links, self.issue.slug, now) if self.links is not None else None
