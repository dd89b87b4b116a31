"""The web pages end to end in headless Chromium: uvicorn in a thread, a real SQLite file, a real aiosmtpd server."""

from __future__ import annotations

import email
import email.policy
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter import audience, store
from newsletter.cli import cli
from newsletter.config import load_config
from newsletter.content import load_issue
from newsletter.mailsink import free_port
from newsletter.render import split_papers
from newsletter.web import create_app

from .conftest import AREAS, REPO, live_server
from .smtpd import ScriptedHandler, smtp_server

pytestmark = pytest.mark.browser

READER = "reader@example.org"


@dataclass
class Live:
    base: str
    config_path: Path
    handler: ScriptedHandler
    engine: object

    def status(self) -> audience.Subscriber:
        with self.engine.connect() as conn:  # type: ignore[attr-defined]
            found = audience.get(conn, READER)
        assert found is not None
        return found

    def mail_for(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """The messages READER has received, once there are ``count`` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for r, m in self.handler.messages if r == READER]
            if len(found) >= count:
                return [email.message_from_bytes(m, policy=email.policy.default) for m in found]  # type: ignore[misc]
            time.sleep(0.05)
        raise AssertionError(f"{READER} received {len(found)} messages, expected {count}")


@pytest.fixture
def live(make_config, tmp_path) -> Iterator[Live]:
    with smtp_server(tmp_path / "mail") as (handler, smtp_port):
        port = free_port()
        path = make_config(f"""
            [newsletter]
            secret_key = "browser-test-secret-0123456789abcdef"
            base_url = "http://127.0.0.1:{port}"
            [smtp]
            port = {smtp_port}
            timeout = 5
            connections = 1
            """)
        config = load_config(path)
        engine = store.engine_for(config.database_url)
        store.migrate(engine)
        try:
            with live_server(create_app(config, engine), port) as url:
                yield Live(url, path, handler, engine)
        finally:
            engine.dispose()


def text_of(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def send(live: Live, issue: str) -> None:
    result = CliRunner().invoke(cli, ["--config", str(live.config_path), "send", issue])
    assert result.exit_code == 0, result.output + repr(result.exception)


def test_subscribe_confirm_change_areas_receive_and_unsubscribe(browser, live):
    """Sign up → confirmation email → confirm → change areas from the issue's link → next issue has them →
    unsubscribe."""
    page = browser.new_page()
    try:
        page.goto(f"{live.base}/subscribe")
        page.fill("input[name=email]", READER)
        page.fill("input[name=name]", "Rita")
        page.check("input[name=areas][value=Agents]")
        page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "Check your inbox"
        (confirmation,) = live.mail_for(1)  # sent after the response, so wait for it
        assert live.status().status == "pending"
        (link,) = re.findall(rf"{re.escape(live.base)}/confirm/\S+", text_of(confirmation))
        page.goto(link)
        assert live.status().status == "pending"  # opening the link alone changes nothing
        page.click("text=Confirm subscription")
        assert page.locator("h1").inner_text() == "You are subscribed"
        assert (live.status().status, live.status().areas) == ("active", ("Agents",))

        send(live, "2026-05-17")
        first = live.mail_for(2)[1]
        assert "in your areas (Agents)" in " ".join(text_of(first).split())
        (preferences,) = set(re.findall(rf"{re.escape(live.base)}/preferences/[\w.-]+", text_of(first)))
        page.goto(preferences)
        page.uncheck("input[name=areas][value=Agents]")
        page.check("input[name=areas][value=RL]")
        page.fill("input[name=name]", "Rita Q")
        page.click("text=Save")
        assert "Saved" in page.locator("main").inner_text()
        assert (live.status().name, live.status().areas) == ("Rita Q", ("RL",))

        send(live, "2026-05-28")
        second = live.mail_for(3)[2]
        flat = " ".join(text_of(second).split())
        assert "Hi Rita Q," in flat and "in your areas (RL)" in flat
        issue = load_issue(REPO / "issues" / "2026-05-28.toml", AREAS)
        featured, others = split_papers(issue, ["RL"])
        assert featured and all(p.sections[0].body.split()[0] in text_of(second) for p in featured)

        # an "Also this week" link opens the archive page at that paper
        also = re.search(rf"{re.escape(live.base)}/archive/2026-05-28#{others[0].anchor}", text_of(second))
        assert also
        page.goto(also.group(0))
        assert page.locator(f"#{others[0].anchor}").count() == 1

        unsubscribe = second["List-Unsubscribe"].split("<", 1)[1].split(">", 1)[0]
        page.goto(unsubscribe)
        assert live.status().status == "active"  # a link scanner's GET unsubscribes no one
        page.click("button:has-text('Unsubscribe')")
        assert page.locator("h1").inner_text() == "You are unsubscribed"
        assert live.status().status == "unsubscribed"
        assert page.locator("button:has-text('Subscribe again')").count() == 1
    finally:
        page.close()


def test_preview_switches_group_and_width(browser, live):
    """The editor preview frames the chosen group's email and switches groups and phone/desktop widths."""
    page = browser.new_page(viewport={"width": 1000, "height": 900})
    try:
        page.goto(f"{live.base}/preview/2026-05-28")
        assert page.locator("nav.groups a").count() == 15
        page.click("nav.groups a:text-is('RL')")
        page.click("text=Phone (375 px)")
        frame = page.locator("iframe")
        assert frame.get_attribute("width") == "375"
        inner = page.frame_locator("iframe")
        assert "in your areas (RL)" in " ".join(inner.locator("body").inner_text().split())
    finally:
        page.close()


def test_sign_up_and_preferences_forms_fit_a_375_px_phone(browser, live):
    """The sign-up, preferences and unsubscribe pages scroll no wider than a 375 px phone (inputs overflowed)."""
    from newsletter.links import PREFERENCES, UNSUBSCRIBE, links_for

    with live.engine.begin() as conn:  # type: ignore[attr-defined]
        sid = audience.add(conn, READER, "Rita", "", AREAS, source="cli", status="active").id
    links = links_for(load_config(live.config_path), live.engine)  # type: ignore[arg-type]
    page = browser.new_page(viewport={"width": 375, "height": 800})
    try:
        for path in ("/subscribe", f"/preferences/{links.token(PREFERENCES, sid)}",
                     f"/unsubscribe/{links.token(UNSUBSCRIBE, sid)}"):
            page.goto(live.base + path)
            assert page.locator("form").count() >= 1
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= 375, f"{path.split('/')[1]} at 375 px: content {scroll} px wide"
    finally:
        page.close()
