"""Issue files as an attacker (or a careless paste) writes them (issue #21): control characters in any text field,
an approved issue edited afterwards, the `issue new` draft sent as it stands. Each through the CLI on a real
SQLite file; where mail could go out, a real aiosmtpd server that must receive nothing."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter import schedule, store
from newsletter.config import load_config
from newsletter.store import tables as t

from ..conftest import REPO, invoke
from ..smtpd import smtp_server
from ..test_content import GOOD, write

ISSUE = "2026-05-28"
SLOT = datetime(2026, 5, 28, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # the Thursday slot of ISSUE
SECRET = "content-test-secret-0123456789abcdef"  # at least 32 bytes
READERS = [f"reader{n}@example.org" for n in range(3)]


def folder_config(make_config: Callable[..., Path], issues: Path, extra: str = "") -> Path:
    """A config reading issues from ``issues``, with a real SQLite file in tmp_path and a key of 32+ bytes."""
    return make_config(f"""
        [newsletter]
        secret_key = "{SECRET}"
        [paths]
        issues = "{issues}"
        templates = "{REPO / 'templates' / 'email'}"
        {extra}
        """)


def one_issue(tmp_path: Path, text: str) -> Path:
    issues = tmp_path / "issues"
    issues.mkdir(exist_ok=True)
    write(issues, text)
    return issues


def errors_of(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


@pytest.mark.attack(edge="content", attack="control character in a paper title",
                    held="check names file, paper, field")
@pytest.mark.parametrize("escape", ["\\u000b", "\\u0000", "\\u001b", "\\uFFFE"])
def test_a_control_character_in_a_title_is_one_line_naming_file_paper_and_field(
        make_config: Callable[..., Path], runner: CliRunner, tmp_path: Path, escape: str) -> None:
    """A title holding U+000B, U+0000, U+001B or U+FFFE fails `issue check` in one line naming the file, the paper,
    the field and the character: no `ok … ready`, no MJML error naming nothing."""
    ready = GOOD.replace("[[papers]]", "ready = true\n\n[[papers]]", 1)
    issues = one_issue(tmp_path, ready.replace('title = "First paper"', f'title = "First{escape} paper"'))
    out = invoke(runner, folder_config(make_config, issues), "issue", "check", code=1).output
    code = escape.removeprefix("\\u").upper()
    shown = repr(chr(int(code, 16)))[1:-1]  # the title as Python's repr escapes it: never the raw character
    assert errors_of(out) == [f"error: {issues / '2026-06-04.toml'}: paper 1 'First{shown} paper': title: "
                              f"contains a {'noncharacter' if code == 'FFFE' else 'control character'} U+{code}"]
    assert "ok  " not in out and "MJML" not in out


@pytest.mark.attack(edge="content", attack="control characters in every other field",
                    held="each named, one line each")
def test_control_characters_in_every_text_field_are_each_named(
        make_config: Callable[..., Path], runner: CliRunner, tmp_path: Path) -> None:
    """Issue title, preheader, author, venue, keyword, summary, section heading and body, a field's name and a
    newline in a one-line field: each a line naming its field; tab and newline in a Markdown body are text."""
    text = (GOOD.replace('title = "A week"', 'title = "A\\u0085week"\npreheader = "Pre\\u0007header"')
            .replace('authors = ["A. Author"]', 'authors = ["A. Author", "B.\\u001b[31m"]\nstatus = "accepted"\n'
                     'venue = "ICML\\u007f"\nkeywords = ["ok", "k\\uFDD0"]\nsummary = "Sum\\u0008"\n'
                     '"x\\u0000y" = 1')
            .replace('heading = "Method"', 'heading = "Met\\nhod"').replace('body = "It works."',
                                                                          'body = "It\\u000c works.\\n\\tReally."'))
    issues = one_issue(tmp_path, text)
    errors = errors_of(invoke(runner, folder_config(make_config, issues), "issue", "check", code=1).output)
    paper = f"{issues / '2026-06-04.toml'}: paper 1 'First paper': "
    assert sorted(errors) == sorted([
        f"error: {issues / '2026-06-04.toml'}: title: contains a control character U+0085",
        f"error: {issues / '2026-06-04.toml'}: preheader: contains a control character U+0007",
        f"error: {paper}authors.[2]: contains a control character U+001B",
        f"error: {paper}venue: contains a control character U+007F",
        f"error: {paper}keywords.[2]: contains a noncharacter U+FDD0",
        f"error: {paper}summary: contains a control character U+0008",
        f"error: {paper}x\\x00y: the field's name contains a control character U+0000",
        f"error: {paper}sections.[1].heading: contains a control character U+000A",
        f"error: {paper}sections.[1].body: contains a control character U+000C",
    ])


@pytest.mark.attack(edge="content", attack="send an issue with a control character",
                    held="one line, nothing sent")
def test_send_of_an_issue_with_a_control_character_says_so_once_and_sends_nothing(
        make_config: Callable[..., Path], runner: CliRunner, tmp_path: Path) -> None:
    """`send` of a ready issue whose title holds U+000B prints the one line naming the field once, sends nothing."""
    ready = GOOD.replace("[[papers]]", "ready = true\n\n[[papers]]", 1)
    issues = one_issue(tmp_path, ready.replace('title = "A week"', 'title = "A\\u000bweek"'))
    with smtp_server() as (handler, port):
        config = folder_config(make_config, issues, f"[smtp]\nport = {port}")
        invoke(runner, config, "subscribers", "add", READERS[0])
        out = invoke(runner, config, "send", "2026-06-04", "--yes", code=1).output
    assert out == f"Error: {issues / '2026-06-04.toml'}: title: contains a control character U+000B\n"
    assert not handler.messages


def approved_then_edited(make_config: Callable[..., Path], runner: CliRunner, tmp_path: Path,
                         port: int) -> tuple[Path, Path]:
    """ISSUE as a draft approved by `issue approve`, then edited: a paper's summary changed after approval."""
    issues = tmp_path / "issues"
    issues.mkdir()
    shutil.copy(REPO / "issues" / f"{ISSUE}.toml", issues)
    path = issues / f"{ISSUE}.toml"
    path.write_text(path.read_text(encoding="utf-8").replace("ready = true", "ready = false"), encoding="utf-8")
    config = folder_config(make_config, issues, f"""[smtp]
        port = {port}
        [schedule]
        day = "thu"
        time = "09:00"
        timezone = "Europe/Berlin"
        grace_hours = 6""")
    for address in READERS:
        invoke(runner, config, "subscribers", "add", address)
    invoke(runner, config, "issue", "approve", ISSUE)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('summary = """', 'summary = """Sponsored: buy now. ', 1), encoding="utf-8")
    return config, path


