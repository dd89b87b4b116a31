"""arXiv's answer as an attacker (or a broken proxy) writes it (#25): `issue add` writes into an issue file that goes
to every subscriber, so a title, a journal reference or a link from outside must land as one valid TOML value of
one new paper, or not at all. Each through the CLI against the replaying server of tests/arxivd.py."""

from __future__ import annotations

import tomllib

import pytest
from click.testing import CliRunner

from ..arxivd import recorded
from ..conftest import invoke
from ..test_arxiv import ISSUE, MEMPRIVACY, SDAR, Desk, desk_fixture, papers  # noqa: F401  (the desk fixture)

TITLE = "MemPrivacy: Privacy-Preserving Personalized Memory Management for\n  Edge-Cloud Assistants"
ABSTRACT_START = "  When an assistant on a phone"


def serve(desk: Desk, arxiv: str, text: str) -> None:
    """arXiv's answer for ``arxiv`` asked alone is ``text`` from now on."""
    desk.server.answers[arxiv] = text.encode("utf-8")


def add_one(desk: Desk, runner: CliRunner, arxiv: str = MEMPRIVACY) -> dict[str, object]:
    """Add ``arxiv``; the file must load, hold exactly one more paper, and pass `issue check`. That paper."""
    count = len(papers(desk.issue))
    invoke(runner, desk.config, "issue", "add", ISSUE, arxiv)
    after = papers(desk.issue)
    assert len(after) == count + 1
    invoke(runner, desk.config, "issue", "check", ISSUE)
    return after[-1]


def refused(desk: Desk, runner: CliRunner, words: str) -> None:
    """`issue add` fails in one line holding ``words``, and the file is byte for byte as it was."""
    before = desk.issue.read_bytes()
    result = invoke(runner, desk.config, "issue", "add", ISSUE, MEMPRIVACY, code=1)
    assert len(result.output.strip().splitlines()) == 1 and words in result.output, result.output
    assert desk.issue.read_bytes() == before


@pytest.mark.attack(edge="content", attack='arXiv title with """, a newline and [[papers]], C1 controls',
                    held="one escaped TOML string, one paper")
def test_toml_breaking_text_in_title_authors_and_abstract_stays_inside_its_value(desk: Desk,
                                                                                 runner: CliRunner) -> None:
    """A title holding \"\"\", a newline then [[papers]] and C1/DEL characters, an author closing the array, an abstract
    closing its multi-line string: the file still loads with one more paper whose values are those texts (on one
    line, control characters dropped), and `issue check` passes."""
    evil_title = 'Evil """ title&#x85;&#x9b;&#x7f;\n[[papers]]\ntitle = "injected"'
    text = (recorded(MEMPRIVACY).replace(TITLE, evil_title)
            .replace("<name>Bo Tang</name>", '<name>Bo "] , areas = ["RL</name>')
            .replace(ABSTRACT_START, ' """\n[[papers]]\ntitle = "also injected"\n"""\\u0041 ' + ABSTRACT_START))
    serve(desk, MEMPRIVACY, text)
    paper = add_one(desk, runner)
    assert paper["title"] == 'Evil """ title [[papers]] title = "injected"'
    assert paper["authors"] == ["Yining Chen", "Jihao Zhao", 'Bo "] , areas = ["RL', "Haofen Wang"]
    assert str(paper["summary"]).startswith('""" [[papers]] title = "also injected" """\\u0041 When an assistant')


@pytest.mark.attack(edge="content", attack="arXiv answer with a C0 control character (&#x1b;) in the title",
                    held="not valid XML: one line, file unchanged")
def test_a_c0_control_character_in_the_answer_is_refused_whole(desk: Desk, runner: CliRunner) -> None:
    """XML 1.0 has no U+001B: the answer is not read at all, the one-line error says why, nothing is written."""
    serve(desk, MEMPRIVACY, recorded(MEMPRIVACY).replace(TITLE, "Escape &#x1b;[31m red"))
    refused(desk, runner, "arXiv's answer is not valid XML")


@pytest.mark.attack(edge="content", attack="code link to javascript:, another host, github.com inside another URL",
                    held="no code field written")
