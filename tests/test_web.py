"""The web pages through Starlette's TestClient: a real SQLite file and a real aiosmtpd server."""

from __future__ import annotations

import email
import email.policy
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from starlette.testclient import TestClient

from newsletter import audience, store
from newsletter.clock import utcnow
from newsletter.config import load_config
from newsletter.links import CONFIRM, PREFERENCES, UNSUBSCRIBE
from newsletter.store import tables as t
from newsletter.web import create_app
from newsletter.web.guard import SlidingWindow, is_loopback

from .conftest import AREAS, ManualClock
from .smtpd import smtp_server

SECRET = "web-test-secret-0123456789-abcdefghijkl"  # ≥ 32 bytes
LOOPBACK = ("127.0.0.1", 50000)
REMOTE = ("203.0.113.7", 50000)
HOST = "http://localhost"  # a Host the app answers (loopback; base_url's host is the other)
HTML_NAME = '<script>alert("x")</script><b>Bold & co</b>'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Site:
    """An app on a tmp database, its SMTP server, and helpers to read and change subscribers."""

    def __init__(self, config_path: Path, handler, clock: Clock) -> None:
        self.config = load_config(config_path)
        self.engine = store.engine_for(self.config.database_url)
        store.migrate(self.engine)
        self.handler, self.clock, self.now = handler, clock, ManualClock()
        self.app = create_app(self.config, self.engine, clock=clock, now=self.now)
        self.links = self.app.state.web.links

    def client(self, client: tuple[str, int] = LOOPBACK) -> TestClient:
        return TestClient(self.app, base_url=HOST, client=client, follow_redirects=False)

    def add(self, email_: str = "ada@example.org", name: str = "Ada", status: str = "active", areas: str = "") -> int:
        with self.engine.begin() as conn:
            return audience.add(conn, email_, name, areas, AREAS, source="cli", status=status).id

    def sub(self, sid: int) -> audience.Subscriber:
        with self.engine.connect() as conn:
            found = audience.get_id(conn, sid)
        assert found is not None
        return found

    def count(self) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.count()).select_from(t.subscribers)) or 0


@pytest.fixture
def site(make_config, tmp_path):
    with smtp_server(tmp_path / "mail") as (handler, port):
        path = make_config(f"""
            [newsletter]
            secret_key = "{SECRET}"
            base_url = "https://news.example.org"
            [smtp]
            port = {port}
            timeout = 5
            [web]
            subscribe_per_hour = 3
            confirm_hours = 2
            """)
        made = Site(path, handler, Clock())
        yield made
        made.engine.dispose()


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def confirm_links(handler) -> list[str]:
    found = []
    for _rcpt, data in handler.messages:
        body = email.message_from_bytes(data, policy=email.policy.default).get_body(("plain",)).get_content()
        found += re.findall(r"https://news\.example\.org/confirm/\S+", body)
    return found


def subscribe(client: TestClient, address: str, name: str = "", areas: tuple[str, ...] = ()):
    token = csrf_of(client.get("/subscribe").text)
    return client.post("/subscribe", data={"csrf": token, "email": address, "name": name, "areas": list(areas)})


