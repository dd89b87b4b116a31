"""The console's bounce pages and the API's /v1/bounces (#22), on a real SQLite file with notices stored by the real
feedback path: the log in keyset pages with its filters and `bounces report`'s summary, one notice with its raw text
shown escaped (control characters as U+FFFD), the same as JSON; the OpenAPI document valid and complete, and every
API error JSON, an unknown path's too."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from openapi_spec_validator import OpenAPIV30SpecValidator
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from newsletter import accounts
from newsletter.feedback.ingest import Notice
from newsletter.feedback.report import bounce_report
from newsletter.links import verp_address
from newsletter.store import tables as t
from newsletter.web.console import api_app

from .console import PASSWORD, Console, login
from .notices import arf, dsn
from .test_feedback import BOUNCES, ISSUE, feedback_for, sent  # noqa: F401  (sent: an issue sent to five, VERP on)

ROW_LINK = re.compile(r'<td class="num"><a href="/admin/bounces/(\d+)">')
HOSTILE = (b"From: <>\r\nSubject: Undelivered <b>bold</b>\r\n\r\n<script>alert(1)</script> & \x1b]0;owned\x07"
           b"\x1b[2J \xc2\x9b31m \xe2\x80\xaegro.elpmaxe\r\nline two\r\n")


class Stored:
    """The `sent` fixture's database with notices of every sort, a console on it and its operator's clients."""

    def __init__(self, config: Path, rows: dict[str, sa.Row[tuple[object, ...]]]) -> None:
        self.feedback = feedback_for(config)
        self.console = Console(config, roles=("editor", "operator"))
        self.rows = rows
        self.browser = TestClient(self.console.app, base_url="https://localhost", follow_redirects=False)
        login(self.browser, "ada-operator", PASSWORD)

    def store(self, data: bytes, source: str) -> int:
        """One notice through the real feedback path; its id in the log."""
        self.feedback.handle(Notice(data, source))
        with self.console.engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.max(t.bounce_log.c.id))) or 0)

    def proven(self) -> list[int]:
        """A hard bounce by its VERP token and a complaint by its quoted Message-ID: both about the issue."""
        row = self.rows["hard@example.org"]
        to = verp_address(BOUNCES, self.feedback.links.verp_token("r", row.id))  # type: ignore[attr-defined]
        angry = self.rows["angry@example.org"].message_id  # type: ignore[attr-defined]
        return [self.store(dsn(to, "hard@example.org", "5.1.1", "550 5.1.1 User unknown"), "smtp"),
                self.store(arf(BOUNCES, "angry@example.org", angry), "fbl")]

    def token(self, role: str) -> dict[str, str]:
        with self.console.engine.begin() as conn:
            _, secret = accounts.create_token(conn, f"ci-{role}", role, "test", self.console.clock.now())
        return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def stored(sent):  # noqa: F811
    config, _, rows = sent
    made = Stored(Path(config), rows)
    yield made
    made.console.close()
    made.feedback.engine.dispose()


def unproven(stored: Stored, count: int) -> list[int]:
    """``count`` DSNs naming strangers without proof, each a notice kept for a person."""
    return [stored.store(dsn(BOUNCES, f"stranger{n}@example.net", "5.1.1", "550 no such user"), f"file{n}")
            for n in range(count)]


def walk(client: TestClient, url: str) -> list[int]:
    """The ids of every page from ``url`` on, following the "Older notices" links."""
    seen: list[int] = []
    while url:
        page = client.get(url)
        assert page.status_code == 200, page.text
        seen += [int(n) for n in ROW_LINK.findall(page.text)]
        found = re.search(r'href="(/admin/bounces\?[^"]+)" rel="next"', page.text)
        url = found.group(1).replace("&amp;", "&") if found else ""
    return seen


def test_the_log_pages_newest_first_through_every_notice_once_and_filters(stored):
    """Two proven notices, 60 unproven and 3 unreadable ones: the log walks 50 + 15 newest first, each notice
    once; the verdict, unproven and issue filters each keep only their own, across pages too."""
    proven = stored.proven()
    strangers = unproven(stored, 30)
    unknown = [stored.store(b"From: <>\r\nSubject: Undelivered\r\n\r\nwhat is this", f"junk{n}") for n in range(3)]
    strangers += unproven(stored, 30)
    everything = sorted(proven + strangers + unknown, reverse=True)
    assert walk(stored.browser, "/admin/bounces") == everything
    assert walk(stored.browser, "/admin/bounces?unproven=true") == sorted(strangers, reverse=True)
    assert walk(stored.browser, "/admin/bounces?kind=unknown") == sorted(unknown, reverse=True)
    assert walk(stored.browser, f"/admin/bounces?issue={ISSUE}") == sorted(proven, reverse=True)
    assert walk(stored.browser, "/admin/bounces?issue=2020-01-01") == []
    assert stored.browser.get("/admin/bounces?kind=<script>").status_code == 200  # unknown kind: no filter


def test_the_first_page_carries_bounce_reports_summary(stored):
    """The first page shows `bounces report`: by verdict, by class, by Sisimai's reason (hard and soft apart), the
    unproven count, the domains, and the notices kept for a person linked to their pages; each row of the log its
    reason; an older page does not count again."""
    stored.proven()
    strangers = unproven(stored, 55)
    first = stored.browser.get("/admin/bounces").text
    with stored.console.engine.connect() as conn:
        report = bounce_report(conn)
    assert report.unproven == 55 and f'unproven=true">{report.unproven}</a>' in first
    assert f"bounce {report.by_kind['bounce']}, complaint 1" in first and "hard " in first
    assert "<code>example.net</code>" in first and "For a person" in first
    assert report.by_reason == [("userunknown", 56, 0, 0), ("feedback", 0, 0, 1)] and "<caption>By reason" in first
    assert ('<tr><td><code>userunknown</code></td><td class="num">56</td><td class="num">0</td>\n'
            '    <td class="num">0</td></tr>') in first
    assert "<td>5.1.1</td><td>userunknown</td>" in first
    assert "<td></td><td>feedback</td>" in stored.browser.get("/admin/bounces?kind=complaint").text
    assert f'<li><a href="/admin/bounces/{strangers[-1]}">#{strangers[-1]}</a>' in first
    older = stored.browser.get(f"/admin/bounces?before={strangers[-1] - 40}").text
    assert "What came back" not in older and ROW_LINK.search(older)
    one_issue = stored.browser.get(f"/admin/bounces?issue={ISSUE}").text
    assert f"What came back for {ISSUE}" in one_issue and 'unproven=true">0</a>' in one_issue


def test_a_notice_shows_its_verdict_proof_and_raw_text_escaped(stored):
    """One notice's page: verdict, status, proof and what was done; its raw text in a <pre>, markup escaped and
    every control character (ESC, BEL, C1 CSI, a bidi override, a lone CR) as U+FFFD, as `bounces show` prints it."""
    hard = stored.proven()[0]
    page = stored.browser.get(f"/admin/bounces/{hard}")
    assert page.status_code == 200 and "no-store" in page.headers["cache-control"]
    assert "bounce (hard)" in page.text and "5.1.1" in page.text and "verp" in page.text and ISSUE in page.text
    assert "<dt>Reason</dt><dd>userunknown</dd>" in page.text
    assert 'Subject: Undelivered Mail Returned to Sender' in page.text
    nid = stored.store(HOSTILE, "hostile")
    text = stored.browser.get(f"/admin/bounces/{nid}").text
    raw = text.split('<pre class="raw">')[1].split("</pre>")[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; \ufffd]0;owned\ufffd\ufffd[2J \ufffd31m \ufffdgro." in raw
    assert "Undelivered &lt;b&gt;bold&lt;/b&gt;" in raw and "\nline two\n" in raw
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", text) and "<script>" not in text


def test_a_forgotten_raw_text_and_an_unknown_notice_say_so(stored):
    """Once keep_raw_days has passed the page says the raw text is no longer kept; an id not in the log is 404."""
    nid = stored.proven()[0]
    with stored.console.engine.begin() as conn:
        conn.execute(t.bounce_log.update().values(raw=None, raw_until=None))
    assert "no longer kept" in stored.browser.get(f"/admin/bounces/{nid}").text
    missing = stored.browser.get("/admin/bounces/999999")
    assert missing.status_code == 404 and "no notice #999999" in missing.text


def test_the_api_pages_the_log_gives_one_notice_and_the_report(stored):
    """/v1/bounces pages with its cursor and filters, /v1/bounces/{id} gives the raw text exactly (in ASCII JSON:
    no byte of an escape sequence on the wire), /v1/bounces/report is `bounces report --json`; editors get 403."""
    client, ops = stored.console.client(), stored.token("operator")
    proven, strangers = stored.proven(), unproven(stored, 4)
    hostile = stored.store(HOSTILE, "hostile")
    first = client.get("/api/v1/bounces?limit=3", headers=ops).json()
    second = client.get(f"/api/v1/bounces?limit=3&cursor={first['next']}", headers=ops).json()
    ids = [n["id"] for n in first["notices"] + second["notices"]]
    assert ids == sorted([hostile, *strangers, *proven], reverse=True)[:6] and second["next"]
    only = client.get("/api/v1/bounces?unproven=true", headers=ops).json()["notices"]
    assert [n["id"] for n in only] == sorted(strangers, reverse=True) and all(n["unproven"] for n in only)
    complaint = client.get("/api/v1/bounces?kind=complaint", headers=ops).json()["notices"]
    assert [(n["id"], n["issue"], n["proof"], n["reason"]) for n in complaint] == [
        (proven[1], ISSUE, "message-id", "feedback")]
    assert client.get(f"/api/v1/bounces/{proven[0]}", headers=ops).json()["reason"] == "userunknown"
    one = client.get(f"/api/v1/bounces/{hostile}", headers=ops)
    assert one.content.isascii() and b"\x1b" not in one.content
    assert one.json()["raw"] == HOSTILE.decode() and one.json()["kind"] == "unknown"
    with stored.console.engine.connect() as conn:
        assert client.get("/api/v1/bounces/report", headers=ops).json() == \
            json.loads(json.dumps(bounce_report(conn).as_json()))
        assert client.get(f"/api/v1/bounces/report?issue={ISSUE}", headers=ops).json()["by_kind"] == \
            bounce_report(conn, ISSUE).by_kind
    assert client.get("/api/v1/bounces", headers=stored.token("editor")).status_code == 403


@pytest.mark.parametrize("query, error", [("kind=spam", "kind: one of bounce"), ("unproven=maybe", "unproven: true"),
                                          ("limit=500", "limit: 1 to 200"), ("issue=" + "9" * 65, "issue:")])
def test_a_bad_filter_is_400_with_one_line(stored, query, error):
    """A filter the log does not have is refused in one JSON line naming it."""
    answer = stored.console.client().get(f"/api/v1/bounces?{query}", headers=stored.token("operator"))
    assert answer.status_code == 400 and answer.json()["error"].startswith(error)


def test_the_openapi_document_is_valid_and_lists_every_api_route(make_config):
    """/api/v1/openapi.json is valid OpenAPI 3 (openapi-spec-validator), served under /api, and names every route
    of the API but the hidden ones, each path parameter typed: a route added without its description fails here."""
    console = Console(make_config('[newsletter]\nsecret_key = "console-test-secret-0123456789abcdef"\n'), roles=())
    try:
        doc = console.client().get("/api/v1/openapi.json").json()
        found = OpenAPIV30SpecValidator(doc).iter_errors()
        errors = [f"{'/'.join(map(str, e.path))}: {e.message[:160]}" for e in found]
        assert not errors, "\n".join(errors)
        assert doc["servers"] == [{"url": "/api"}]
        api = api_app(console.config, console.engine)
        routes = {(r.path_format, m.lower()) for r in api.routes if isinstance(r, Route) and r.include_in_schema
                  for m in (r.methods or ()) if m != "HEAD"}
        assert routes == {(p, m) for p, ops in doc["paths"].items() for m in ops}
        mounted = next(m for m in console.app.routes if isinstance(m, Mount) and m.path == "/api")
        assert {r.path for r in mounted.routes if isinstance(r, Route)} == {r.path for r in api.routes
                                                                            if isinstance(r, Route)}
        assert {"/v1/bounces", "/v1/bounces/{nid}", "/v1/bounces/report"} <= set(doc["paths"])
        assert {"name": "nid", "in": "path", "required": True, "schema": {"type": "integer"},
                "description": "the notice's id"} in doc["paths"]["/v1/bounces/{nid}"]["get"]["parameters"]
    finally:
        console.close()


@pytest.mark.parametrize("method, path, status", [("GET", "/api/v1/nothing", 404), ("GET", "/api/", 404),
                                                  ("GET", "/api/v1/bounces/abc", 404),
                                                  ("DELETE", "/api/v1/bounces", 405)])
def test_every_api_error_is_json_an_unknown_paths_too(make_config, method, path, status):
    """Starlette's own 404 and 405 under /api become {"error": …} through the API's HTTPException handler."""
    console = Console(make_config('[newsletter]\nsecret_key = "console-test-secret-0123456789abcdef"\n'), roles=())
    try:
        answer = console.client().request(method, path)
        assert answer.status_code == status and answer.headers["content-type"] == "application/json"
        assert list(answer.json()) == ["error"] and answer.json()["error"]
    finally:
        console.close()
