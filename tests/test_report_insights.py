"""`newsletter report` by receiving domain and per minute, as text, JSON and a self-contained HTML page (#17),
from a real send through a scripted SMTP server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import stat
import tracemalloc
from collections import deque
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import sqlalchemy as sa

from newsletter import audience, store
from newsletter.config import load_config
from newsletter.content import find_issue, load_issue
from newsletter.send import Campaign, Mode
from newsletter.send.insights import DomainOutcome, Insights, insights, sparkline
from newsletter.send.report import Failure, Report
from newsletter.send.report_page import render_page
from newsletter.store import tables as t

from .conftest import ManualClock, invoke
from .smtpd import smtp_server

ISSUE = "2026-05-28"
EVIL = "550 5.7.1 <script>alert(1)</script> & rejected"
# address -> what the server answers to its RCPT, one reply per try (then 250)
SCRIPT = {
    "ann@alpha.example": [], "ben@alpha.example": ["421 4.3.2 try later"],
    "cat@alpha.example": ["550 5.1.1 <cat@alpha.example>: User unknown"], "tom&jerry@alpha.example": [EVIL],
    "dan@beta.example": [], "eve@beta.example": ["451 4.7.1 greylisted", "451 4.7.1 greylisted"],
    "fay@beta.example": [],
    "gus@gamma.example": ["421 4.3.2 busy"] * 3,  # max_attempts = 3: failed, never bounced
    "hal@delta.example": [],                      # accepted, then a hard bounce comes back
}
# (domain, messages, sent, deferred, failed, bounced), most messages first, then by name
EXPECTED = [("alpha.example", 4, 2, 1, 2, 2), ("beta.example", 3, 3, 1, 0, 0), ("delta.example", 1, 1, 0, 0, 1),
            ("gamma.example", 1, 0, 1, 1, 0)]
START = ManualClock().at


def sent_issue(make_config, db_url: str) -> Path:
    """Send the issue to SCRIPT's subscribers on a manual clock (retries 60 s, then 120 s), one connection,
    then log a hard bounce for hal's accepted message; returns the config file."""
    with smtp_server() as (handler, port):
        path = make_config(f"""
            [newsletter]
            secret_key = "insights-secret-0123456789abcdef0123456789"
            base_url = "https://news.example.org"
            [smtp]
            host = "127.0.0.1"
            port = {port}
            connections = 1
            timeout = 3
            retry_seconds = 60
            max_attempts = 3
            [database]
            url = "{db_url}"
            """)
        config = load_config(path)
        engine = store.engine_for(config.database_url)
        try:
            store.migrate(engine)
            with engine.begin() as conn:
                for address, replies in SCRIPT.items():
                    audience.add(conn, address, "", "", config.newsletter.areas)
                    handler.rcpt[address.casefold()] = deque(replies)
            issue = load_issue(find_issue(config.path("issues"), ISSUE), config.newsletter.areas)
            run = Campaign(config, engine, issue, clock=ManualClock()).run(Mode.SEND)
            with engine.begin() as conn:
                o = t.outbox.c
                hal = conn.execute(sa.select(o.id, o.issue_id).where(o.email == "hal@delta.example")).one()
                conn.execute(t.bounce_log.insert().values(
                    received_at=START + timedelta(hours=1), source="smtp", kind="bounce", recipient="hal@delta.example",
                    domain="delta.example", status="5.1.1", diagnostic="gone",
                    issue_id=hal.issue_id, outbox_id=hal.id, action="suppressed", **{"class": "hard"}))
        finally:
            engine.dispose()
    assert run.report is not None and run.report.state == "sent", run
    return path


def test_domain_table_and_minutes_match_what_the_server_answered(make_config, runner, db_url):
    """Text and JSON give each domain's messages/sent/deferred/failed/bounced as the server answered, and the
    sends fall in the minutes the manual clock reached them (09:00, 09:01 after 60 s, 09:03 after 120 s)."""
    config = sent_issue(make_config, db_url)
    data = json.loads(invoke(runner, config, "report", ISSUE, "--json").output)
    assert data["counts"]["sent"] == 6 and data["counts"]["failed"] == 3
    got = [(d["domain"], d["messages"], d["sent"], d["deferred"], d["failed"], d["bounced"]) for d in data["domains"]]
    assert got == EXPECTED
    assert data["domain_count"] == 4 and data["other_domains"] is None
    assert data["per_minute"] == [{"minute": "2026-05-28T09:00:00+00:00", "sent": 4},
                                  {"minute": "2026-05-28T09:01:00+00:00", "sent": 1},
                                  {"minute": "2026-05-28T09:03:00+00:00", "sent": 1}]
    assert sum(m["sent"] for m in data["per_minute"]) == data["counts"]["sent"]
    assert any(f["answer"] == EVIL[4:] for f in data["failures"])

    text = invoke(runner, config, "report", ISSUE).output
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in text.splitlines() if ".example " in line]
    table = [(r[0], *map(int, r[1:])) for r in rows if len(r) == 6]
    assert table == EXPECTED
    assert "By receiving domain (top 4 of 4)" in text
    assert "Sends per minute: peak 4 at 09:00 UTC, mean 2.0 over 3 minute(s)" in text


