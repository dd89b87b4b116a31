"""Operators' mistakes (issue #21): a send to an empty list, a send to who joined since, an address RFC 5321
refuses, a destructive command run by a script. Each through the CLI on a real SQLite file, and where mail
goes out, a real aiosmtpd server."""

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
from starlette.testclient import TestClient

from newsletter import audience, lifecycle, schedule, store
from newsletter.config import load_config
from newsletter.send import outbox
from newsletter.store import tables as t
from newsletter.web import create_app

from ..conftest import AREAS, REPO, invoke
from ..smtpd import smtp_server
from ..test_send_cli import on_terminal

ISSUE = "2026-05-28"
LONG = "a" * 77 + "@example.org"  # RFC 5321: at most 64 octets before the @-sign
SECRET = "operators-test-secret-0123456789abcdef"  # at least 32 bytes


def issue_rows(tmp_path: Path) -> list[tuple[str, str]]:
    """(slug, state) of every row of ``issues`` in the test's SQLite file."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'newsletter.db'}")
    try:
        with engine.connect() as conn:
            return [(r.slug, r.state) for r in conn.execute(sa.select(t.issues.c.slug, t.issues.c.state))]
    finally:
        engine.dispose()


def write_list(path: Path, addresses: list[str]) -> Path:
    path.write_text("email,name,areas\n" + "".join(f"{a},,\n" for a in addresses), encoding="utf-8")
    return path


@pytest.mark.attack(edge="operators", attack="send to an empty list", held="refused, issue left unsent")
def test_send_to_an_empty_list_refuses_and_the_send_after_an_import_reaches_everyone(
        make_config: Callable[..., Path], runner: CliRunner, tmp_path: Path) -> None:
    """A send to no one refuses in one line and records nothing; after an import the same send reaches all 25."""
    with smtp_server() as (handler, port):
        config = make_config(f"[smtp]\nport = {port}\n")
        refused = invoke(runner, config, "send", ISSUE, code=1).output
        assert refused.count("\n") == 1 and "nothing to send" in refused and "stays unsent" in refused
        assert issue_rows(tmp_path) == []
        people = [f"reader{n}@example.org" for n in range(25)]
        invoke(runner, config, "subscribers", "import", str(write_list(tmp_path / "list.csv", people)))
        assert "Would send 25 messages" in invoke(runner, config, "send", ISSUE, "--dry-run").output
        sent = invoke(runner, config, "send", ISSUE).output
    assert "sent already" not in sent
    assert sorted(handler.received) == sorted(people) and set(handler.received.values()) == {1}
    assert issue_rows(tmp_path) == [(ISSUE, "sent")]


@pytest.mark.attack(edge="operators", attack="weekly send to an empty list", held="not marked sent, one log line")
def test_the_weekly_send_to_an_empty_list_does_not_mark_the_issue_sent(
        make_config: Callable[..., Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The scheduler's send goes through the same rule: no subscriber, one WARNING line, no issues row."""
    issues = tmp_path / "issues"
    issues.mkdir()
    shutil.copy(REPO / "issues" / f"{ISSUE}.toml", issues)
    with smtp_server() as (handler, port):
        config = load_config(make_config(f"""
            [paths]
            issues = "{issues}"
            templates = "{REPO / 'templates' / 'email'}"
            [schedule]
            day = "thu"
            time = "09:00"
            timezone = "Europe/Berlin"
            [smtp]
            port = {port}
            """))
        engine = store.connect(store.engine_for(config.database_url))
        caplog.set_level(logging.INFO, "newsletter.schedule")
        try:
            outcome = schedule.run_weekly(config, engine, datetime(2026, 5, 28, 9, 0, tzinfo=ZoneInfo("Europe/Berlin")))
        finally:
            engine.dispose()
    lines = [r.getMessage() for r in caplog.records if r.name == "newsletter.schedule"]
    assert outcome == "nobody" and not handler.messages and issue_rows(tmp_path) == []
    assert len(lines) == 1 and "nothing to send" in lines[0] and "\n" not in lines[0]


@pytest.mark.attack(edge="operators", attack="resend a sent issue to newcomers",
                    held="only who has no row gets it")
def test_new_subscribers_get_a_sent_issue_and_no_one_gets_it_twice(
        make_config: Callable[..., Path], runner: CliRunner, tmp_path: Path) -> None:
    """`send --new-subscribers` reaches only those who joined since, at most once each; with no one new it
    refuses in one line, and an issue never sent is refused too."""
    with smtp_server() as (handler, port):
        config = make_config(f"[smtp]\nport = {port}\n")
        first = [f"early{n}@example.org" for n in range(2)]
        invoke(runner, config, "subscribers", "import", str(write_list(tmp_path / "first.csv", first)))
        never = invoke(runner, config, "send", ISSUE, "--new-subscribers", code=1).output
        assert "has not been sent" in never and issue_rows(tmp_path) == [] and not handler.messages
        invoke(runner, config, "send", ISSUE)
        later = [f"late{n}@example.org" for n in range(3)]
        invoke(runner, config, "subscribers", "import", str(write_list(tmp_path / "later.csv", first + later)))
        assert "Would send 3 messages" in invoke(runner, config, "send", ISSUE, "--new-subscribers",
                                                 "--dry-run").output
        invoke(runner, config, "send", ISSUE, "--new-subscribers")
        again = invoke(runner, config, "send", ISSUE, "--new-subscribers", code=1).output
    assert again.count("\n") == 1 and "nothing to send" in again
    assert sorted(handler.received) == sorted(first + later) and set(handler.received.values()) == {1}
    assert issue_rows(tmp_path) == [(ISSUE, "sent")]


