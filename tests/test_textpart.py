"""The plain-text part (#15): lines within 78 characters unless a line is one URL, and the same spacing
around every paper's Keywords/Paper/Code block, in every group of both shipped issues."""

from __future__ import annotations

import re

import pytest

from newsletter.content import issue_files, load_issue
from newsletter.links import Links
from newsletter.render import TEXT_MAX, RenderedGroup, Renderer, fit_text

from .conftest import REPO, parse
from .test_headers import send_one

URL_ONLY = re.compile(r"[(<]?(https?://|mailto:)\S+$")
LINKS = Links("textpart-secret", "https://news.example.org")


def subscriber_slots(name: str = "Ada Lovelace") -> dict[str, str]:
    """Slot values as a subscriber's copy has them: real signed links, as long as the real ones."""
    return {"name": name, "email": "ada@example.org", "unsubscribe_url": LINKS.url("unsubscribe", 123456),
            "preferences_url": LINKS.url("preferences", 123456)}


def every_group(repo_config) -> list[tuple[str, RenderedGroup]]:
    renderer = Renderer(repo_config)
    found = []
    for path in issue_files(REPO / "issues"):
        issue = load_issue(path, repo_config.newsletter.areas)
        found += [(f"{issue.slug} {g.key}", g) for g in renderer.render_all(issue).values() if g is not None]
    return found


def too_long(text: str) -> list[str]:
    return [line for line in text.splitlines() if len(line) > TEXT_MAX and not URL_ONLY.match(line.strip())]


def test_no_line_over_78_unless_it_is_one_url(repo_config):
    """In every group of both shipped issues, filled for a subscriber, each line over 78 characters is one URL."""
    groups = every_group(repo_config)
    assert len({name.split()[0] for name, _ in groups}) == 2 and len(groups) > 20
    for name, group in groups:
        _, text = group.fill(subscriber_slots())
        assert too_long(text) == [], name
    long_urls = [line for _, g in groups for line in g.fill(subscriber_slots())[1].splitlines() if len(line) > TEXT_MAX]
    assert long_urls and all(URL_ONLY.match(line.strip()) for line in long_urls)  # the exception is used


def link_blocks(text: str) -> list[list[str]]:
    """The paragraphs that hold a paper's Keywords, Paper or Code line."""
    return [b.split("\n") for b in text.split("\n\n") if re.search(r"^(Keywords|Paper|Code): ", b, re.M)]


def test_paper_links_always_follow_a_blank_line(repo_config, tmp_path):
    """Every paper's Keywords/Paper/Code block starts after a blank line, with keywords or without."""
    text = (REPO / "issues" / "2026-05-28.toml").read_text(encoding="utf-8")
    with_keywords = text.replace('areas = ["LLM"]\n', 'areas = ["LLM"]\nkeywords = ["zeroth-order", "vllm"]\n', 1)
    (tmp_path / "2026-05-28.toml").write_text(with_keywords, encoding="utf-8")
    issue = load_issue(tmp_path / "2026-05-28.toml", repo_config.newsletter.areas)
    texts = [(name, g.text) for name, g in every_group(repo_config)]
    texts += [(f"keywords {g.key}", g.text) for g in Renderer(repo_config).render_all(issue).values() if g]
    seen: dict[str, int] = {}
    for name, text in texts:
        for lines in link_blocks(text):
            assert lines[0].startswith(("Keywords: ", "Paper: ", "Code: ")), (name, lines)
            shape = ("keywords" if lines[0].startswith("Keywords: ") else "") + \
                    ("+paper" if any(x.startswith("Paper: ") for x in lines) else "")
            seen[shape] = seen.get(shape, 0) + 1
    assert {"keywords", "+paper", "keywords+paper"} <= set(seen), seen  # every shape was checked


def test_no_three_blank_lines_and_no_trailing_blanks(repo_config):
    """Spacing is even: never two blank lines in a row, no line ending in a blank."""
    for name, group in every_group(repo_config):
        text = group.fill(subscriber_slots())[1]
        assert "\n\n\n" not in text, name
        assert not [line for line in text.splitlines() if line != line.rstrip()], name


def test_a_line_with_a_slot_ends_after_the_slot():
    """A subscriber's name is only known per copy, so the greeting breaks after it and the rest wraps at 78."""
    slot = re.compile(r"__nlabc_([a-z_]+)__")
    line = "Hi __nlabc_name__, " + "word " * 40
    out = fit_text(line.strip(), slot).split("\n")
    assert out[0] == "Hi __nlabc_name__," and all(len(x) <= TEXT_MAX for x in out[1:]) and len(out) > 2
    assert " ".join(out) == line.strip()


@pytest.mark.parametrize("line", ["Paper: https://example.org/" + "a" * 90,
                                  "See (https://example.org/" + "b" * 90 + ") for the code and more words here.",
                                  "* a bullet " + "word " * 30])
def test_long_lines_wrap_and_urls_stand_alone(line):
    """A long line wraps at 78 with its URL on a line of its own; a bullet keeps its hanging indent."""
    out = fit_text(line, re.compile(r"__nl_(x)__")).split("\n")
    assert len(out) > 1 and " ".join(x.strip() for x in out) == " ".join(line.split())
    assert all(len(x) <= TEXT_MAX or URL_ONLY.match(x.strip()) for x in out)
    if line.startswith("* "):
        assert all(x.startswith("  ") for x in out[1:])


def test_the_text_part_as_sent_keeps_the_limit(make_config, runner):
    """The text/plain part a subscriber receives (real send, real links) has no line over 78 but URLs."""
    data, _ = send_one(make_config, runner, name="Ada Augusta King", areas="")
    text = parse(data).get_body(("plain",)).get_content()
    assert "Hi Ada Augusta King," in text and too_long(text) == []
