"""The console in real Chromium at phone width (375 px): sign in, approve a draft, send it with its date typed by
keyboard, watch the server-sent progress, pause and resume mid-send; a real uvicorn in a thread, a real SQLite file
and a slow aiosmtpd relay, so the pause lands while messages are still going out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from newsletter import accounts, store
from newsletter.clock import utcnow
from newsletter.config import load_config
from newsletter.mailsink import free_port, start
from newsletter.send.background import Sends
from newsletter.web import create_app

from .conftest import live_server
from .sendkit import ISSUE, Slow, add_subscribers, config_text, counts, issues_folder, sent

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api").expect

PASSWORD = "correct horse battery"
PEOPLE = 60
WIDTH = 375
WAIT_MS = 30_000


@dataclass
class Served:
    base: str
    engine: sa.Engine
    handler: Slow
    sends: Sends


@pytest.fixture
def served(tmp_path) -> Iterator[Served]:
    """The web app on a free loopback port, a draft issue, 60 subscribers, and a relay taking 50 ms a message."""
    handler = Slow()
    handler.delay = 0.05
    relay = start(handler)
    port = free_port()
    path = tmp_path / "config.toml"
    path.write_text(config_text(issues_folder(tmp_path, ready=False), f"sqlite:///{tmp_path / 'c.db'}", relay.port)
                    .replace('base_url = "http://localhost"', f'base_url = "http://127.0.0.1:{port}"'),
                    encoding="utf-8")
    config = load_config(path)
    engine = store.engine_for(config.database_url)
    store.migrate(engine)
    add_subscribers(engine, PEOPLE)
    with engine.begin() as conn:
        accounts.add_user(conn, "ada", "operator", PASSWORD, utcnow())
    sends = Sends.of(config, engine)
    try:
        with live_server(create_app(config, engine), port, timeout_graceful_shutdown=3) as url:
            try:
                yield Served(url, engine, handler, sends)
            finally:
                sends.stop_all(10)
    finally:
        relay.stop()
        engine.dispose()


def fits(page) -> bool:
    """No horizontal scroll of the page itself at phone width (wide tables scroll inside their own box)."""
    return page.evaluate("document.documentElement.scrollWidth") <= WIDTH


def unlabelled(page) -> list[str]:
    """Every control without an accessible name: inputs and selects need a label, buttons their text."""
    return page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
        .filter(el => el.tagName === 'BUTTON' ? !el.textContent.trim() : !(el.labels && el.labels.length)
                      && !el.getAttribute('aria-label'))
        .map(el => el.outerHTML.slice(0, 80))""")


def tab_to(page, element_id: str, most: int = 80) -> None:
    """Press Tab until the element has focus: it is reachable by keyboard alone."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == element_id:
            return
    raise AssertionError(f"#{element_id} not reached in {most} presses of Tab")


def test_approve_send_by_typed_date_watch_pause_and_resume_at_phone_width(browser, served):
    """At 375 px, by keyboard: the draft is approved; a wrong date sends nothing; the right one starts the send, whose
    <progress> moves by server-sent events; a pause mid-send stops the counts; resume takes them to 100 % with no
    reload; the relay got each of the 60 addresses once; every page fits the width and every control has a label."""
    page = browser.new_page(viewport={"width": WIDTH, "height": 800})
    try:
        page.goto(f"{served.base}/admin/login")
        page.fill("#name", "ada")
        page.fill("#password", PASSWORD)
        page.keyboard.press("Enter")
        expect(page.locator("h1")).to_have_text("Dashboard")
        assert fits(page) and unlabelled(page) == []

        page.goto(f"{served.base}/admin/issues/{ISSUE}")
        assert fits(page) and unlabelled(page) == []
        page.locator("summary").first.click()  # the first group's email, framed at 700 and 375 px
        for frame in (0, 1):
            expect(page.frame_locator("iframe").nth(frame).locator("h1")).to_have_text("A small week")
        assert fits(page)
        tab_to(page, "approve-button")
        page.keyboard.press("Enter")
        expect(page.locator(".notice[role=status]")).to_contain_text(f"Approved {ISSUE}")

        tab_to(page, "send-confirm")
        page.keyboard.type("2026-06-05")
        page.keyboard.press("Enter")
        expect(page.locator("[role=alert]")).to_contain_text(f"type the issue's date, {ISSUE}, to confirm")
        assert served.handler.total() == 0 and counts(served.engine) == {}

        tab_to(page, "send-confirm")
        page.keyboard.type(ISSUE)
        page.keyboard.press("Enter")
        expect(page.locator(".notice[role=status]")).to_contain_text("The send has started.")
        page.wait_for_function("() => document.querySelector('progress').value >= 10", timeout=WAIT_MS)
        assert fits(page)
        tab_to(page, f"pause-{ISSUE}")
        page.keyboard.press("Enter")
        expect(page.locator("[data-field=state]")).to_have_text("paused")
        assert served.sends.join(ISSUE, 30)
        stopped = served.handler.total()
        assert stopped == sent(served.engine) < PEOPLE and counts(served.engine).get("sending", 0) == 0

        tab_to(page, f"resume-{ISSUE}")
        page.keyboard.press("Enter")
        expect(page.locator(".notice[role=status]")).to_contain_text("Sending again.")
        page.evaluate("window.notReloaded = true")
        page.wait_for_function("() => document.querySelector('[data-field=state]').textContent === 'sent'",
                               timeout=WAIT_MS)
        assert page.evaluate("window.notReloaded === true")  # the events moved the page, not a reload
        expect(page.locator("[data-field=percent]")).to_have_text("100")
        assert page.evaluate("document.querySelector('progress').value") == PEOPLE
        expect(page.locator("[data-field=ended]")).to_be_visible()
        assert len(served.handler.received) == PEOPLE and set(served.handler.received.values()) == {1}

        for path in (f"/admin/issues/{ISSUE}/report", "/admin/", "/admin/issues"):
            page.goto(f"{served.base}{path}")
            assert fits(page), path
    finally:
        page.close()
