"""The inbox preview line: each group's own lead papers unless the issue file sets one, hidden without white text."""

from __future__ import annotations

import html
import re

import pytest

from newsletter.content import Issue, find_issue, load_issue
from newsletter.render import Renderer, split_papers

from .conftest import AREAS

PREHEADER_DIV = re.compile(r'<div class="nl-preheader" style="([^"]*)">([^<]*)</div>')


@pytest.fixture
def latest(repo_config) -> Issue:
    return load_issue(find_issue(repo_config.path("issues"), "latest"), AREAS)


def test_groups_get_their_own_lead_papers(repo_config, latest):
    """Without an issue preheader, the RL and Vision groups' previews differ, each naming its own lead paper."""
    issue = latest.model_copy(update={"preheader": ""})
    renderer = Renderer(repo_config)
    rl, vision = renderer.render(issue, ["RL"]), renderer.render(issue, ["Vision"])
    assert rl and vision and rl.preheader != vision.preheader
    rl_lead, vision_lead = split_papers(issue, ["RL"])[0][0].title, split_papers(issue, ["Vision"])[0][0].title
    assert rl_lead != vision_lead
    assert rl_lead in rl.preheader and vision_lead not in rl.preheader
    assert vision_lead in vision.preheader and rl_lead not in vision.preheader
    assert rl.preheader.startswith("2 papers for RL — ")
    shown = PREHEADER_DIV.search(rl.html)
    assert shown and html.unescape(shown.group(2)) == rl.preheader


def test_issue_preheader_wins(repo_config, latest):
    """An issue file's preheader is every group's preview line."""
    assert latest.preheader
    renderer = Renderer(repo_config)
    previews = {renderer.render(latest, [area]).preheader for area in AREAS}  # type: ignore[union-attr]
    assert previews == {latest.preheader}


def test_preheader_is_hidden_without_white_text(repo_config, latest):
    """The preview line is the body's first text, hidden by display/size/opacity, with no colour set."""
    group = Renderer(repo_config).render(latest, ["LLM"])
    assert group is not None
    body = group.html.split("<body", 1)[1]
    shown = PREHEADER_DIV.search(body)
    assert shown, "no preheader div"
    assert not re.search(r">\s*[^<\s]", body[:shown.start()].split(">", 1)[1]), "text before the preheader"
    style = shown.group(1).replace(" ", "")
    assert "display:none" in style and "max-height:0" in style and "opacity:0" in style
    assert "color" not in style and "font-size" not in style
    assert "#ffffff" not in body[:shown.end()].lower()
