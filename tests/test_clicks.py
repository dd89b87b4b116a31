"""Click counts per paper (#25, ``[tracking] clicks``): a real send through an aiosmtpd server on a manual clock, the
real web app following the links in the copies it sent, the counts in `newsletter report`, its JSON and HTML, the
console and the API; real SQLite files and real PostgreSQL schemas where the store is concerned."""

from __future__ import annotations

import html as htmllib
import http.client
import io
import json
import logging
import quopri
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from newsletter import accounts, areas, audience, clicks, store
from newsletter.clicks import CLICK, ClickLinks
from newsletter.config import Config, load_config
from newsletter.content import Issue, load_issue
from newsletter.errors import BadToken
from newsletter.links import Links
from newsletter.mailsink import free_port
from newsletter.send import Campaign, Mode, Options
from newsletter.send.compose import sender_for
from newsletter.send.groups import Groups
from newsletter.store import tables as t
from newsletter.web import create_app
from newsletter.web.clicks import ClickWriter
from newsletter.web.guard import ACCESS_LOG
from newsletter.web.serving import server

from .conftest import REPO, ManualClock, invoke, parse
from .console import PASSWORD, Console, login
from .smtpd import smtp_server

SECRET = "clicks-test-secret-0123456789abcdef0123"
BASE = "https://news.example.org"
ISSUE = "2026-05-28"
START = ManualClock().at   # the send's clock: the time in every tracked link
LATER = START + timedelta(hours=1)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
READERS = {"ann@example.org": "RL", "ben@example.org": "RL", "cat@example.org": ""}  # "": every area
EDITOR = "editor@example.org"
_HREF = re.compile(r'href="([^"]+)"')
_URL = re.compile(r"https?://\S+")


@dataclass
class Sent:
    path: Path
    config: Config
    engine: sa.Engine
    issue: Issue
    copies: dict[str, EmailMessage]  # by address

    def client(self, at: object = LATER) -> TestClient:
        """The web app on this database, its clock at ``at``."""
        app = create_app(self.config, self.engine, now=ManualClock(at))  # type: ignore[arg-type]
        return TestClient(app, base_url=BASE, follow_redirects=False)

    def total(self) -> int:
        with self.engine.connect() as conn:
            return conn.scalar(sa.select(sa.func.coalesce(sa.func.sum(t.clicks.c.clicks), 0))) or 0


@pytest.fixture
def send(make_config) -> Iterator[Callable[..., Sent]]:
    """``send(db_url, tracking=True)``: the issue sent to READERS on a manual clock; engines disposed afterwards."""
    made: list[Sent] = []

    def make(db_url: str, tracking: bool = True) -> Sent:
        made.append(sent_issue(make_config, db_url, tracking))
        return made[-1]

    yield make
    for sent in made:
        sent.engine.dispose()


def sent_issue(make_config: Callable[..., Path], db_url: str, tracking: bool = True) -> Sent:
    """The issue sent to READERS on a manual clock, with [tracking] clicks as asked, and a test copy to EDITOR; the
    copies by address."""
    with smtp_server() as (handler, port):
        path = make_config(f"""
            [newsletter]
            secret_key = "{SECRET}"
            base_url = "{BASE}"
            [smtp]
            host = "127.0.0.1"
            port = {port}
            connections = 1
            timeout = 3
            [database]
            url = "{db_url}"
            [tracking]
            clicks = {'true' if tracking else 'false'}
            """)
        config = load_config(path)
        engine = store.engine_for(config.database_url)
        store.migrate(engine)
        with engine.begin() as conn:
            for address, chosen in READERS.items():
                audience.add(conn, address, address.split("@")[0].title(), chosen, config.newsletter.areas)
        issue = load_issue(REPO / "issues" / f"{ISSUE}.toml", config.newsletter.areas)
        Campaign(config, engine, issue, clock=ManualClock()).run(Mode.SEND)
        Campaign(config, engine, issue, clock=ManualClock()).run(Mode.TEST, Options(test_to=EDITOR))
        return Sent(path, config, engine, issue, {rcpt: parse(data) for rcpt, data in handler.messages})