@pytest.mark.attack(edge="operators", attack="newcomers' enqueue run twice", held="no second row, on both stores")
def test_enqueue_for_newcomers_makes_rows_only_for_who_has_none(db_url: str) -> None:
    """On SQLite and PostgreSQL the newcomers' enqueue adds a row only for an active subscriber without one,
    counts just those, and run again adds nothing."""
    engine = store.engine_for(db_url)
    store.migrate(engine)
    now = datetime(2026, 5, 28, 9, 0, tzinfo=ZoneInfo("UTC"))
    try:
        with engine.begin() as conn:
            for n in range(2):
                audience.add(conn, f"early{n}@example.org", "", "", AREAS)
            iid = lifecycle.create_issue(conn, ISSUE, "x", now)
            assert outbox.enqueue(conn, iid, lambda areas: "all", now) == outbox.Counts(queued=2)
            for n, chosen in enumerate(["", "RL", "Agents"]):
                audience.add(conn, f"late{n}@example.org", "", chosen, AREAS)
            audience.unsubscribe(conn, "late0@example.org")
            group_of = {"": "all", "RL": "rl", "Agents": None}.__getitem__
            assert outbox.enqueue(conn, iid, group_of, now, new_only=True) == outbox.Counts(queued=1, skipped=1)
            assert outbox.enqueue(conn, iid, group_of, now, new_only=True) == outbox.Counts()
            o = t.outbox.c
            rows = conn.execute(sa.select(o.email, o.state).order_by(o.id)).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("early0@example.org", "queued"), ("early1@example.org", "queued"),
                                        ("late1@example.org", "queued"), ("late2@example.org", "skipped")]


@pytest.mark.attack(edge="operators", attack="77-char local part", held="refused naming the 64 limit")
def test_a_local_part_over_64_is_refused_by_add_import_and_the_web_sign_up(
        make_config: Callable[..., Path], runner: CliRunner, tmp_path: Path) -> None:
    """One validation refuses a local part over RFC 5321's 64 octets wherever an address comes in, saying so."""
    with smtp_server() as (handler, port):
        config = make_config(f'[smtp]\nport = {port}\n[newsletter]\nsecret_key = "{SECRET}"\n'
                             'base_url = "https://news.example.org"\n')
        added = invoke(runner, config, "subscribers", "add", LONG, code=1).output
        imported = invoke(runner, config, "subscribers", "import",
                          str(write_list(tmp_path / "long.csv", [LONG])), code=1).output
        loaded = load_config(config)
        engine = store.connect(store.engine_for(loaded.database_url))
        try:
            with TestClient(create_app(loaded, engine), base_url="http://localhost", client=("127.0.0.1", 50000),
                            follow_redirects=False) as client:
                form = client.get("/subscribe").text
                csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
                page = client.post("/subscribe", data={"csrf": csrf, "email": LONG, "name": "", "areas": []})
        finally:
            engine.dispose()
    assert "77 characters" in added and "at most 64" in added
    assert "line 2:" in imported and "at most 64" in imported and "rejected 1" in imported
    assert page.status_code == 400 and "at most 64" in page.text and not handler.messages
    assert "0 matching" in invoke(runner, config, "subscribers", "list").output


@pytest.mark.attack(edge="operators", attack='quote"d@example.org', held="told the quote is wrong")
def test_a_stray_quote_is_named_as_the_fault_not_the_at_sign(
        make_config: Callable[..., Path], runner: CliRunner, tmp_path: Path) -> None:
    """An address with a lone double quote is refused with a reason about the quote, not a missing @-sign."""
    config = make_config()
    out = invoke(runner, config, "subscribers", "add", 'quote"d@example.org', code=1).output
    assert "double quote" in out and "@-sign" not in out and out.count("\n") == 1


@pytest.mark.attack(edge="operators", attack="script runs subscribers delete", held="refused without --yes")
def test_a_script_must_say_yes_to_delete_and_a_terminal_is_asked(
        make_config: Callable[..., Path], runner: CliRunner) -> None:
    """Without a terminal, `subscribers delete` neither says `Aborted!` nor erases unless --yes/-y is given;
    on a terminal it still asks, and "n" keeps the subscriber."""
    config = make_config()
    invoke(runner, config, "subscribers", "add", "ada@example.org")
    refused = invoke(runner, config, "subscribers", "delete", "ada@example.org", code=2).output
    assert "Aborted" not in refused and "--yes" in refused and refused.count("\n") == 1
    assert "ada@example.org" in invoke(runner, config, "subscribers", "list").output
    code, asked = on_terminal(config, "subscribers", "delete", "ada@example.org", answer="n")
    assert code == 1 and "[y/N]" in asked
    assert "ada@example.org" in invoke(runner, config, "subscribers", "list").output
    invoke(runner, config, "subscribers", "delete", "ada@example.org", "-y")
    assert "0 matching" in invoke(runner, config, "subscribers", "list").output
