"""Editor preview: every group's HTML and text written to a folder, with an index page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from .areas import all_groups, group_key
from .content import Issue
from .render import GMAIL_CLIP_BYTES, RenderedGroup, Renderer, preview_slots

SAMPLE_NAME = "Ada"


@dataclass(frozen=True)
class PreviewRow:
    areas: tuple[str, ...]
    key: str
    group: RenderedGroup | None
    size: int


def write_preview(renderer: Renderer, issue: Issue, out: Path, groups: Sequence[Sequence[str]] | None = None,
                  mjml: bool = False) -> Path:
    """Render the groups (all of them by default) into ``out``; return the index page's path.

    With ``mjml``, each group's MJML source is written beside its HTML as ``<group>.mjml``: the
    very source that HTML was compiled from, with the same slot values.
    """
    out.mkdir(parents=True, exist_ok=True)
    slots = preview_slots(renderer.config, SAMPLE_NAME)
    rows = []
    for areas in groups or all_groups(renderer.areas):
        group = renderer.render(issue, areas)
        key = group_key(tuple(areas), renderer.areas)
        size = 0
        if group:
            html, text = group.fill(slots)
            (out / f"{key}.html").write_text(html, encoding="utf-8")
            (out / f"{key}.txt").write_text(text, encoding="utf-8")
            if mjml:
                (out / f"{key}.mjml").write_text(group.fill_mjml(slots), encoding="utf-8")
            size = len(html.encode("utf-8"))
        rows.append(PreviewRow(tuple(areas), key, group, size))
    index = out / "index.html"
    index.write_text(_index_template().render(issue=issue, rows=rows, clip=GMAIL_CLIP_BYTES,
                                              sample_name=SAMPLE_NAME), encoding="utf-8")
    return index


def _index_template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("newsletter", "templates"), autoescape=True)
    return env.get_template("preview_index.html.j2")