def html_links(copy: EmailMessage) -> list[str]:
    return [htmllib.unescape(h) for h in _HREF.findall(copy.get_body(("html",)).get_content())]


def text_links(copy: EmailMessage) -> list[str]:
    return _URL.findall(copy.get_body(("plain",)).get_content())


def tracked(links: list[str]) -> list[str]:
    return [link for link in links if link.startswith(f"{BASE}/r/")]


def targets(sent: Sent, chosen: tuple[str, ...]) -> set[str]:
    """Every paper link a copy for ``chosen`` carries: the featured papers' own and code links, the others' anchors."""
    found = set()
    archive = f"{BASE}/archive/{ISSUE}"
    for paper in sent.issue.papers:
        kinds = ("paper", "code") if set(paper.areas) & set(chosen) else ("archive",)
        found |= {url for kind in kinds if (url := clicks.target(paper, kind, archive))}
    return found


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'clicks.db'}"


def test_tracking_off_leaves_every_link_going_straight_to_its_target(send, sqlite_url):
    """With [tracking] clicks off (the default), the HTML and the text part link each paper where the issue file
    says, and no copy holds a /r/ link."""
    sent = send(sqlite_url, tracking=False)
    copy = sent.copies["ann@example.org"]
    assert targets(sent, ("RL",)) <= set(html_links(copy))
    assert {u for u in targets(sent, ("RL",)) if "#" not in u} <= set(text_links(copy))
    assert not tracked(html_links(copy) + text_links(copy)) and "/r/" not in copy.as_string()


def test_tracked_links_redirect_to_the_papers_own_link_and_are_counted_in_the_report(send, db_url, runner):
    """With tracking on, every paper link of the HTML and the text part is a /r/ link; each answers 302 with the
    link the issue file gives that paper, and the counts show in `report` (text, --json, --html) by paper and kind."""
    sent = send(db_url)
    ann, cat = sent.copies["ann@example.org"], sent.copies["cat@example.org"]
    followed: list[str] = []
    with sent.client() as client:
        for link in tracked(html_links(ann)) + tracked(text_links(cat)):
            answer = client.get(link.removeprefix(BASE), headers={"User-Agent": BROWSER})
            assert answer.status_code == 302, link
            assert (answer.headers["referrer-policy"], answer.headers["cache-control"]) == ("no-referrer", "no-store")
            followed.append(answer.headers["location"])
    assert set(followed) == targets(sent, ("RL",)) | targets(sent, tuple(sent.config.newsletter.areas))
    assert not [u for u in html_links(ann) if u.startswith("https://arxiv.org") or u.startswith("https://github")]
    assert sent.total() == len(followed)
    report = json.loads(invoke(runner, sent.path, "report", ISSUE, "--json").output)["clicks"]
    prorl = next(p for p in report["papers"] if p["paper"] == "arxiv-2605-28293")
    # ann's HTML: the title and "Read the paper" (2), Code (1); cat's text part: Paper (1), Code (1)
    assert prorl["by_kind"] == {"paper": 3, "code": 2, "archive": 0} and prorl["clicks"] == 5
    assert report["total"] == len(followed) and report["tracking"] is True
    assert report["papers"][0]["paper"] == "arxiv-2605-28293"  # the most clicked first
    rl = next(a for a in report["areas"] if a["area"] == "RL")
    assert rl["top"][0] == "arxiv-2605-28293" and rl["clicks"] == sum(
        p["clicks"] for p in report["papers"] if "RL" in p["areas"])
    text = invoke(runner, sent.path, "report", ISSUE).output
    assert f"Clicks: {len(followed)} counted" in text and "Most clicked papers" in text and "ProRL" in text
    invoke(runner, sent.path, "report", ISSUE, "--html", str(sent.path.parent / "r.html"))
    page = (sent.path.parent / "r.html").read_text(encoding="utf-8")
    assert 'id="clicks"' in page and "ProRL: fixing gradient estimation" in page


