"""The render pipeline: groups, the personalization rule, size, escaping, the MJML tag check."""

from __future__ import annotations

import html
import re
import shutil
from email.parser import Parser

import pytest

from newsletter.areas import all_groups, group_key
from newsletter.areas import group as normalize_areas
from newsletter.content import load_issue
from newsletter.errors import RenderError
from newsletter.render import GMAIL_CLIP_BYTES, Renderer, preview_slots

from .conftest import REPO

SAMPLES = ["2026-05-17", "2026-05-28"]


@pytest.fixture(scope="module")
def renderer():
    from newsletter.config import load_config

    return Renderer(load_config(REPO / "config.toml"))


@pytest.fixture(scope="module", params=SAMPLES)
def rendered(request, renderer):
    issue = load_issue(REPO / "issues" / f"{request.param}.toml", renderer.areas)
    return issue, renderer.render_all(issue)


def test_fifteen_groups_from_four_areas():
    """Every non-empty subset of the four areas is a group, and each has a distinct key."""
    groups = all_groups(["LLM", "Vision", "RL", "Agents"])
    assert len(groups) == 15 and len({group_key(g, ["LLM", "Vision", "RL", "Agents"]) for g in groups}) == 15


def test_no_choice_means_all_areas():
    """A subscriber who chose nothing gets the 'all' group, in configured order and case."""
    areas = ["LLM", "Vision", "RL", "Agents"]
    assert normalize_areas([], areas) == tuple(areas)
    assert normalize_areas(["rl", "LLM"], areas) == ("LLM", "RL")
    assert group_key(normalize_areas([], areas), areas) == "all"


def test_every_group_follows_the_personalization_rule(rendered):
    """Each group shows in full exactly the papers meeting its areas and lists all the others."""
    issue, groups = rendered
    for areas, group in groups.items():
        expected = [p.title for p in issue.papers if set(p.areas) & set(areas)]
        if not expected:
            assert group is None, f"{areas} meets no paper and should be skipped"
            continue
        assert list(group.featured) == expected
        assert sorted(group.featured + group.others) == sorted(p.title for p in issue.papers)
        listed = group.html.split("Also this week")[-1] if group.others else ""
        for title in group.others:
            assert html.escape(title, quote=False) in listed
        text = " ".join(group.text.split())  # the plain-text part wraps long titles at 72 columns
        for title in group.featured:
            assert title in text


def test_featured_papers_show_their_sections_and_others_do_not(rendered):
    """A featured paper's section text is in the email; an unfeatured paper's is not."""
    issue, groups = rendered
    llm = groups[("LLM",)]
    for paper in issue.papers:
        body = paper.sections[0].body.split("\n")[0][:60]
        assert (html.escape(body, quote=False) in llm.html) == (paper.title in llm.featured), paper.title


def test_every_group_is_under_gmail_clip_size(rendered, renderer):
    """Every group of both sample issues compiles to HTML under 102 KB, slots filled."""
    _, groups = rendered
    slots = preview_slots(renderer.config)
    for group in filter(None, groups.values()):
        filled, _ = group.fill(slots)
        assert len(filled.encode()) < GMAIL_CLIP_BYTES, (group.key, len(filled.encode()))


def test_html_has_lang_preheader_dark_mode_and_responsive_rules(rendered):
    """The HTML sets lang, carries the preheader, a color-scheme meta and keeps @media rules."""
    _, groups = rendered
    group = groups[("LLM", "Vision", "RL", "Agents")]
    assert re.search(r'<html[^>]* lang="en"', group.html)
    assert html.escape(group.preheader, quote=False)[:40] in group.html
    assert 'name="color-scheme"' in group.html and "prefers-color-scheme: dark" in group.html
    assert re.search(r"@media only screen and \(min-width: ?480px\)", group.html)
    assert group.html.lower().startswith("<!doctype html>")


def test_subject_names_areas_and_has_no_line_breaks(rendered):
    """Subject and preheader are single lines; a group's subject names its areas."""
    _, groups = rendered
    for areas, group in groups.items():
        if group is None:
            continue
        assert "\n" not in group.subject and "\r" not in group.subject and "\n" not in group.preheader
        if len(areas) < 4:
            assert ", ".join(areas) in group.subject


