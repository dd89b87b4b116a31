"""An issue's groups: which group each subscriber gets, each rendered and prepared once, on first use."""

from __future__ import annotations

import threading

from .. import areas
from ..config import Config
from ..content import Issue
from ..render import Renderer, split_papers
from .compose import PreparedGroup, Sender, prepare


class Groups:
    """Each group of one issue rendered and its MIME parts prepared at most once, thread-safe."""

    def __init__(self, config: Config, issue: Issue, sender: Sender, renderer: Renderer | None = None) -> None:
        self.renderer = renderer or Renderer(config)
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
            if key not in self._prepared:
                group = self.renderer.render(self.issue, self.by_key[key])
                self._prepared[key] = prepare(group, self.sender) if group else None
            return self._prepared[key]
