"""`issue check` names every mistake at once; arXiv ids as editors paste them; `issue list` shows approvals (#17)."""

from __future__ import annotations

import datetime

import pytest

from newsletter.content import arxiv_id, load_issue
from newsletter.errors import ContentError

from .conftest import AREAS, REPO, invoke
from .test_content import GOOD, write


def test_issue_check_names_an_unknown_area_a_missing_title_and_a_bad_status_in_one_run(make_config, runner,
                                                                                       tmp_path):
    """Three mistakes in one file are three lines, each naming the file, the paper and the field; exit 1."""
    issues = tmp_path / "issues"
    issues.mkdir()
    bad = (GOOD.replace('["LLM"]', '["Robotics"]').replace('title = "Second paper"\n', '')
           .replace('authors = ["B. Author"]', 'authors = ["B. Author"]\nstatus = "published"'))
    path = write(issues, bad)
    config = make_config(f'[paths]\nissues = "{issues}"\ntemplates = "{REPO / "templates" / "email"}"\n')
    out = invoke(runner, config, "issue", "check", code=1).output
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3 and all(str(path) in line for line in errors)
    assert any("paper 1 'First paper': areas" in e and "unknown area 'Robotics'" in e for e in errors)
    assert any("paper 2: title: missing (required)" in e for e in errors)
    assert any("paper 2: status:" in e and "'preprint' or 'accepted'" in e for e in errors)


@pytest.mark.parametrize(("pasted", "stored"), [
    ("arXiv:2605.01234v2", "2605.01234v2"), ("arxiv: 2605.01234", "2605.01234"), (" 2605.01234 ", "2605.01234"),
    ("1412.1234", "1412.1234"), ("0704.0001", "0704.0001"),
])
def test_arxiv_ids_are_taken_as_pasted_and_stored_normalised(pasted, stored):
    """An arXiv: prefix, a version suffix and spaces are accepted; the id is kept in one form."""
    assert arxiv_id(pasted) == stored


@pytest.mark.parametrize(("pasted", "words"), [
    ("2611.1234", "since January 2015 the number after the dot has 5 digits, not 4"),
    ("1412.01234", "before 2015 the number after the dot has 4 digits, not 5"),
    ("2613.01234", "month 13 does not exist"),
    ("hep-th/9901001", "is not an arXiv id (YYMM.NNNNN"),
])
def test_wrong_arxiv_ids_are_told_in_words_not_a_regex(tmp_path, pasted, words):
    """A wrong id says what is wrong in words, in a line naming the file and the paper, never a pattern."""
    path = write(tmp_path, GOOD.replace('arxiv = "2605.00001"', f'arxiv = "{pasted}"'))
    with pytest.raises(ContentError) as info:
        load_issue(path, AREAS)
    assert "paper 1 'First paper': arxiv: " in str(info.value) and words in str(info.value)
    assert "pattern" not in str(info.value) and "^" not in str(info.value)


def test_the_same_paper_in_two_versions_is_a_duplicate(tmp_path):
    """2605.00001 and arXiv:2605.00001v3 are one paper: the second is named as its duplicate."""
    second = 'authors = ["B. Author"]\narxiv = "arXiv:2605.00001v3"'
    path = write(tmp_path, GOOD.replace('authors = ["B. Author"]', second))
    with pytest.raises(ContentError, match=r"paper 2 'Second paper': duplicate of paper 1 \(same arXiv id\)"):
        load_issue(path, AREAS)


def test_issue_list_shows_an_issue_approved_without_editing_its_file(make_config, runner, tmp_path):
    """A draft (ready = false) approved with `issue approve` reads "yes (approved)" in `issue list`."""
    issues = tmp_path / "issues"
    issues.mkdir()
    write(issues, GOOD)
    write(issues, GOOD.replace("2026-06-04", "2026-06-11").replace("[[papers]]", "ready = true\n\n[[papers]]", 1),
          "2026-06-11.toml")
    config = make_config(f'[paths]\nissues = "{issues}"\ntemplates = "{REPO / "templates" / "email"}"\n')
    assert "no" in invoke(runner, config, "issue", "list").output
    invoke(runner, config, "issue", "approve", "2026-06-04")
    rows = {line.split()[1]: line for line in invoke(runner, config, "issue", "list").output.splitlines()
            if "2026-06" in line}
    assert "yes (approved)" in rows["2026-06-04"] and "yes (file)" in rows["2026-06-11"]


