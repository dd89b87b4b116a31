"""The Atom feeds (#17) read as a feed reader reads them, after a real send through a real SMTP server,
and `newsletter serve`'s warning when base_url does not point at where it listens."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET

import pytest
from starlette.testclient import TestClient

from newsletter.config import load_config
from newsletter.content import load_issue
from newsletter.web import create_app, listen_mismatch

from .conftest import AREAS, REPO, invoke
from .smtpd import smtp_server

ATOM = "{http://www.w3.org/2005/Atom}"
SENT, UNSENT, ENQUEUED = "2026-05-28", "2026-05-17", "2026-05-10"
TITLE = 'Bandits & <Agents> "Digest"'  # the sent issue's title: user data with XML's own characters
PRORL = "ProRL & <RL>: fixing gradient estimation for RL-based proactive recommendation (ICML 2025)"


@pytest.fixture
def site(make_config, runner, tmp_path):
    """Issue SENT sent to one subscriber, ENQUEUED's send started but not finished, UNSENT never sent."""
    issues = tmp_path / "issues"
    issues.mkdir()
    text = (REPO / "issues" / f"{SENT}.toml").read_text(encoding="utf-8")
    text = text.replace('title = "Top-conf Paper Digest"', 'title = "Bandits & <Agents> \\"Digest\\""', 1)
    text = text.replace('title = "ProRL: fixing', 'title = "ProRL & <RL>: fixing', 1)
    (issues / f"{SENT}.toml").write_text(text, encoding="utf-8")
    shutil.copy(REPO / "issues" / f"{UNSENT}.toml", issues / f"{UNSENT}.toml")
    (issues / f"{ENQUEUED}.toml").write_text(text.replace("date = 2026-05-28", "date = 2026-05-10")
                                             .replace("2026-05-22, end = 2026-05-28", "2026-05-04, end = 2026-05-10"),
                                             encoding="utf-8")
    with smtp_server(tmp_path / "mail") as (handler, port):
        config = make_config(f"""
            [newsletter]
            secret_key = "feeds-secret-0123456789-abcdefghijkl"
            base_url = "https://news.example.org"
            [smtp]
            port = {port}
            timeout = 5
            [paths]
            issues = "{issues}"
            templates = "{REPO / 'templates' / 'email'}"
            preview = "{tmp_path / 'preview'}"
            """)
        invoke(runner, config, "subscribers", "add", "ada@example.org")
        assert f"{SENT}: sent" in invoke(runner, config, "send", SENT).output
        invoke(runner, config, "send", ENQUEUED, "--enqueue")
        assert handler.received == {"ada@example.org": 1}
    loaded = load_config(config)
    app = create_app(loaded)
    with TestClient(app, base_url="http://localhost", follow_redirects=False) as client:
        yield client, loaded
    app.state.web.engine.dispose()


def advertised(page: str) -> dict[str, str]:
    """title → href of every <link rel="alternate" type="application/atom+xml"> in a page."""
    tags = re.findall(r'<link rel="alternate" type="application/atom\+xml"[^>]*>', page)
    found = {}
    for tag in tags:
        title, href = re.search(r'title="([^"]*)"', tag), re.search(r'href="([^"]*)"', tag)
        assert title and href, tag
        found[title.group(1)] = href.group(1)
    return found


def read_feed(client: TestClient, url: str) -> ET.Element:
    assert url.startswith("https://news.example.org/"), url
    answer = client.get(url)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/atom+xml")
    assert b"<Agents>" not in answer.content and b"<RL>" not in answer.content  # escaped, never raw markup
    return ET.fromstring(answer.content)


def entries(feed: ET.Element) -> list[tuple[str, str, str]]:
    """(title, link, updated) of each entry; an entry has one link, its alternate (the rel it implies)."""
    found = []
    for entry in feed.iter(f"{ATOM}entry"):
        links = entry.findall(f"{ATOM}link")
        assert len(links) == 1 and links[0].get("rel", "alternate") == "alternate", ET.tostring(entry)
        title, updated = entry.findtext(f"{ATOM}title", ""), entry.findtext(f"{ATOM}updated", "")
        found.append((title, links[0].get("href", ""), updated))
    return found