def test_a_test_copy_links_straight_to_the_papers_so_an_editors_clicks_never_count(send, sqlite_url):
    """With tracking on, the editor's test copy (`send --test-to`, the console's and the live preview's) carries the
    papers' own links, no /r/ link."""
    sent = send(sqlite_url)
    copy = sent.copies[EDITOR]
    assert targets(sent, tuple(sent.config.newsletter.areas)) <= set(html_links(copy))
    assert not tracked(html_links(copy) + text_links(copy))


def test_the_link_is_the_same_in_every_readers_copy_and_nothing_stored_names_a_reader(send, sqlite_url):
    """Two readers of one group get the very same /r/ links, in the HTML and the text part; a token holds only
    issue, paper, kind and time; the clicks table has no column for a reader, and a click adds no other row."""
    sent = send(sqlite_url)
    ann, ben = sent.copies["ann@example.org"], sent.copies["ben@example.org"]
    assert tracked(html_links(ann)) == tracked(html_links(ben)) != []
    assert tracked(text_links(ann)) == tracked(text_links(ben)) != []
    links = Links(SECRET, BASE)
    for link in set(tracked(html_links(ann) + text_links(ann))):
        value = links.unsign(CLICK, link.rsplit("/", 1)[1])
        slug, paper, letter, made = value.rsplit(".", 3)
        assert (slug, letter, int(made)) == (ISSUE, letter, int(START.timestamp())) and letter in "pca"
        assert paper in {p.anchor for p in sent.issue.papers} and "ann" not in value.casefold()
    assert {c["name"] for c in sa.inspect(sent.engine).get_columns("clicks")} == {"issue_id", "paper", "kind", "day",
                                                                                  "clicks"}
    with sent.engine.connect() as conn:
        before = {name: conn.scalar(sa.select(sa.func.count()).select_from(table))
                  for name, table in t.metadata.tables.items() if name != "clicks"}
    with sent.client() as client:
        client.get(tracked(html_links(ann))[0].removeprefix(BASE), headers={"User-Agent": BROWSER})
    with sent.engine.connect() as conn:
        rows = conn.execute(sa.select(t.clicks)).all()
        after = {name: conn.scalar(sa.select(sa.func.count()).select_from(table))
                 for name, table in t.metadata.tables.items() if name != "clicks"}
    assert [(r.paper, r.kind, r.day, r.clicks) for r in rows] == [("arxiv-2605-28293", "paper", LATER.date(), 1)]
    assert after == before


SCANNERS = ["", "Mozilla/5.0 (compatible; BingPreview/1.0b)", "Barracuda Sentinel (EE)", "python-requests/2.32.3",
            "curl/8.5.0", "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mimecast-URL-Protect/1.0", "Proofpoint URL Defense", "Google-Safety",
            "Microsoft Office Existence Discovery", "Mozilla/5.0 HeadlessChrome/124.0"]


def test_head_requests_scanners_and_clicks_right_after_delivery_are_redirected_but_not_counted(send, sqlite_url):
    """HEAD, an empty or a scanner's User-Agent, and a GET within 2 × ignore_first_seconds (60) of the link's render
    time are each answered 302 to the paper, and none is counted; a browser's GET after that counts (a phone
    maker's name ending in "bot", Cubot, is a browser)."""
    sent = send(sqlite_url)
    path = tracked(html_links(sent.copies["ann@example.org"]))[0].removeprefix(BASE)
    with sent.client() as client:
        answers = [client.head(path, headers={"User-Agent": BROWSER})]
        answers += [client.get(path, headers={"User-Agent": agent}) for agent in SCANNERS]
    for seconds in (0, 30, 119):
        with sent.client(START + timedelta(seconds=seconds)) as client:
            answers.append(client.get(path, headers={"User-Agent": BROWSER}))
    assert {(a.status_code, a.headers["location"]) for a in answers} == {(302, "https://arxiv.org/abs/2605.28293")}
    assert sent.total() == 0
    cubot = "Mozilla/5.0 (Linux; Android 9; CUBOT X19) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36"
    with sent.client(START + timedelta(seconds=120)) as client:
        assert client.get(path, headers={"User-Agent": cubot}).status_code == 302
    assert sent.total() == 1


