"""A stranger's notice read in the console and through the API: whatever it carries stays text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from newsletter import accounts
from newsletter.feedback.ingest import Notice
from newsletter.store import tables as t
from tests.console import PASSWORD, Console, login
from tests.notices import dsn
from tests.test_feedback import BOUNCES, feedback_for

# Markup that would run or load something, an OSC title and a screen clear (7-bit), a CSI in its 8-bit form
# (U+009B), a bidi override that turns an address around, and a bare CR that would overwrite a terminal's line.
PAYLOAD = ('<script>fetch("/admin/users")</script><img src=x onerror=alert(1)>"\'><iframe src=//evil.example>'
           "\x1b]0;owned\x07\x1b[2J\u009b31m\u202egro.elpmaxe@ada\rfake line")
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.attack(edge="console", attack="a stranger's notice with markup, script and terminal escapes, read in "
                    "the console and the API", held="escaped in the page, control characters as U+FFFD, ASCII JSON")
def test_a_strangers_notice_is_inert_in_the_console_and_the_api(sent):
    """A forged DSN whose diagnostic and body carry HTML, a script and escape sequences is logged unproven; its
    pages show every tag as text and every control character as U+FFFD, and the API answers it in ASCII JSON
    from which a script reads the very text that came."""
    config, _, _ = sent
    data = dsn(BOUNCES, "ada@example.org", "5.1.1", f"550 {PAYLOAD}").replace(
        b"your message could not be delivered.", f"could not be delivered. {PAYLOAD}".encode())
    feedback_for(Path(config)).handle(Notice(data, f"smtp {PAYLOAD}"))
    console = Console(Path(config), roles=("operator",))
    try:
        with console.engine.connect() as conn:
            nid = conn.scalar(sa.select(sa.func.max(t.bounce_log.c.id)))
            assert conn.scalar(sa.select(t.bounce_log.c.proof).where(t.bounce_log.c.id == nid)) == "none"
        browser = TestClient(console.app, base_url="https://localhost", follow_redirects=False)
        login(browser, "ada-operator", PASSWORD)
        for path in ("/admin/bounces", f"/admin/bounces/{nid}"):
            page = browser.get(path)
            assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
            assert "<script>" not in page.text and "<img" not in page.text and "<iframe" not in page.text
            assert not CONTROLS.search(page.text), path
            assert "&lt;script&gt;fetch(" in page.text and "\ufffd]0;owned\ufffd\ufffd[2J\ufffd31m\ufffd" in page.text
        with console.engine.begin() as conn:
            _, secret = accounts.create_token(conn, "ops", "operator", "test", console.clock.now())
        answer = console.client().get(f"/api/v1/bounces/{nid}", headers={"Authorization": f"Bearer {secret}"})
        assert answer.content.isascii() and not CONTROLS.search(answer.content.decode("ascii"))
        assert PAYLOAD in answer.json()["raw"] and answer.json()["source"] == f"smtp {PAYLOAD}"
    finally:
        console.close()