def test_the_feed_advertised_on_the_archive_lists_the_sent_issue_and_links_to_its_page(site):
    """The advertised feed lists the sent issue (escaped title, a working archive link), no unsent or unfinished one."""
    client, config = site
    listing = client.get("/archive")
    feeds = advertised(listing.text)
    assert set(feeds) == {config.newsletter.name} | {f"{config.newsletter.name}: {a}" for a in AREAS}
    listed = entries(read_feed(client, feeds[config.newsletter.name]))
    assert [(title, link) for title, link, _ in listed] == [(TITLE, f"https://news.example.org/archive/{SENT}")]
    assert listed[0][2].startswith("20")  # the time the send finished, an RFC 3339 date
    page = client.get(listed[0][1])
    assert page.status_code == 200 and advertised(page.text) == feeds  # the issue's own page advertises them too
    assert f"/archive/{ENQUEUED}" in listing.text  # the archive shows a started send; the feed waits for its end


def test_an_area_feed_lists_only_that_areas_papers_each_linking_to_its_anchor(site):
    """The RL feed holds one entry per sent RL paper, linking to its archive anchor; no Agents-only or unsent paper."""
    client, config = site
    feeds = advertised(client.get("/archive").text)
    issue = load_issue(config.path("issues") / f"{SENT}.toml", AREAS)
    listed = entries(read_feed(client, feeds[f"{config.newsletter.name}: RL"]))
    rl = [p for p in issue.papers if "RL" in p.areas]
    assert [title for title, _, _ in listed] == [p.title for p in rl] and PRORL in [t for t, _, _ in listed]
    assert [link for _, link, _ in listed] == [f"https://news.example.org/archive/{SENT}#{p.anchor}" for p in rl]
    page = client.get(f"/archive/{SENT}").text
    assert all(f'id="{p.anchor}"' in page for p in rl)
    agents = entries(read_feed(client, feeds[f"{config.newsletter.name}: Agents"]))
    only_agents = "LearnWeak: weakness-targeted specialization for small computer-use agents"
    assert only_agents in [t for t, _, _ in agents] and only_agents not in [t for t, _, _ in listed]
    unsent_rl = "Self-Distilled Agentic Reinforcement Learning"  # RL, in the issue never sent
    assert all(unsent_rl not in t for t, _, _ in listed + agents)


def test_unknown_area_feed_is_404_and_atom_xml_points_at_the_feed(site):
    """/feed/<unknown>.xml answers 404; /atom.xml, the name readers guess, redirects to base_url's /feed.xml."""
    client, _ = site
    assert client.get("/feed/robotics.xml").status_code == 404
    moved = client.get("/atom.xml")
    assert moved.status_code == 301 and moved.headers["location"] == "https://news.example.org/feed.xml"


@pytest.mark.parametrize(("base_url", "host", "port", "warns"), [
    ("http://127.0.0.1:8000", "127.0.0.1", 8000, False),
    ("http://127.0.0.1:8000", "127.0.0.1", 8100, True),     # every link in the mails is dead
    ("http://localhost:8000", "127.0.0.1", 8100, True),
    ("http://localhost", "127.0.0.1", 8000, True),          # port 80 implied
    ("http://localhost:8000", "0.0.0.0", 8000, False),      # every interface includes loopback
    ("http://127.0.0.1:8000", "192.0.2.5", 8000, True),     # loopback links, a server not on loopback
    ("http://192.0.2.5:8000", "192.0.2.5", 8100, True),     # the same host, another port
    ("https://news.example.org", "127.0.0.1", 8000, False),  # a reverse proxy in front
    ("http://news.example.org", "0.0.0.0", 8100, False),
])
def test_listen_mismatch_warns_only_when_base_url_points_here_at_another_port(base_url, host, port, warns):
    """base_url on loopback or on the listening host must name the listening port; any other host is a proxy."""
    problem = listen_mismatch(base_url, host, port)
    assert (problem is not None) == warns, problem
    if problem:
        assert "\n" not in problem and base_url in problem


def test_serve_warns_in_one_line_when_base_url_names_another_port(make_config, runner, monkeypatch):
    """`serve --port 8100` with base_url at :8000 says so on stderr before it starts; the right port says nothing."""
    started: list[tuple[str, int]] = []
    monkeypatch.setattr("newsletter.web.serve", lambda config, host, port: started.append((host, port)))
    config = make_config('[newsletter]\nbase_url = "http://127.0.0.1:8000"\n')
    wrong = invoke(runner, config, "serve", "--port", "8100")
    right = invoke(runner, config, "serve")
    warning = [line for line in wrong.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "8100" in warning[0] and "http://127.0.0.1:8000" in warning[0]
    assert "warning" not in right.stderr
    assert started == [("127.0.0.1", 8100), ("127.0.0.1", 8000)]
