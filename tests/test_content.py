"""Issue files: the two sample issues, and every kind of bad content."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from newsletter.cli import cli
from newsletter.content import find_issue, load_issue
from newsletter.errors import ContentError, IssueNotFound

from .conftest import AREAS, REPO

GOOD = """\
title = "A week"
date = 2026-06-04
week = { start = 2026-05-28, end = 2026-06-03 }

[[papers]]
title = "First paper"
authors = ["A. Author"]
arxiv = "2605.00001"
areas = ["LLM"]

[[papers.sections]]
heading = "Method"
body = "It works."

[[papers]]
title = "Second paper"
authors = ["B. Author"]
areas = ["Vision", "RL"]
"""


def write(tmp_path: Path, text: str, name: str = "2026-06-04.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_first_seed_issue_carries_its_facts():
    """2026-05-17 holds the five papers of the May 11–17 digest with their authors and areas."""
    issue = load_issue(REPO / "issues" / "2026-05-17.toml", AREAS)
    assert len(issue.papers) == 5 and issue.ready
    su01 = issue.papers[0]
    assert su01.title.startswith("Achieving Gold-Medal-Level Olympiad Reasoning")
    assert su01.authors[0] == "Yafu Li" and su01.et_al == 24 and su01.byline.endswith("+24 more")
    assert su01.areas == ["LLM", "RL"]
    assert [s.heading for s in su01.sections] == ["What it is", "Where it fits", "Why it matters"]
    sdar = next(p for p in issue.papers if p.title == "Self-Distilled Agentic Reinforcement Learning")
    assert set(sdar.areas) == {"RL", "Agents"}
    assert [s.heading for s in issue.top_sections] == ["This week in ML", "Themes", "Open questions"]


def test_second_seed_issue_carries_ids_status_and_code():
    """2026-05-28 holds nine papers with arXiv ids, the ICML acceptance, code links and figures."""
    issue = load_issue(REPO / "issues" / "2026-05-28.toml", AREAS)
    assert len(issue.papers) == 9
    by_id = {p.arxiv: p for p in issue.papers}
    assert by_id["2605.28293"].status == "accepted" and by_id["2605.28293"].venue == "ICML 2025"
    assert by_id["2605.28293"].code == "https://github.com/hongruhou89/ProRL"
    assert by_id["2605.28820"].code == "https://github.com/EvolvingLMMs-Lab/NEO"
    assert "8.13×" in " ".join(s.body for s in by_id["2605.28760"].sections)
    assert by_id["2605.28819"].byline == "Yangyi Huang et al. (incl. Bernhard Schölkopf, Weiyang Liu)"
    assert [p.areas[0] for p in issue.papers].count("Vision") == 2
    assert by_id["2605.28760"].url == "https://arxiv.org/abs/2605.28760"


def test_good_file_loads(tmp_path):
    """A minimal valid file loads, areas canonicalised and links derived from the arXiv id."""
    issue = load_issue(write(tmp_path, GOOD.replace('"Vision", "RL"', '"vision", "rl"')), AREAS)
    assert issue.slug == "2026-06-04" and issue.papers[1].areas == ["Vision", "RL"]
    assert issue.papers[0].url == "https://arxiv.org/abs/2605.00001" and issue.papers[1].url is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace('title = "A week"', 'title = "A week'), "not valid TOML: "),
        (GOOD.replace('areas = ["LLM"]', 'areas = ["NLP"]'),
         "paper 1 'First paper': areas: unknown area 'NLP' (choose from LLM, Vision, RL, Agents)"),
        (GOOD.replace('title = "Second paper"\n', ""), "paper 2: title: missing (required)"),
        (GOOD.replace('title = "A week"\n', ""), "2026-06-04.toml: title: missing (required)"),
        (GOOD.replace("Second paper", "First Paper"), "paper 2 'First Paper': duplicate of paper 1 (same title)"),
        (GOOD.replace('authors = ["B. Author"]', 'authors = ["B. Author"]\narxiv = "2605.00001"'),
         "paper 2 'Second paper': duplicate of paper 1 (same arXiv id)"),
        (GOOD.split("[[papers]]")[0], "the issue has no papers"),
        (GOOD.replace('arxiv = "2605.00001"', 'arxiv = "arXiv:1"'), "paper 1 'First paper': arxiv: "),
        (GOOD.replace('areas = ["LLM"]', 'areas = ["LLM"]\nstatus = "accepted"'), "venue: required"),
        (GOOD.replace('areas = ["LLM"]', 'areas = ["LLM"]\nauthor = "x"'),
         "paper 1 'First paper': author: unknown field"),
        (GOOD.replace('heading = "Method"', 'heading = ""'), "paper 1 'First paper': sections.[1].heading"),
        (GOOD.replace("2026-06-04", "2026-06-05"), "does not match the file name"),
    ],
)
def test_bad_content_is_one_line_naming_file_paper_and_field(tmp_path, text, expected):
    """Each kind of bad content gives one line that names the file, the paper and the field."""
    path = write(tmp_path, text)
    with pytest.raises(ContentError) as info:
        load_issue(path, AREAS)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_malformed_toml_names_the_line(tmp_path):
    """A TOML syntax error says on which line it is."""
    path = write(tmp_path, GOOD.replace('authors = ["B. Author"]', 'authors = ["B. Author"'))
    with pytest.raises(ContentError, match=r"line 18"):
        load_issue(path, AREAS)


def test_not_utf8_is_reported(tmp_path):
    """An issue file in another encoding is named as not UTF-8."""
    path = tmp_path / "2026-06-04.toml"
    path.write_bytes(GOOD.replace("A week", "Ä week").encode("latin-1"))
    with pytest.raises(ContentError, match="not UTF-8"):
        load_issue(path, AREAS)


def test_find_issue_by_stem_latest_and_unknown(tmp_path):
    """ISSUE is a file stem or 'latest'; an unknown stem names the folder and the latest ones."""
    write(tmp_path, GOOD)
    write(tmp_path, GOOD.replace("2026-06-04", "2026-06-11"), "2026-06-11.toml")
    assert find_issue(tmp_path, "latest").name == "2026-06-11.toml"
    assert find_issue(tmp_path, "2026-06-04").name == "2026-06-04.toml"
    with pytest.raises(IssueNotFound, match="no issue '2026-01-01'.*2026-06-11"):
        find_issue(tmp_path, "2026-01-01")


def test_issue_check_and_list_commands(make_config, runner, tmp_path):
    """`issue check` passes good files, fails with a one-line error on a bad one; `issue list` shows both."""
    issues = tmp_path / "issues"
    issues.mkdir()
    write(issues, GOOD)
    write(issues, GOOD.replace("2026-06-04", "2026-06-11").replace('["LLM"]', '["Robotics"]'), "2026-06-11.toml")
    templates = REPO / "templates" / "email"  # `issue check` renders each group to measure its size
    config = make_config(f'[paths]\nissues = "{issues}"\ntemplates = "{templates}"\n')
    ok = runner.invoke(cli, ["--config", str(config), "issue", "check", "2026-06-04"])
    assert ok.exit_code == 0 and "ok  2026-06-04.toml: 2 papers" in ok.output
    bad = runner.invoke(cli, ["--config", str(config), "issue", "check"])
    assert bad.exit_code == 1 and "unknown area 'Robotics'" in bad.output
    listed = runner.invoke(cli, ["--config", str(config), "issue", "list"])
    assert "2026-06-04" in listed.output and "invalid" in listed.output


def test_sample_issues_pass_issue_check(runner):
    """Both shipped issues pass `newsletter issue check`."""
    result = runner.invoke(cli, ["--config", str(REPO / "config.toml"), "issue", "check"])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok  ") == 2
