"""Attacks on the web pages (issue #21, "Web"): through Starlette's TestClient, on a real SQLite file, with a real
aiosmtpd server taking the confirmation mails. Where it matters the app is driven as `newsletter serve` hands it to
uvicorn (``served``), so what uvicorn itself believes of a request is tested too. Time is moved by hand."""

from __future__ import annotations

import email
import email.policy
import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from newsletter import store
from newsletter.clock import utcnow
from newsletter.config import load_config
from newsletter.store import tables as t
from newsletter.web import create_app
from newsletter.web.serving import server

from ..conftest import REPO, ManualClock
from ..smtpd import ScriptedHandler, smtp_server
from ..test_web import subscribe

SECRET = "adversarial-web-secret-0123456789abcdef"  # ≥ 32 bytes
BASE = "https://news.example.org"
SPAM = "Visit http://spam.example/ now"


def served(app: Any) -> Any:
    """The ASGI app as `newsletter serve` runs it: whatever ``web.serving.server``'s uvicorn wraps around it."""
    config = server(app, "127.0.0.1", 8000).config
    config.load()
    return config.loaded_app


class Site:
    """The app on a tmp database with its SMTP server; ``now`` drives every limit."""

    def __init__(self, config_path: Path, handler: ScriptedHandler) -> None:
        self.config = load_config(config_path)
        self.engine = store.engine_for(self.config.database_url)
        store.migrate(self.engine)
        self.handler, self.now = handler, ManualClock()
        self.app, self.other = self.process(), self.process()

    def process(self) -> Any:
        """The app as one `serve` process has it: its own memory, the shared database."""
        start = self.now.at
        return served(create_app(self.config, self.engine, now=self.now,
                                 clock=lambda: (self.now.at - start).total_seconds()))

    def client(self, peer: str = "127.0.0.1", app: Any = None) -> TestClient:
        return TestClient(app or self.app, base_url=BASE, client=(peer, 40000), follow_redirects=False)

    def sign_up(self, peer: str, address: str, name: str = "", forwarded: str | None = None, app: Any = None) -> int:
        """One sign-up (form, then POST) from ``peer``, with ``X-Forwarded-For: forwarded`` if given: its status."""
        with self.client(peer, app) as client:
            if forwarded is not None:
                client.headers["X-Forwarded-For"] = forwarded
            return subscribe(client, address, name).status_code


@pytest.fixture
def make_site(make_config: Callable[..., Path], tmp_path: Path) -> Iterator[Callable[..., Site]]:
    """``make_site(web="…", paths="…")``: a Site whose config adds those lines to [web] (and a [paths] table)."""
    made: list[Site] = []
    with smtp_server(tmp_path / "mail") as (handler, port):
        def make(web: str = "", paths: str = "") -> Site:
            site = Site(make_config(f"""
                [newsletter]
                secret_key = "{SECRET}"
                base_url = "{BASE}"
                [smtp]
                port = {port}
                timeout = 5
                [web]
                subscribe_per_hour = 3
                {web}
                {paths}
                """), handler)
            made.append(site)
            return site

        yield make
        for site in made:
            site.engine.dispose()


def mail_text(data: bytes) -> str:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    body = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")
    return "".join(f"{k}: {v}\n" for k, v in msg.items()) + body


@pytest.mark.attack(edge="web", attack="Host: evil.example on a redirect", held="400; Location from base_url")
def test_a_foreign_host_header_gets_400_and_redirects_come_from_base_url(make_site):
    """A request naming another Host is refused; every redirect points at base_url, whatever Host was sent."""
    site = make_site()
    with site.client() as client:
        evil = client.get("/archive/", headers={"Host": "evil.example"})
        ours = client.get("/archive/?x=1")
        local = client.get("/atom.xml", headers={"Host": "127.0.0.1:8000"})
    assert evil.status_code == 400 and "location" not in evil.headers
    assert "evil.example" not in evil.text
    assert ours.status_code == 307 and ours.headers["location"] == f"{BASE}/archive?x=1"
    assert local.status_code == 301 and local.headers["location"] == f"{BASE}/feed.xml"


@pytest.mark.attack(edge="web", attack="forged X-Forwarded-For from an untrusted peer",
                    held="per-client sign-up limit")
def test_forged_forwarded_for_from_an_untrusted_peer_does_not_escape_the_per_client_limit(make_site):
    """Without [web] trusted_proxies, even a loopback peer's X-Forwarded-For is ignored: its 4th sign-up gets 429."""
    site = make_site()
    codes = [site.sign_up("127.0.0.1", f"n{n}@example.org", forwarded=f"198.51.100.{n + 1}") for n in range(4)]
    assert codes == [200, 200, 200, 429]
    assert len(site.handler.messages) == 3