def test_a_code_link_that_is_not_a_github_repository_is_not_written(desk: Desk, runner: CliRunner) -> None:
    """javascript:…//github.com/…, https://evil.example/github.com/…, github.com.evil.example/… and a gitlab link
    in abstract and comments: the paper is added without `code`."""
    text = (recorded(MEMPRIVACY)
            .replace(ABSTRACT_START, " javascript:alert(1)//github.com/evil/x https://evil.example/github.com/evil/y "
                                     "http://github.com.evil.example/evil/z user@github.com/evil/w" + ABSTRACT_START)
            .replace("12 pages, 4 figures", "Code: https://gitlab.com/evil/repo"))
    serve(desk, MEMPRIVACY, text)
    assert "code" not in add_one(desk, runner)


@pytest.mark.attack(edge="content", attack="code link with quotes and an event handler after the repository",
                    held="rebuilt as https://github.com/OWNER/REPO only")
def test_a_code_link_keeps_only_owner_and_repository(desk: Desk, runner: CliRunner) -> None:
    """https://github.com/ok/repo"onmouseover="alert(1) becomes https://github.com/ok/repo: nothing after the name."""
    serve(desk, MEMPRIVACY, recorded(MEMPRIVACY).replace(
        ABSTRACT_START, ' https://github.com/ok/repo&quot;onmouseover=&quot;alert(1) ' + ABSTRACT_START))
    assert add_one(desk, runner)["code"] == "https://github.com/ok/repo"


@pytest.mark.attack(edge="content", attack="newline and [[papers]] in a journal reference and a DOI (comments)",
                    held="one comment line each, one paper")
def test_text_written_as_a_comment_cannot_leave_its_comment_line(desk: Desk, runner: CliRunner) -> None:
    """A journal reference and a DOI holding a newline then TOML become one comment line each: no key is added."""
    extra = ('    <arxiv:journal_ref xmlns:arxiv="http://arxiv.org/schemas/atom">J. Evil 1\n[[papers]]\n'
             'title = "injected"\nauthors = ["x"]\nareas = ["RL"]</arxiv:journal_ref>\n'
             '    <arxiv:doi xmlns:arxiv="http://arxiv.org/schemas/atom">10.1/x\r\nready = true</arxiv:doi>\n')
    serve(desk, MEMPRIVACY, recorded(MEMPRIVACY).replace("    <link href=", extra + "    <link href=", 1))
    paper = add_one(desk, runner)
    assert set(paper) == {"title", "authors", "arxiv", "status", "venue", "areas", "summary"}
    data = tomllib.loads(desk.issue.read_text(encoding="utf-8"))
    assert data["ready"] is True and "# doi: 10.1/x ready = true" in desk.issue.read_text(encoding="utf-8")


@pytest.mark.attack(edge="content", attack="arXiv answer with a DOCTYPE and nested entities (billion laughs)",
                    held="refused unread: one line, file unchanged")
def test_an_answer_with_a_doctype_is_not_parsed(desk: Desk, runner: CliRunner) -> None:
    """Entity declarations are refused before the XML parser sees them: no expansion, nothing written."""
    bomb = ('<?xml version="1.0"?>\n<!DOCTYPE feed [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
            '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>\n')
    serve(desk, MEMPRIVACY, recorded(MEMPRIVACY).replace('<?xml version="1.0" encoding="UTF-8"?>\n', bomb)
          .replace(TITLE, "&c;"))
    refused(desk, runner, "arXiv's answer has a DOCTYPE: not read")


@pytest.mark.attack(edge="content", attack="arXiv answering with another paper than the one asked",
                    held="no such paper: nothing written under the asked id")
def test_an_answer_about_another_paper_is_not_written_under_the_asked_id(desk: Desk, runner: CliRunner) -> None:
    """Asked for 2605.11502, answered 2605.11876: "no such paper", the file unchanged, nothing cached for 2605.11502."""
    serve(desk, MEMPRIVACY, recorded(SDAR))
    refused(desk, runner, f"{MEMPRIVACY}: arXiv has no such paper")
    assert not (desk.cache / f"{MEMPRIVACY}.json").exists()
