"""`newsletter preview ISSUE --serve` in headless Chromium: re-rendered on save, mistakes shown, a test copy sent."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from newsletter import spamcheck, store
from newsletter.config import load_config
from newsletter.content import load_issue
from newsletter.errors import ContentError
from newsletter.mailsink import free_port
from newsletter.web.live import LivePreview, LiveServer

from .conftest import REPO, invoke, need, parse
from .smtpd import ScriptedHandler, smtp_server

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api").expect

ISSUE = "2026-05-28"
TITLE = load_issue(REPO / "issues" / f"{ISSUE}.toml", ["LLM", "Vision", "RL", "Agents"]).title
EDITOR = "editor@example.org"
WAIT_MS = 5000  # a save shows in the page well within a second; the deadline leaves room for a slow machine


@dataclass
class Preview:
    base: str
    issue: Path
    handler: ScriptedHandler
    live: LivePreview

    def save(self, text: str) -> None:
        """Save as many editors do: write a new file, then rename it over the old one."""
        tmp = self.issue.with_suffix(".swp-new")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.issue)

    def retitle(self, title: str) -> None:
        self.save(self.issue.read_text(encoding="utf-8").replace(f'title = "{TITLE}"', f'title = "{title}"', 1))


@pytest.fixture
def preview(make_config, tmp_path) -> Iterator[Preview]:
    issues = tmp_path / "issues"
    issues.mkdir()
    shutil.copy(REPO / "issues" / f"{ISSUE}.toml", issues)
    with smtp_server(tmp_path / "mail") as (handler, smtp_port):
        port = free_port()
        config = load_config(make_config(f"""
            [newsletter]
            secret_key = "live-preview-test-secret-0123456789"
            editor = "{EDITOR}"
            [smtp]
            port = {smtp_port}
            timeout = 5
            [paths]
            issues = "{issues}"
            templates = "{REPO / 'templates' / 'email'}"
            """))
        engine = store.engine_for(config.database_url)
        store.migrate(engine)
        live = LivePreview(config, issues / f"{ISSUE}.toml", lambda: engine)
        server = LiveServer(live, port, log_level="warning")
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "the live preview did not start"
        try:
            yield Preview(f"http://127.0.0.1:{port}", issues / f"{ISSUE}.toml", handler, live)
        finally:
            server.should_exit = True
            thread.join(10)
            assert not thread.is_alive(), "the live preview did not stop (an open event stream kept it?)"
            engine.dispose()


def mistakes(path: Path) -> list[str]:
    """The lines `issue check` prints for the file as it is now."""
    with pytest.raises(ContentError) as caught:
        load_issue(path, ["LLM", "Vision", "RL", "Agents"])
    return str(caught.value).splitlines()


def test_a_save_rerenders_the_page_without_reload_and_a_mistake_shows_until_fixed(browser, preview):
    """Saving a new title updates page and email in place; an unknown area and a TOML slip show as their error
    lines; the next good save clears them."""
    page = browser.new_page()
    try:
        page.goto(preview.base)
        expect(page.locator("#title")).to_have_text(TITLE, timeout=WAIT_MS)
        assert page.locator("#group option").count() == 15  # every group of four areas
        page.evaluate("window.notReloaded = true")

        preview.retitle("Fresh Title One")
        expect(page.locator("#title")).to_have_text("Fresh Title One", timeout=WAIT_MS)
        expect(page.frame_locator("#html").locator("h1")).to_contain_text("Fresh Title One", timeout=WAIT_MS)
        expect(page.locator("#text")).to_contain_text("FRESH TITLE ONE", timeout=WAIT_MS)

        good = preview.issue.read_text(encoding="utf-8")
        preview.save(good.replace('areas = ["LLM"', 'areas = ["Robotics"', 1))
        wanted = mistakes(preview.issue)
        assert any("unknown area 'Robotics'" in line for line in wanted)
        expect(page.locator("#errors li")).to_have_text(wanted, timeout=WAIT_MS)
        preview.save(good.replace('title = "Fresh Title One"', 'title = "Fresh Title One', 1))
        expect(page.locator("#errors li")).to_have_text(mistakes(preview.issue), timeout=WAIT_MS)
        expect(page.locator("#errors")).to_contain_text("not valid TOML")

        preview.save(good.replace('title = "Fresh Title One"', 'title = "Fresh Title Two"', 1))
        expect(page.locator("#title")).to_have_text("Fresh Title Two", timeout=WAIT_MS)
        expect(page.locator("#errors")).to_be_hidden()
        expect(page.frame_locator("#html").locator("h1")).to_contain_text("Fresh Title Two", timeout=WAIT_MS)
        assert page.evaluate("window.notReloaded") is True  # pushed into the open page, never reloaded
    finally:
        page.close()


def test_send_me_a_test_delivers_one_test_copy_of_the_shown_group(browser, preview):
    """The button sends the shown group's [Test] copy to the editor address through the real send path."""
    page = browser.new_page()
    try:
        page.goto(preview.base)
        expect(page.locator("#title")).to_have_text(TITLE, timeout=WAIT_MS)
        page.select_option("#group", "rl")
        expect(page.locator("#size")).to_contain_text("KB")
        page.check("input[name=width][value='375']")
        assert page.locator("#html").get_attribute("width") == "375"
        assert page.input_value("input[name=to]") == EDITOR
        page.click("#test button[type=submit]")
        expect(page.locator("#test-result")).to_contain_text(f"sent to {EDITOR}", timeout=WAIT_MS)
        assert [rcpt for rcpt, _ in preview.handler.messages] == [EDITOR]
        msg = parse(preview.handler.messages[0][1])
        assert msg["Subject"] == f"[Test] {TITLE} · RL"
    finally:
        page.close()


def test_a_post_without_the_runs_token_or_from_a_foreign_host_is_refused(preview):
    """No token, no test copy; a Host that is not loopback (DNS rebinding) gets no page at all."""
    request = urllib.request.Request(f"{preview.base}/test", data=b"to=x%40example.org&group=all", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 403
    foreign = urllib.request.Request(preview.base + "/", headers={"Host": "rebind.example"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(foreign, timeout=5)
    assert caught.value.code == 400
    assert preview.live.token not in caught.value.read().decode()
    assert preview.handler.messages == []


def test_the_spam_button_scores_the_shown_group(browser, preview):
    """On request, the page shows SpamAssassin's score of the shown group's copy, as `issue check --spam` words it."""
    if not spamcheck.spamassassin():
        need("spamassassin is not installed (bash .ci/run installs it through apt)")
    page = browser.new_page()
    try:
        page.goto(preview.base)
        expect(page.locator("#title")).to_have_text(TITLE, timeout=WAIT_MS)
        page.select_option("#group", "vision")
        page.click("#spam")
        expect(page.locator("#spam-line")).to_have_text(re.compile(r"^vision: -?\d+\.\d \("), timeout=60_000)
    finally:
        page.close()


def test_the_preview_command_serves_the_issue_on_the_given_port_and_group(make_config, runner, monkeypatch):
    """`preview ISSUE --serve --port N --areas RL` runs the live preview of that file, on N, showing group rl."""
    from newsletter.web import live

    calls: list[tuple[Path, int, str]] = []
    monkeypatch.setattr(live, "serve", lambda config, path, port, engine, initial: calls.append((path, port, initial)))
    result = invoke(runner, make_config(), "preview", ISSUE, "--serve", "--port", "8111", "--areas", "rl")
    assert calls == [(REPO / "issues" / f"{ISSUE}.toml", 8111, "rl")]
    assert "http://127.0.0.1:8111/" in result.output