def test_text_part_is_readable_with_urls(rendered, renderer):
    """The plain-text part has no HTML tags, writes links as URLs and wraps lines."""
    issue, groups = rendered
    group = groups[("LLM",)]
    _, text = group.fill(preview_slots(renderer.config))
    assert "<a " not in text and "<p>" not in text
    assert f"{renderer.config.newsletter.base_url}/archive/{issue.slug}" in text
    assert f"{renderer.config.newsletter.base_url}/unsubscribe/PREVIEW" in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_slots_are_filled_and_escaped(rendered, renderer):
    """Per-subscriber slots are filled; a name holding HTML reaches the HTML escaped, the text raw."""
    _, groups = rendered
    group = groups[("RL",)]
    slots = preview_slots(renderer.config, name='<img src=x onerror="alert(1)">')
    filled_html, filled_text = group.fill(slots)
    assert "<img src=x" not in filled_html and "&lt;img src=x onerror=&#34;" in filled_html.replace("&quot;", "&#34;")
    assert 'Hi <img src=x onerror="alert(1)">,' in filled_text
    assert not renderer.slot_pattern.search(filled_html) and not renderer.slot_pattern.search(filled_text)
    assert f'href="{renderer.config.newsletter.base_url}/unsubscribe/PREVIEW"' in filled_html


def test_content_is_escaped_and_markdown_raw_html_disabled(tmp_path, renderer):
    """Title and Markdown bodies from an issue file cannot inject HTML into the email."""
    path = tmp_path / "2026-06-04.toml"
    path.write_text(
        'title = "<script>alert(1)</script>"\ndate = 2026-06-04\nweek = { start = 2026-05-28, end = 2026-06-03 }\n'
        '[[papers]]\ntitle = "T <b>bold</b>"\nauthors = ["A"]\nareas = ["LLM"]\n'
        '[[papers.sections]]\nheading = "H"\nbody = "x <iframe src=evil></iframe> [a](javascript:alert(1)) **ok**"\n',
        encoding="utf-8",
    )
    group = renderer.render(load_issue(path, renderer.areas), ["LLM"])
    assert "<script>" not in group.html and "<iframe" not in group.html and "<b>bold</b>" not in group.html
    # markdown-it refuses the javascript: link and keeps its source as harmless text
    assert 'href="javascript:' not in group.html and "[a](javascript:alert(1))" in group.html
    assert "<strong>ok</strong>" in group.html


def test_group_meeting_no_paper_is_skipped_unless_configured(tmp_path, make_config):
    """A group with no matching paper renders to None; with send_when_no_match it gets the list."""
    from newsletter.config import load_config

    issue = load_issue(REPO / "issues" / "2026-05-28.toml", ["LLM", "Vision", "RL", "Agents", "Robotics"])
    areas = '[newsletter]\nareas = ["LLM", "Vision", "RL", "Agents", "Robotics"]\n'
    assert Renderer(load_config(make_config(areas))).render(issue, ["Robotics"]) is None
    anyway = Renderer(load_config(make_config(areas + "send_when_no_match = true\n", name="b.toml")))
    group = anyway.render(issue, ["Robotics"])
    assert group is not None and group.featured == () and len(group.others) == 9


def test_unknown_mjml_tag_fails_the_render(tmp_path, renderer, make_config):
    """A template with an mj- tag MJML does not define fails with its file and line named."""
    from newsletter.config import load_config

    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates" / "email", templates)
    paper = templates / "partials" / "paper.mjml.j2"
    paper.write_text(paper.read_text().replace("<mj-column>", "<mj-colum>").replace("</mj-column>", "</mj-colum>"))
    config = load_config(make_config(f'[paths]\ntemplates = "{templates}"\n'))
    issue = load_issue(REPO / "issues" / "2026-05-17.toml", config.newsletter.areas)
    with pytest.raises(RenderError, match=r"paper\.mjml\.j2:2: <mj-colum> is not an MJML tag"):
        Renderer(config).render(issue, ["LLM"])


def test_template_syntax_error_names_file_and_line(tmp_path, make_config):
    """A Jinja2 syntax error in a template is a one-line RenderError with file and line."""
    from newsletter.config import load_config

    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates" / "email", templates)
    (templates / "subject.txt.j2").write_text("{{ issue.title ")
    config = load_config(make_config(f'[paths]\ntemplates = "{templates}"\n'))
    issue = load_issue(REPO / "issues" / "2026-05-17.toml", config.newsletter.areas)
    with pytest.raises(RenderError, match=r"subject\.txt\.j2:1: "):
        Renderer(config).render(issue, ["LLM"])


def test_html_parses_as_a_mime_part(rendered, renderer):
    """The filled HTML and text survive a round trip through the email package as UTF-8 parts."""
    from email.message import EmailMessage

    _, groups = rendered
    group = groups[("Vision", "Agents")]
    html_part, text_part = group.fill(preview_slots(renderer.config))
    msg = EmailMessage()
    msg.set_content(text_part)
    msg.add_alternative(html_part, subtype="html")
    parsed = Parser().parsestr(msg.as_string())
    bodies = [p.get_payload(decode=True).decode() for p in parsed.walk() if not p.is_multipart()]
    assert bodies[0] == text_part and bodies[1] == html_part