def test_top_domains_and_the_rest_are_aggregated_in_the_database(make_config, db_url):
    """With room for two domains, the other two are summed into one row; totals over all stay whole; and the
    aggregation allocates the same small amount of Python memory whatever the number of rows."""
    config = load_config(sent_issue(make_config, db_url))
    engine = store.engine_for(config.database_url)
    try:
        with engine.connect() as conn:
            found, missing = insights(conn, ISSUE, top=2), insights(conn, "no-such-issue")
        with engine.begin() as conn:  # 20,000 more sent rows over 200 minutes at 20,000 domains
            iid = conn.scalar(sa.select(t.issues.c.id).where(t.issues.c.slug == ISSUE))
            conn.execute(t.outbox.insert(), [
                {"issue_id": iid, "email": f"r{i}@d{i}.example", "group_key": "x", "state": "sent",
                 "created_at": START, "updated_at": START, "sent_at": START + timedelta(seconds=0.6 * i)}
                for i in range(20_000)])
        with engine.connect() as conn:
            tracemalloc.start()
            big = insights(conn, ISSUE)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    finally:
        engine.dispose()
    assert found is not None and missing is None
    assert [d.domain for d in found.domains] == ["alpha.example", "beta.example"]
    other = found.other
    assert other is not None and other.domain == "2 other domains"
    assert (other.messages, other.sent, other.deferred, other.failed, other.bounced) == (2, 1, 1, 1, 1)
    assert (found.total.messages, found.total.sent, found.total.failed) == (9, 6, 3)
    assert big is not None and big.domain_count == 20_004 and big.total.sent == 20_006
    assert len(big.domains) == 10 and sum(n for _, n in big.per_minute) == 20_006
    assert peak < 1_000_000, peak  # 20,000 rows fetched as tuples alone would take several MB


def test_html_page_is_self_contained_with_charts_counts_and_escaped_answers(make_config, runner, db_url, tmp_path):
    """--html writes one owner-only page: both SVG charts, the counts, the domain table; no script, no external
    reference; an answer with <script> and an address with & arrive as text, escaped."""
    config = sent_issue(make_config, db_url)
    page = tmp_path / "report.html"
    old = os.umask(0o022)
    try:
        invoke(runner, config, "report", ISSUE, "--html", str(page))
    finally:
        os.umask(old)
    assert stat.S_IMODE(page.stat().st_mode) == 0o600  # it lists addresses, like every file that does
    source = page.read_text(encoding="utf-8")
    parsed = Page.of(source)
    assert "<script" not in source.lower() and "script" not in parsed.tags
    assert parsed.references == []
    assert parsed.tags.count("svg") == 2 and parsed.ids >= {"per-minute", "by-domain", "counts", "domains"}
    assert parsed.rects["per-minute"] == 3  # one bar per minute with sends
    assert parsed.table("counts")[1][parsed.table("counts")[0].index("sent")] == "6"
    assert [tuple(r[:1]) + tuple(map(int, r[1:])) for r in parsed.table("domains")[1:]] == EXPECTED
    failures = parsed.table("failures")
    assert ["tom&jerry@alpha.example", "550", EVIL[4:]] in failures
    assert "tom&amp;jerry@alpha.example" in source and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; rejected" in source


def test_page_escapes_a_hostile_domain_in_the_svg_and_the_table():
    """A domain string with markup (as an erased or forged row might hold) is text in the chart and the table."""
    hostile = '<script>x()</script>&"d.example'
    row = DomainOutcome(hostile, 3, 1, 1, 1, 1, 0, 1)
    report = Report("x", "sent", None, {"sent": 1, "failed": 1}, [Failure("a@b.example", 550, "<b>no</b>", None)],
                    None, {"bounced_hard": 0, "bounced_soft": 0, "complained": 0, "unsubscribed": 0})
    at = datetime(2026, 5, 28, 9, 0, tzinfo=UTC)
    source = render_page(report, Insights([row], row, 1, [(at, 1)]), at)
    parsed = Page.of(source)
    assert "script" not in parsed.tags and "b" not in parsed.tags
    assert hostile in parsed.texts and "<b>no</b>" in parsed.texts
    assert "&lt;script&gt;x()&lt;/script&gt;&amp;&#34;d.example" in source
    assert sparkline([(at, 1), (at + timedelta(minutes=2), 2)]) == "▄ █"


class Page(HTMLParser):
    """What a browser would see of the page: tags, ids, references, text, tables and bars by chart."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.ids: set[str] = set()
        self.references: list[str] = []
        self.texts: list[str] = []
        self.rects: dict[str, int] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._svg = self._table = ""
        self._cell: list[str] | None = None

    @classmethod
    def of(cls, source: str) -> Page:
        page = cls()
        page.feed(source)
        page.close()
        return page

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        found = dict(attrs)
        self.references += [v or "" for k, v in attrs if k in ("src", "href", "xlink:href", "action")]
        self.references += [v for k, v in attrs if k == "style" and v and "url(" in v]
        if found.get("id"):
            self.ids.add(found["id"] or "")
        if tag == "svg":
            self._svg = found.get("id") or ""
        elif tag == "rect":
            self.rects[self._svg] = self.rects.get(self._svg, 0) + 1
        elif tag == "table":
            self._table = found.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr":
            self.tables[self._table].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.texts.append(data.strip())
        if self._cell is not None:
            self._cell.append(data)

    def table(self, name: str) -> list[list[str]]:
        return self.tables[name]