def test_links_of_an_issue_sent_while_tracking_was_on_still_redirect_once_it_is_off(send, sqlite_url):
    """Switching tracking off keeps old mails working: their /r/ links still redirect, and are no longer counted."""
    sent = send(sqlite_url)
    sent.config.tracking.clicks = False
    with sent.client() as client:
        answer = client.get(tracked(html_links(sent.copies["ann@example.org"]))[0].removeprefix(BASE),
                            headers={"User-Agent": BROWSER})
    assert answer.status_code == 302 and sent.total() == 0


def test_a_tracked_group_is_rendered_again_once_its_links_are_ignore_first_seconds_old(repo_config):
    """Every copy goes out within ignore_first_seconds of its links' time: the group's render is shared until it is
    that old, then made again with the new time (so the early-click rule covers a long send's last copies)."""
    repo_config.tracking.clicks = True
    issue = load_issue(REPO / "issues" / f"{ISSUE}.toml", repo_config.newsletter.areas)
    clock = ManualClock()
    groups = Groups(repo_config, issue, sender_for("N", "n@example.org", ""), links=Links(SECRET, BASE), clock=clock)
    key = areas.group_key(("RL",), repo_config.newsletter.areas)

    def made() -> set[int]:
        prepared = groups.get(key)
        assert prepared is not None
        text = quopri.decodestring(b"".join(prepared.text.static)).decode()
        return {int(Links(SECRET, BASE).unsign(CLICK, u.rsplit("/", 1)[1]).rsplit(".", 1)[1])
                for u in tracked(_URL.findall(text))}

    first = groups.get(key)
    assert made() == {int(START.timestamp())}
    clock.at += timedelta(seconds=59)
    assert groups.get(key) is first
    clock.at += timedelta(seconds=1)
    assert groups.get(key) is not first and made() == {int(START.timestamp()) + 60}


def test_click_tokens_survive_a_key_rotation_for_previous_key_days_like_every_link():
    """A link signed with the old key still leads to its paper after a rotation, until the retired key's window
    ends; then it is a bad token (as unsubscribe links are)."""
    paper = load_issue(REPO / "issues" / f"{ISSUE}.toml", ["LLM", "Vision", "RL", "Agents"]).papers[0]
    old = ClickLinks(Links("old-key-" + SECRET, BASE), ISSUE, 1).url(paper, "code").rsplit("/", 1)[1]
    clock = ManualClock()
    rotated = Links(SECRET, BASE, ("old-key-" + SECRET,), START + timedelta(days=30), clock)
    assert clicks.read(rotated, old) == clicks.Click(ISSUE, paper.anchor, "code", 1)
    clock.at += timedelta(days=31)
    with pytest.raises(BadToken):
        clicks.read(rotated, old)


def test_every_answered_click_is_committed_before_its_answer(send, db_url):
    """Group commit: 8 clients × 40 clicks at once, without the app's shutdown: every click answered 302 is already
    in the database; with batches gathering for 20 ms, in a quarter as many transactions as clicks at most."""
    sent = send(db_url)
    links = [u.removeprefix(BASE) for u in tracked(html_links(sent.copies["cat@example.org"]))]
    app = create_app(sent.config, sent.engine, now=ManualClock(LATER))
    app.state.web.redirects.writer = ClickWriter(sent.engine, gather=0.02)
    answered: list[int] = []

    def reader(n: int) -> None:
        client = TestClient(app, base_url=BASE, follow_redirects=False)  # no lifespan: nothing written at its end
        for i in range(40):
            answered.append(client.get(links[(n + i) % len(links)], headers={"User-Agent": BROWSER}).status_code)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    writer = app.state.web.redirects.writer
    assert answered.count(302) == 320 and sent.total() == 320 == writer.written
    assert writer.batches <= 80, writer.batches
    writer.close()