def test_issue_new_writes_a_draft_that_passes_check_once_its_examples_are_replaced(make_config, runner, tmp_path):
    """`issue new DATE` writes DATE's file with its week, one example paper and ready = false, which `issue check`
    passes as a draft once its EXAMPLE: values are replaced; again for the same date is a one-line error and the
    file is untouched; no DATE means the day of the next weekly send."""
    issues = tmp_path / "issues"
    issues.mkdir()
    write(issues, GOOD)
    config = make_config(f'[paths]\nissues = "{issues}"\ntemplates = "{REPO / "templates" / "email"}"\n'
                         '[schedule]\nday = "thu"\ntime = "09:00"\ntimezone = "UTC"\n')
    invoke(runner, config, "issue", "new", "2026-06-11")
    made = issues / "2026-06-11.toml"
    made.write_text(made.read_text(encoding="utf-8").replace("EXAMPLE: ", ""), encoding="utf-8")  # the editor's part
    issue = load_issue(made, AREAS)
    assert (issue.ready, issue.title, str(issue.week.start), len(issue.papers)) == (False, "A week", "2026-06-05", 1)
    assert "ok  2026-06-11.toml: 1 papers, draft" in invoke(runner, config, "issue", "check", "2026-06-11").output
    before = made.read_text()
    again = invoke(runner, config, "issue", "new", "2026-06-11", code=1).output
    assert "exists already" in again and len(again.strip().splitlines()) == 1 and made.read_text() == before
    invoke(runner, config, "issue", "new")
    made_next = [p for p in issues.glob("*.toml") if p.name not in ("2026-06-04.toml", "2026-06-11.toml")]
    assert len(made_next) == 1 and f"date = {made_next[0].stem}\n" in made_next[0].read_text()
    assert datetime.date.fromisoformat(made_next[0].stem).weekday() == 3  # a Thursday


def test_a_date_that_does_not_match_the_file_name_is_told_with_the_other_mistakes(make_config, runner, tmp_path):
    """The date/file-name mismatch is one of the lines of the first run, not told only once the rest is fixed."""
    issues = tmp_path / "issues"
    issues.mkdir()
    path = write(issues, GOOD.replace("date = 2026-06-04", "date = 2026-06-05").replace('["LLM"]', '["Robotics"]'))
    config = make_config(f'[paths]\nissues = "{issues}"\ntemplates = "{REPO / "templates" / "email"}"\n')
    errors = [line for line in invoke(runner, config, "issue", "check", code=1).output.splitlines()
              if line.startswith("error: ")]
    assert sorted(errors) == sorted([
        f"error: {path}: date: 2026-06-05 does not match the file name (want 2026-06-05.toml)",
        f"error: {path}: paper 1 'First paper': areas: unknown area 'Robotics' (choose from LLM, Vision, RL, Agents)",
    ])


def test_an_invalid_toml_value_names_its_key_and_line_and_hides_no_other_mistake(make_config, runner, tmp_path):
    """`date = 2026-13-01` is a line naming the key, its line and why; the file's other mistakes (a bad paper date
    in `week`, an unknown area, a missing title) are told in the same run, with no echo of the dropped keys."""
    issues = tmp_path / "issues"
    issues.mkdir()
    text = (GOOD.replace("date = 2026-06-04", "date = 2026-13-01").replace("end = 2026-06-03", "end = 2026-02-30")
            .replace('["LLM"]', '["Robotics"]').replace('title = "Second paper"\n', ''))
    path = write(issues, text)
    config = make_config(f'[paths]\nissues = "{issues}"\ntemplates = "{REPO / "templates" / "email"}"\n')
    errors = [line for line in invoke(runner, config, "issue", "check", code=1).output.splitlines()
              if line.startswith("error: ")]
    assert errors == [
        f"error: {path}: line 2: date: not valid TOML: 2026-13-01 is not a date (month must be in 1..12)",
        f"error: {path}: line 3: week: not valid TOML: 2026-02-30 is not a date (day is out of range for month)",
        f"error: {path}: paper 1 'First paper': areas: unknown area 'Robotics' (choose from LLM, Vision, RL, Agents)",
        f"error: {path}: paper 2: title: missing (required)",
    ]


def test_a_toml_error_in_a_paper_names_the_paper_and_a_syntax_error_still_names_its_line(tmp_path):
    """A bad value in the second [[papers]] table names paper 2 and the key; an unclosed array is its line."""
    bad_value = write(tmp_path, GOOD.replace('authors = ["B. Author"]', 'authors = ["B. Author"]\nvenue = ICML'))
    with pytest.raises(ContentError) as info:
        load_issue(bad_value, AREAS)
    assert str(info.value) == (f"{bad_value}: line 18: paper 2 'Second paper': venue: not valid TOML: ICML "
                               "(Invalid value, column 9)")
    unclosed = write(tmp_path, GOOD.replace('authors = ["B. Author"]', 'authors = ["B. Author"'))
    with pytest.raises(ContentError) as info:
        load_issue(unclosed, AREAS)
    assert str(info.value) == f"{unclosed}: line 18: not valid TOML: Unclosed array (column 1)"