@pytest.mark.attack(edge="web", attack="200 sign-ups from 200 clients", held="confirm_mails_per_hour cap")
def test_two_hundred_sign_ups_from_two_hundred_clients_send_no_more_than_the_hourly_cap(make_site, caplog):
    """200 sign-ups of 200 addresses from 200 peers (each forging X-Forwarded-For too), spread over two server
    processes, send the default cap of 100 mails in that hour and warn once per refusal; an hour later one more goes."""
    site = make_site()
    with caplog.at_level(logging.WARNING, "newsletter.web"):
        codes = {site.sign_up(f"203.0.113.{n + 1}", f"v{n}@example.org", SPAM, forwarded=f"10.9.9.{n}",
                              app=(site.app, site.other)[n % 2])
                 for n in range(200)}
    assert codes == {200}
    assert len(site.handler.messages) == 100
    assert caplog.text.count("confirm_mails_per_hour") == 100
    site.now.at += timedelta(minutes=61)
    assert site.sign_up("198.51.100.1", "late@example.org") == 200
    assert len(site.handler.messages) == 101


@pytest.mark.attack(edge="web", attack="text in the sign-up name field", held="confirmation mail carries none")
def test_the_confirmation_mail_carries_nothing_the_sign_up_form_supplied_but_the_address(make_site):
    """A name holding an advert reaches neither the greeting nor the To header of the confirmation mail."""
    site = make_site()
    assert site.sign_up("203.0.113.7", "victim@example.org", SPAM) == 200
    ((rcpt, data),) = site.handler.messages
    text = mail_text(data)
    assert rcpt == "victim@example.org" and "/confirm/" in text
    assert "spam.example" not in text and "Visit" not in text
    assert "Hello,\n" in text and "To: victim@example.org\n" in text


@pytest.mark.attack(edge="web", attack="X-Forwarded-For via a configured proxy", held="right-most untrusted hop")
def test_forwarded_for_from_a_trusted_proxy_names_the_client(make_site):
    """From a peer in [web] trusted_proxies the client is the right-most address it did not add: each forwarded
    client has its own limit, and a client's own forged left-hand entries change nothing."""
    site = make_site(web='trusted_proxies = ["10.0.0.0/8"]')
    proxy = "10.1.2.3"
    codes = [site.sign_up(proxy, f"a{n}@example.org", forwarded=f"192.0.2.{n}, 198.51.100.7") for n in range(4)]
    assert codes == [200, 200, 200, 429]
    assert site.sign_up(proxy, "b@example.org", forwarded="198.51.100.8") == 200
    untrusted = [site.sign_up("203.0.113.9", f"c{n}@example.org", forwarded=f"198.51.100.{20 + n}") for n in range(4)]
    assert untrusted == [200, 200, 200, 429]


@pytest.mark.attack(edge="web", attack="control character in a sent issue file",
                    held="503 page; log names file and field")
def test_an_archive_page_whose_issue_file_went_bad_says_it_cannot_be_shown(make_site, tmp_path, caplog):
    """A sent issue whose file later gains a control character answers a one-line 503 page, not a traceback,
    and the log names the file and the field."""
    issues = tmp_path / "issues"
    issues.mkdir()
    text = (REPO / "issues" / "2026-05-28.toml").read_text(encoding="utf-8")
    bad = issues / "2026-05-28.toml"
    bad.write_text(text.replace('summary = """\n', 'summary = """\nA bell \\u0007 rings. ', 1), encoding="utf-8")
    site = make_site(paths=f'[paths]\nissues = "{issues}"\ntemplates = "{REPO / "templates" / "email"}"')
    with site.engine.begin() as conn:
        conn.execute(t.issues.insert().values(slug="2026-05-28", title="Top-conf", state="sent", created_at=utcnow()))
    with caplog.at_level(logging.ERROR, "newsletter.web"), site.client("203.0.113.7") as client:
        answer = client.get("/archive/2026-05-28")
    assert answer.status_code == 503 and "This issue cannot be shown" in answer.text
    assert "Traceback" not in answer.text and "u0007" not in answer.text
    (line,) = [r.getMessage() for r in caplog.records if r.name == "newsletter.web"]
    assert "2026-05-28.toml" in line and "summary" in line and "\n" not in line



@pytest.mark.attack(edge="web", attack="loopback-only preview reached through a reverse proxy on the same host",
                    held="a forwarded request is not local, trusted proxy or not")
@pytest.mark.parametrize("web", ["", 'trusted_proxies = ["127.0.0.1"]'], ids=["untrusted", "trusted"])
def test_the_preview_is_not_opened_by_a_local_reverse_proxy(make_site, web):
    """Without a preview token the editor preview answers this machine only: a request a proxy on 127.0.0.1
    forwards (it names its client in X-Forwarded-For or Forwarded) is refused, while the editor's own is served."""
    site = make_site(web=web)
    with site.client("127.0.0.1") as client:
        mine = client.get("/preview/2026-05-28", headers={"Host": "127.0.0.1:8000"})
        proxied = [client.get("/preview/2026-05-28", headers={header: value})
                   for header, value in (("X-Forwarded-For", "203.0.113.5"), ("Forwarded", "for=203.0.113.5"))]
    assert mine.status_code == 200
    assert [p.status_code for p in proxied] == [403, 403]