def test_shutdown_writes_every_pending_click_and_two_processes_lose_none(send, db_url):
    """Two writers (two server processes) adding to the same rows from many threads, each batch held open: nothing
    is committed until shutdown, which writes every pending click at once (not after the batch's wait)."""
    sent = send(db_url)
    with sent.engine.connect() as conn:
        iid = conn.scalar(sa.select(t.issues.c.id))
    keys = [(iid, p.anchor, kind, LATER.date()) for p in sent.issue.papers[:3] for kind in ("paper", "code")]
    writers = [ClickWriter(sent.engine, gather=60.0, most=10_000) for _ in range(2)]

    def add(n: int) -> None:
        for i in range(150):
            writers[n % 2].add(keys[i % len(keys)])

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    time.sleep(0.2)
    assert sent.total() == 0  # held: the batches wait for more
    started = time.monotonic()
    for writer in writers:
        writer.close()
    assert time.monotonic() - started < 10 and sent.total() == 600
    with sent.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(t.clicks)) == len(keys)


def test_the_console_report_page_and_the_api_show_the_counts(send, sqlite_url):
    """The console's report page has the clicks table (papers by kind, areas) and the API's report the same JSON
    as `report --json`; the OpenAPI document names the field."""
    sent = send(sqlite_url)
    with sent.client() as client:
        for link in tracked(html_links(sent.copies["ann@example.org"])):
            client.get(link.removeprefix(BASE), headers={"User-Agent": BROWSER})
    console = Console(sent.path)
    client = TestClient(console.app, base_url=BASE, follow_redirects=False)  # https: the session cookie is Secure
    login(client, "ada-operator", PASSWORD)
    page = client.get(f"/admin/issues/{ISSUE}/report")
    assert page.status_code == 200 and 'id="clicks"' in page.text and 'id="clicks-by-area"' in page.text
    assert "ProRL: fixing gradient estimation" in page.text
    with console.engine.begin() as conn:
        _, secret = accounts.create_token(conn, "ops", "operator", "test", console.clock.now())
    report = client.get(f"/api/v1/issues/{ISSUE}/report", headers={"Authorization": f"Bearer {secret}"}).json()
    assert report["clicks"]["total"] == len(tracked(html_links(sent.copies["ann@example.org"])))
    doc = client.get("/api/v1/openapi.json").json()
    assert "clicks" in doc["paths"]["/v1/issues/{slug}/report"]["get"]["responses"]["200"]["description"]
    console.close()


def test_under_uvicorn_a_click_is_redirected_counted_and_kept_out_of_the_access_log(send, sqlite_url):
    """The app as `newsletter serve` runs it (web.serving.server, lifespan on): a click is answered 302 and counted,
    the access log has a line for a page but none for the tracked link (it would tie an address to a paper), and
    the server's shutdown stops the writer."""
    sent = send(sqlite_url)
    app = create_app(sent.config, sent.engine, now=ManualClock(LATER))
    port = free_port()
    uvi = server(app, "127.0.0.1", port)
    access = logging.getLogger(ACCESS_LOG)
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    access.addHandler(handler)
    thread = threading.Thread(target=uvi.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not uvi.started and time.monotonic() < deadline:
            time.sleep(0.02)
        path = tracked(html_links(sent.copies["ann@example.org"]))[0].removeprefix(BASE)
        statuses = [_get(port, path), _get(port, "/archive")]
    finally:
        uvi.should_exit = True
        thread.join(10)
        access.removeHandler(handler)
    assert statuses == [302, 200] and sent.total() == 1
    assert "/archive" in captured.getvalue() and "/r/" not in captured.getvalue()
    assert not app.state.web.redirects.writer.running  # stopped by the lifespan's end


def _get(port: int, path: str) -> int:
    """One GET on loopback, the redirect not followed (its target is on the internet)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"User-Agent": BROWSER})
        return conn.getresponse().status
    finally:
        conn.close()
