"""Issue #25's readers' part: the latest issue for a reader who confirms soon after a send, once; the archive
page as the issue itself (no greeting, no reader's links, a subscribe box); preferences link to unsubscribe."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from newsletter import audience
from newsletter.content import load_issue
from newsletter.errors import NothingToSend
from newsletter.links import PREFERENCES
from newsletter.send import Campaign, Mode, Options
from newsletter.store import tables as t

from .conftest import REPO
from .smtpd import smtp_server
from .test_web import REMOTE, SECRET, Clock, Site, confirm_links, csrf_of, path_of, subscribe

SLUG = "2026-05-28"
PATH = REPO / "issues" / f"{SLUG}.toml"


@pytest.fixture
def web(make_config, tmp_path):
    """test_web's site: the app on a tmp SQLite file, mailing through a real aiosmtpd server."""
    with smtp_server(tmp_path / "mail") as (handler, port):
        made = Site(make_config(f"""
            [newsletter]
            secret_key = "{SECRET}"
            base_url = "https://news.example.org"
            [smtp]
            port = {port}
            timeout = 5
            """), handler, Clock())
        yield made
        made.engine.dispose()


def send_issue(site) -> Campaign:
    """The issue sent to the one reader there was, on the site's clock."""
    site.add("early@example.org")
    campaign = Campaign(site.config, site.engine, load_issue(PATH, site.config.newsletter.areas), path=PATH,
                        clock=site.now)
    campaign.run(Mode.SEND)
    return campaign


def subjects_to(site, address: str) -> list[str]:
    return [email.message_from_bytes(data, policy=email.policy.default)["Subject"]
            for rcpt, data in site.handler.messages if rcpt == address]


def join(site, address: str) -> tuple[int, str]:
    """Sign up and press the confirm button; (subscriber id, the confirm page's path)."""
    with site.client() as client:
        subscribe(client, address)
        (link,) = [x for x in confirm_links(site.handler) if x not in getattr(site, "used", set())]
        site.used = getattr(site, "used", set()) | {link}
        page = client.get(path_of(link))
        assert client.post(path_of(link), data={"csrf": csrf_of(page.text)}).status_code == 200
    with site.engine.connect() as conn:
        found = audience.get(conn, address)
    assert found is not None and found.status == "active"
    return found.id, path_of(link)


def rows_of(site, sid: int) -> list[str]:
    with site.engine.connect() as conn:
        return list(conn.scalars(sa.select(t.outbox.c.state).where(t.outbox.c.subscriber_id == sid)))


def test_confirming_within_the_window_sends_the_latest_issue_once(web):
    """A reader confirming days after a send gets that issue through SMTP, its outbox row sent; never again."""
    site = web
    campaign = send_issue(site)
    site.now.at += timedelta(days=3)
    sid, link = join(site, "late@example.org")
    assert len(subjects_to(site, "late@example.org")) == 2  # the confirmation link, then the issue
    assert rows_of(site, sid) == ["sent"]
    welcome, = [data for rcpt, data in site.handler.messages if rcpt == "late@example.org"][1:]
    assert_welcomed(site, welcome)
    with site.client() as client:  # the link's button pressed again (the page shows none once active)
        token = csrf_of(client.get("/subscribe").text)
        assert client.post(link, data={"csrf": token}).status_code == 200
    with pytest.raises(NothingToSend):  # a later `send --new-subscribers` finds no one new
        campaign.run(Mode.SEND, Options(new_subscribers=True))
    assert len(subjects_to(site, "late@example.org")) == 2 and rows_of(site, sid) == ["sent"]
    assert len(subjects_to(site, "early@example.org")) == 1


def assert_welcomed(site, data: bytes) -> None:
    """The late joiner's copy is the issue, opening with a welcome (subject and first line, HTML and text), which
    the list's own copies do not."""
    msg = email.message_from_bytes(data, policy=email.policy.default)
    name = site.config.newsletter.name
    issue = load_issue(PATH, site.config.newsletter.areas)
    assert msg["Subject"] == f"Welcome to {name}: {issue.title}"
    for part in ("plain", "html"):
        body = msg.get_body((part,)).get_content()
        assert f"Welcome to {name}" in body and "you joined just after this issue went out" in body
        assert issue.papers[0].title.split()[0] in body
    regular, = [d for rcpt, d in site.handler.messages if rcpt == "early@example.org"]
    assert b"Welcome to" not in regular and "Welcome" not in subjects_to(site, "early@example.org")[0]


def test_confirming_after_the_window_sends_only_the_confirmation(web):
    """Past [newsletter] late_joiners_days the reader waits for the next issue: no copy, no outbox row."""
    site = web
    send_issue(site)
    site.now.at += timedelta(days=8)
    sid, _link = join(site, "later@example.org")
    assert len(subjects_to(site, "later@example.org")) == 1 and rows_of(site, sid) == []


def test_archive_page_is_the_issue_with_a_subscribe_box_that_works(web):
    """No "Hi …" greeting and no reader's links on /archive/<issue>; its subscribe form posts with a valid CSRF."""
    site = web
    send_issue(site)
    with site.client(REMOTE) as client:
        page = client.get(f"/archive/{SLUG}")
        assert page.status_code == 200 and "public" not in page.headers["cache-control"]
        assert "Hi " not in page.text and "/unsubscribe" not in page.text and "Choose your areas" not in page.text
        assert re.search(r'<form method="post" action="\.\./subscribe"', page.text)
        answer = client.post("/subscribe", data={"csrf": csrf_of(page.text), "email": "reader@example.org"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text


def test_preferences_page_links_to_unsubscribe(web):
    """The preferences page of an active reader links to their own /unsubscribe/<token> page."""
    site = web
    sid = site.add("ada@example.org")
    with site.client() as client:
        page = client.get(f"/preferences/{site.links.token(PREFERENCES, sid)}")
    found = re.search(r'href="(/unsubscribe/[^"]+)"', page.text)
    assert found
    with site.client() as client:
        assert "Unsubscribe" in client.get(found.group(1)).text