@pytest.mark.attack(edge="content", attack="edit an issue after its approval",
                    held="not sent until approved again")
def test_an_issue_edited_after_approval_is_not_sent_by_send_nor_the_scheduler(
        make_config: Callable[..., Path], runner: CliRunner, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An approval holds the approved bytes' hash: after an edit `send` and the weekly job send nothing and
    `issue list` says "changed since approval"; approving the new text again lets it go."""
    with smtp_server() as (handler, port):
        config, path = approved_then_edited(make_config, runner, tmp_path, port)
        refused = invoke(runner, config, "send", ISSUE, "--yes", code=1).output
        assert "changed since it was approved" in refused and f"newsletter issue approve {ISSUE}" in refused
        loaded = load_config(config)
        engine = store.connect(store.engine_for(loaded.database_url))
        caplog.set_level(logging.INFO, "newsletter.schedule")
        try:
            assert schedule.run_weekly(loaded, engine, SLOT) == "not-ready"
            assert "changed since it was approved" in caplog.text and not handler.messages
            listed = [line for line in invoke(runner, config, "issue", "list").output.splitlines() if ISSUE in line]
            assert len(listed) == 1 and "changed since approval" in listed[0]
            invoke(runner, config, "issue", "approve", ISSUE)
            assert schedule.run_weekly(loaded, engine, SLOT) == "sent"
        finally:
            engine.dispose()
    assert sorted(handler.received) == READERS and all("Sponsored: buy now" in m.decode() for _, m in handler.messages)


@pytest.mark.attack(edge="content", attack="approval kept from before hashes",
                    held="approve again to send")
def test_an_approval_from_before_hashes_were_kept_is_not_an_approval(
        make_config: Callable[..., Path], runner: CliRunner, tmp_path: Path) -> None:
    """An approvals row with no content hash (approved before migration 0006) sends nothing until approved again."""
    with smtp_server() as (handler, port):
        config, _ = approved_then_edited(make_config, runner, tmp_path, port)
        invoke(runner, config, "issue", "approve", ISSUE)  # the edited bytes: approved…
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'newsletter.db'}")
        with engine.begin() as conn:  # …then as an approval made before hashes were kept would look
            conn.execute(t.approvals.update().values(content_hash=None))
        engine.dispose()
        assert "changed since approval" in invoke(runner, config, "issue", "list").output
        assert "changed since it was approved" in invoke(runner, config, "send", ISSUE, "--yes", code=1).output
        assert not handler.messages


@pytest.mark.attack(edge="content", attack="send the issue new draft as it stands",
                    held="check names each placeholder")
def test_the_issue_new_draft_fails_check_naming_every_placeholder(
        make_config: Callable[..., Path], runner: CliRunner, tmp_path: Path) -> None:
    """The draft `issue new` writes (example title, authors, arXiv id, texts) fails `issue check` with one line per
    placeholder saying to replace it, and `issue approve` refuses it: it can never reach the list as written."""
    issues = one_issue(tmp_path, GOOD)
    config = folder_config(make_config, issues)
    invoke(runner, config, "issue", "new", "2026-06-11")
    errors = errors_of(invoke(runner, config, "issue", "check", "2026-06-11", code=1).output)
    fields = [line.split(": replace the example value")[0].rsplit(": ", 1)[1] for line in errors]
    assert sorted(fields) == sorted(["body", "title", "authors.[1]", "authors.[2]", "arxiv", "keywords.[1]",
                                     "sections.[1].body"])
    assert all("2026-06-11.toml" in e and e.endswith("replace the example value (EXAMPLE: …)") for e in errors)
    assert "replace the example value" in invoke(runner, config, "issue", "approve", "2026-06-11", code=1).output