def test_signup_confirm_makes_pending_active_and_page_is_the_same_for_known_addresses(site):
    """A new address becomes pending and gets one link; a known active one gets nothing; both see one page."""
    site.add("known@example.org")
    with site.client() as client:
        new = subscribe(client, "new@example.org", "Nia", ("RL",))
        known = subscribe(client, "known@example.org", "Someone", ("LLM",))
    assert new.status_code == known.status_code == 200
    strip = lambda text: re.sub(r'value="[^"]+"', "", text)  # noqa: E731 (the CSRF field differs)
    assert strip(new.text) == strip(known.text) and "Check your inbox" in new.text
    assert [r for r, _ in site.handler.messages] == ["new@example.org"]
    with site.engine.connect() as conn:
        pending = audience.get(conn, "new@example.org")
    assert pending and pending.status == "pending" and pending.source == "web" and pending.areas == ("RL",)
    (link,) = confirm_links(site.handler)
    with site.client() as client:
        page = client.get(path_of(link))
        assert page.status_code == 200 and site.sub(pending.id).status == "pending"  # a GET changes nothing
        done = client.post(path_of(link), data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert site.sub(pending.id).status == "active" and site.sub(pending.id).confirmed_at is not None


def test_one_click_post_unsubscribes_at_once(site):
    """RFC 8058: POST List-Unsubscribe=One-Click to the signed URL answers 200 and unsubscribes, no cookie needed."""
    sid = site.add()
    with site.client(REMOTE) as client:
        answer = client.post(f"/unsubscribe/{site.links.token(UNSUBSCRIBE, sid)}",
                             data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert site.sub(sid).status == "unsubscribed" and site.sub(sid).unsubscribed_at is not None


def test_unsubscribe_page_needs_a_button_press_and_offers_to_resubscribe(site):
    """GET shows a button and changes nothing; the button unsubscribes; 'Subscribe again' makes it active."""
    sid = site.add()
    url = f"/unsubscribe/{site.links.token(UNSUBSCRIBE, sid)}"
    with site.client() as client:
        page = client.get(url)
        assert page.status_code == 200 and site.sub(sid).status == "active"
        done = client.post(url, data={"csrf": csrf_of(page.text)})
        assert "You are unsubscribed" in done.text and site.sub(sid).status == "unsubscribed"
        again = client.post(f"/resubscribe/{site.links.token(UNSUBSCRIBE, sid)}", data={"csrf": csrf_of(done.text)})
    assert again.status_code == 200 and site.sub(sid).status == "active"


def tampered(token: str) -> str:
    """One character of the signature changed: its first, since the last may only hold padding bits."""
    head, sig = token.rsplit(".", 1)
    return f"{head}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"


def test_tampered_foreign_and_unknown_tokens_get_400_and_change_nothing(site):
    """A changed character, another kind's token, or a valid one for no subscriber: 400 and nothing changes."""
    sid = site.add(name="Ada", areas="LLM")
    bad = [tampered(site.links.token(UNSUBSCRIBE, sid)), site.links.token(PREFERENCES, sid),
           site.links.token(UNSUBSCRIBE, 9999), "not-a-token"]
    with site.client() as client:
        csrf = csrf_of(client.get("/subscribe").text)
        for token in bad:
            assert client.get(f"/unsubscribe/{token}").status_code == 400
            assert client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
            assert client.post(f"/resubscribe/{token}", data={"csrf": csrf}).status_code == 400
        for token in (tampered(site.links.token(PREFERENCES, sid)), site.links.token(UNSUBSCRIBE, sid)):
            assert client.get(f"/preferences/{token}").status_code == 400
            answer = client.post(f"/preferences/{token}", data={"csrf": csrf, "name": "Eve", "areas": ["RL"]})
            assert answer.status_code == 400 and "does not work" in answer.text
        for token in (tampered(site.links.confirm_url(sid).rsplit("/", 1)[1]), site.links.token(UNSUBSCRIBE, sid)):
            assert client.post(f"/confirm/{token}", data={"csrf": csrf}).status_code == 400
    after = site.sub(sid)
    assert (after.status, after.name, after.areas) == ("active", "Ada", ("LLM",))


def old_confirm_token(secret: str, sid: int, age_seconds: int) -> str:
    """A confirmation token signed ``age_seconds`` ago, exactly as links.Links makes them."""

    class Earlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - age_seconds

    return URLSafeTimedSerializer(secret, salt=CONFIRM, signer=Earlier).dumps(sid)


def test_expired_confirm_token_gets_400_and_a_fresh_one_works(site):
    """A confirmation link older than [web] confirm_hours (2 h here) is refused; one an hour old confirms."""
    sid = site.add(status="pending")
    with site.client() as client:
        csrf = csrf_of(client.get("/subscribe").text)
        expired = old_confirm_token(SECRET, sid, 2 * 3600 + 5)
        assert client.get(f"/confirm/{expired}").status_code == 400
        assert client.post(f"/confirm/{expired}", data={"csrf": csrf}).status_code == 400
        assert site.sub(sid).status == "pending"
        fresh = old_confirm_token(SECRET, sid, 3600)
        assert client.post(f"/confirm/{fresh}", data={"csrf": csrf}).status_code == 200
    assert site.sub(sid).status == "active"


def test_a_name_holding_html_is_shown_escaped(site):
    """The preferences page shows a name with markup as text, both stored and freshly submitted."""
    sid = site.add(name=HTML_NAME)
    url = f"/preferences/{site.links.token(PREFERENCES, sid)}"
    with site.client() as client:
        page = client.get(url)
        saved = client.post(url, data={"csrf": csrf_of(page.text), "name": HTML_NAME + "2", "areas": ["RL"]})
    for answer in (page, saved):
        assert answer.status_code == 200
        assert "<script>" not in answer.text and "<b>Bold" not in answer.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;Bold &amp; co&lt;/b&gt;" in answer.text
    assert site.sub(sid).name == HTML_NAME + "2" and site.sub(sid).areas == ("RL",)


def test_preferences_change_name_and_areas_and_refuse_bad_values(site):
    """Saving applies name and areas; an unknown area or a control character is refused with 400."""
    sid = site.add(email_="ada@example.org", name="Ada")
    url = f"/preferences/{site.links.token(PREFERENCES, sid)}"
    with site.client() as client:
        page = client.get(url)
        assert "a…@example.org" in page.text and "ada@example.org" not in page.text
        csrf = csrf_of(page.text)
        ok = client.post(url, data={"csrf": csrf, "name": "Ada L.", "areas": ["Vision", "Agents"]})
        assert ok.status_code == 200 and "Saved" in ok.text
        assert client.post(url, data={"csrf": csrf, "name": "x", "areas": ["Cooking"]}).status_code == 400
        assert client.post(url, data={"csrf": csrf, "name": "a\r\nBcc: x", "areas": []}).status_code == 400
    assert (site.sub(sid).name, site.sub(sid).areas) == ("Ada L.", ("Vision", "Agents"))


def test_form_posts_without_a_valid_csrf_token_are_refused(site):
    """No CSRF field, or a field from another browser's cookie: 403 and nothing changes or is sent."""
    sid = site.add(name="Ada")
    with site.client() as other:
        foreign = csrf_of(other.get("/subscribe").text)
    with site.client() as client:
        client.get("/subscribe")
        for data in ({}, {"csrf": foreign}, {"csrf": "garbage"}):
            fields = {"email": "eve@example.org", **data}
            assert client.post("/subscribe", data=fields).status_code == 403
            assert client.post(f"/preferences/{site.links.token(PREFERENCES, sid)}",
                               data={"name": "Eve", **data}).status_code == 403
            assert client.post(f"/unsubscribe/{site.links.token(UNSUBSCRIBE, sid)}", data=data).status_code == 403
    assert site.count() == 1 and site.handler.messages == []
    assert (site.sub(sid).status, site.sub(sid).name) == ("active", "Ada")


def test_subscribe_is_rate_limited_per_client(site):
    """The 4th sign-up within an hour from one address gets 429; another client and a later hour are fine."""
    with site.client() as client:
        for n in range(3):
            assert subscribe(client, f"n{n}@example.org").status_code == 200
        limited = subscribe(client, "n3@example.org")
        assert limited.status_code == 429 and limited.headers["retry-after"] == "3600"
    with site.client(REMOTE) as other:
        assert subscribe(other, "r@example.org").status_code == 200
    site.clock.now += 3601
    with site.client() as client:
        assert subscribe(client, "n4@example.org").status_code == 200


def test_sliding_window_forgets_old_hits():
    """The window slides: a hit leaves the count exactly one window later."""
    clock = Clock()
    window = SlidingWindow(2, 10.0, clock)
    assert window.allow("a") and window.allow("a") and not window.allow("a")
    clock.now += 10.0
    assert window.allow("a")


def test_invalid_sign_up_shows_the_form_again_with_the_reason(site):
    """A malformed address is answered with the form, the reason and the values escaped; nothing is stored."""
    with site.client() as client:
        answer = subscribe(client, "<b>nope", "<i>Ann</i>")
    assert answer.status_code == 400 and "invalid address" in answer.text
    assert "<i>Ann" not in answer.text and "&lt;i&gt;Ann" in answer.text
    assert site.count() == 0


def test_preview_is_served_on_loopback_only_unless_a_token_is_set(site, make_config, tmp_path):
    """Loopback gets the preview and its frame; a remote client gets 403; with a token, only the token counts."""
    with site.client() as client:
        page = client.get("/preview/2026-05-28?areas=RL&width=375")
        raw = client.get("/preview/2026-05-28/raw?areas=RL")
    assert page.status_code == 200 and 'width="375"' in page.text and page.text.count("?areas=") >= 17
    assert raw.status_code == 200 and raw.headers["x-frame-options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in raw.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    with site.client(REMOTE) as remote:
        assert remote.get("/preview/2026-05-28").status_code == 403
        assert remote.get("/preview/2026-05-28/raw").status_code == 403
    config = load_config(make_config(f'[web]\npreview_token = "s3cret"\n[newsletter]\nsecret_key = "{SECRET}"\n',
                                     name="token.toml"))
    app = create_app(config, site.engine)
    with (TestClient(app, base_url=HOST, client=REMOTE) as remote,
          TestClient(app, base_url=HOST, client=LOOPBACK) as local):
        assert remote.get("/preview/2026-05-28?token=s3cret").status_code == 200
        assert remote.get("/preview/2026-05-28?token=wrong").status_code == 403
        assert local.get("/preview/2026-05-28").status_code == 403


def test_archive_lists_sent_issues_and_shows_every_paper_with_its_anchor(site):
    """/archive lists only issues whose send started; /archive/<issue> holds every paper's anchor."""
    from newsletter.content import load_issue

    from .conftest import REPO

    with site.engine.begin() as conn:
        conn.execute(t.issues.insert().values(slug="2026-05-28", title="Top-conf Paper Digest", state="sent",
                                              created_at=utcnow()))
    issue = load_issue(REPO / "issues" / "2026-05-28.toml", AREAS)
    with site.client(REMOTE) as client:
        listing = client.get("/archive")
        page = client.get("/archive/2026-05-28")
        unsent = client.get("/archive/2026-05-17")
        odd = client.get("/archive/..%2F..%2Fconfig")
    assert 'href="/archive/2026-05-28"' in listing.text and "2026-05-17" not in listing.text
    assert page.status_code == 200
    for paper in issue.papers:
        assert f'id="{paper.anchor}"' in page.text
    assert unsent.status_code == 404 and odd.status_code == 404


def test_pages_carry_security_headers(site):
    """Every page has a script-free CSP, refuses framing and sends no referrer (the URLs hold tokens)."""
    with site.client() as client:
        answer = client.get("/subscribe")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert "script-src" not in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY" and answer.headers["referrer-policy"] == "no-referrer"
    assert "samesite=strict" in answer.headers["set-cookie"].lower()


def test_is_loopback():
    """Only loopback addresses count as local; names (Unix sockets, test clients) never do."""
    assert is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("testclient") and not is_loopback("")


def test_unsubscribed_address_becomes_active_only_after_confirming(site):
    """Signing up again with an unsubscribed address sends a link and changes nothing until it is confirmed."""
    sid = site.add(name="Ada", areas="LLM")
    with site.engine.begin() as conn:
        audience.unsubscribe_id(conn, sid)
    with site.client() as client:
        subscribe(client, "ada@example.org", "Mallory", ("RL",))
    after = site.sub(sid)
    assert (after.status, after.name, after.areas) == ("unsubscribed", "Ada", ("LLM",))
    (link,) = confirm_links(site.handler)
    with site.client() as client:
        client.post(path_of(link), data={"csrf": csrf_of(client.get(path_of(link)).text)})
    assert site.sub(sid).status == "active"


def test_a_refused_confirmation_email_is_logged_and_the_page_is_unchanged(site, caplog):
    """When the relay refuses the confirmation, the visitor sees the usual page and the log names the answer."""
    from collections import deque

    site.handler.rcpt["new@example.org"] = deque(["550 5.1.1 no such user"])
    with site.client() as client:
        answer = subscribe(client, "new@example.org")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert site.handler.messages == [] and "550" in caplog.text


def test_a_bounced_address_is_not_activated_by_its_confirmation_link(site):
    """Confirming never revives a bounced address: it stays bounced and the page says so."""
    sid = site.add(status="pending")
    with site.engine.begin() as conn:
        audience.mark_bounced(conn, sid, utcnow())
    link = path_of(site.links.confirm_url(sid))
    with site.client() as client:
        answer = client.post(link, data={"csrf": csrf_of(client.get(link).text)})
    assert "Not activated" in answer.text and site.sub(sid).status == "bounced"


def test_preview_shows_a_broken_issue_file_as_its_error(site, make_config, tmp_path):
    """An issue file with a mistake previews as the one-line error (422), not a server error."""
    issues_dir = tmp_path / "issues"
    issues_dir.mkdir()
    (issues_dir / "2026-06-04.toml").write_text('title = "x"\ndate = 2026-06-04\n', encoding="utf-8")
    config = load_config(make_config(f'[paths]\nissues = "{issues_dir}"\n[newsletter]\nsecret_key = "{SECRET}"\n',
                                     name="broken.toml"))
    with TestClient(create_app(config, site.engine), base_url=HOST, client=LOOPBACK) as client:
        answer = client.get("/preview/2026-06-04/raw")
        missing = client.get("/preview/2026-01-01")
    assert answer.status_code == 422 and "2026-06-04.toml" in answer.text
    assert missing.status_code == 404


def test_signup_with_a_non_ascii_local_part_is_accepted_and_told_what_it_needs(site):
    """An address in any script is accepted; one whose local part is not ASCII is told it needs SMTPUTF8,
    from what was typed alone (the page for a new and a known such address is the same)."""
    site.add("jürgen@example.org")
    with site.client() as client:
        new = subscribe(client, "zoë@example.org")
        known = subscribe(client, "jürgen@example.org")
        idn = subscribe(client, "nutzer@bücher.example")
    assert new.status_code == known.status_code == idn.status_code == 200
    assert "SMTPUTF8" in new.text and "SMTPUTF8" in known.text and "SMTPUTF8" not in idn.text
    with site.engine.connect() as conn:
        assert audience.get(conn, "zoë@example.org").status == "pending"
        assert audience.get(conn, "nutzer@bücher.example").status == "pending"
    assert sorted(rcpt for rcpt, _ in site.handler.messages) == ["nutzer@bücher.example", "zoë@example.org"]


def test_six_sign_ups_for_one_address_from_six_clients_send_one_confirmation(site):
    """Six sign-up POSTs for one address from six client addresses, through two app instances sharing only
    the database, send one confirmation mail and show six identical pages; an hour later one more goes."""
    other_app = create_app(site.config, site.engine, now=site.now)  # another process: its own memory
    pages = []
    for n in range(6):
        app = (site.app, other_app)[n % 2]
        peer = (f"198.51.100.{n + 1}", 40000 + n)
        with TestClient(app, base_url=HOST, client=peer, follow_redirects=False) as client:
            pages.append(subscribe(client, "victim@example.org", f"Name {n}"))
        site.now.at += timedelta(minutes=5)
    strip = lambda text: re.sub(r'value="[^"]+"', "", text)  # noqa: E731 (the CSRF field differs)
    assert {(p.status_code, strip(p.text)) for p in pages} == {(200, strip(pages[0].text))}
    assert site.handler.received["victim@example.org"] == 1
    site.now.at += timedelta(minutes=31)  # 61 minutes after the first mail
    with site.client(REMOTE) as client:
        assert subscribe(client, "victim@example.org").status_code == 200
    assert site.handler.received["victim@example.org"] == 2
    assert len(confirm_links(site.handler)) == 2


def test_an_unsubscribed_address_is_limited_too_and_a_known_one_reads_the_same(site):
    """Re-sign-ups of an unsubscribed address get one mail per hour; the page matches an active address's."""
    sid = site.add("gone@example.org")
    site.add("here@example.org")
    with site.engine.begin() as conn:
        audience.unsubscribe_id(conn, sid)
    with site.client() as client:
        gone = [subscribe(client, "gone@example.org") for _ in range(3)]
    with site.client(REMOTE) as client:
        here = subscribe(client, "here@example.org")
    strip = lambda text: re.sub(r'value="[^"]+"', "", text)  # noqa: E731 (the CSRF field differs)
    assert {strip(p.text) for p in [*gone, here]} == {strip(here.text)}
    assert [r for r, _ in site.handler.messages] == ["gone@example.org"]


def test_claim_confirmation_allows_one_per_interval_on_both_databases(db_url):
    """The per-address claim wins once per interval on SQLite and PostgreSQL, compared in the database."""
    from newsletter.web.guard import claim_confirmation

    engine = store.engine_for(db_url)
    store.migrate(engine)
    hour, start = timedelta(hours=1), ManualClock().now()
    with engine.begin() as conn:
        sid = audience.add(conn, "a@example.org", "", "", AREAS, source="web", status="pending").id
        assert claim_confirmation(conn, sid, start, hour)
        assert not claim_confirmation(conn, sid, start + timedelta(minutes=59), hour)
        assert claim_confirmation(conn, sid, start + hour, hour)
    engine.dispose()


def test_the_per_address_interval_comes_from_the_config(site):
    """[web] confirm_every_minutes = 10: a second sign-up 11 minutes after the first mail gets a second mail."""
    config = site.config.model_copy(update={"web": site.config.web.model_copy(update={"confirm_every_minutes": 10})})
    app = create_app(config, site.engine, now=site.now)
    for minutes in (0, 5, 6):  # at 0, 5 and 11 minutes
        site.now.at += timedelta(minutes=minutes)
        with TestClient(app, base_url=HOST, client=("198.51.100.9", 40000), follow_redirects=False) as client:
            subscribe(client, "often@example.org")
    assert site.handler.received["often@example.org"] == 2


def test_hourly_confirmation_cap_holds_across_addresses_on_both_databases(db_url):
    """With per_hour = 2, a third address is refused in the same hour, on SQLite and PostgreSQL; an hour on, it wins."""
    from newsletter.web.guard import claim_confirmation, sent_last_hour

    engine = store.engine_for(db_url)
    store.migrate(engine)
    hour, start = timedelta(hours=1), ManualClock().now()
    with engine.begin() as conn:
        sids = [audience.add(conn, f"{n}@example.org", "", "", AREAS, source="web", status="pending").id
                for n in range(3)]
        assert [claim_confirmation(conn, sid, start, hour, 2) for sid in sids] == [True, True, False]
        assert sent_last_hour(conn, start) == 2
        assert claim_confirmation(conn, sids[2], start + hour, hour, 2)
    engine.dispose()


def test_trusted_proxies_must_be_addresses_or_networks(make_config):
    """A name in [web] trusted_proxies is refused in one line naming the key (uvicorn would trust nothing)."""
    from newsletter.errors import ConfigError

    assert load_config(make_config('[web]\ntrusted_proxies = ["10.0.0.1", "10.0.0.1/8", "::1"]\n')).web.trusted_proxies
    with pytest.raises(ConfigError, match=r"web\.trusted_proxies.*'proxy\.local' is not an IP address"):
        load_config(make_config('[web]\ntrusted_proxies = ["proxy.local"]\n', name="bad.toml"))


def test_an_unknown_page_is_a_404_page_and_a_trailing_slash_is_redirected_only_to_a_page(site):
    """/nothing and /nothing/ answer the 404 page; /archive/ goes to base_url's /archive."""
    with site.client() as client:
        answers = [client.get(path) for path in ("/nothing", "/nothing/", "/archive/")]
    assert [a.status_code for a in answers] == [404, 404, 307]
    assert "There is no page at this address." in answers[0].text
    assert answers[2].headers["location"] == "https://news.example.org/archive"
