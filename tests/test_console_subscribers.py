"""The console's subscribers pages and the API's /v1/subscribers (#22), through real requests on a real SQLite file and
a real PostgreSQL schema: search with keyset pages, a subscriber's history, the actions and their audit lines and
status events, import by upload in two steps, export; and every status change's cause, whoever made it."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from newsletter import accounts, audience, audit
from newsletter.audience import events, search
from newsletter.feedback.ingest import Notice
from newsletter.links import UNSUBSCRIBE, verp_address
from newsletter.store import tables as t

from .conftest import AREAS, ManualClock, invoke
from .console import PASSWORD, SECRET, Console, csrf, login, post
from .notices import arf, dsn, plain
from .test_feedback import BOUNCES, feedback_for, sent  # noqa: F401  (sent: an issue sent to five, VERP on)

BAD_CSV = ("email,name,areas\nnew1@example.org,New One,LLM\nnot-an-address,Nobody,\nnew2@example.org,New Two,"
           "Quantum\nnew3@example.org,\"=HYPERLINK(\"\"http://evil.example\"\")\",RL\nnew1@example.org,Again,\n")


@pytest.fixture
def console(make_config, db_url):
    made = Console(make_config(f'[newsletter]\nsecret_key = "{SECRET}"\n[database]\nurl = "{db_url}"\n'))
    yield made
    made.close()


def add_people(console: Console, count: int) -> list[int]:
    with console.engine.begin() as conn:
        return [audience.add(conn, f"Person{n:03d}@Example.org", f"Person Nº{n}", AREAS[n % 4] if n % 3 else "",
                             AREAS, cause="added by the test").id for n in range(count)]


def token(console: Console, role: str = "operator") -> dict[str, str]:
    with console.engine.begin() as conn:
        _, secret = accounts.create_token(conn, f"ci-{role}", role, "test", console.clock.now())
    return {"Authorization": f"Bearer {secret}"}


def ids_on(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<td class="num">(\d+)</td><td><a href="/admin/subscribers/', page)]


def causes(console: Console, sid: int) -> list[tuple[str, str]]:
    with console.engine.connect() as conn:
        return [(e.status, e.cause) for e in reversed(events.events(conn, sid, 50))]


def test_search_pages_through_every_match_once_with_filters_in_any_case(console):
    """120 subscribers: "person" in any case pages 50, 50, 20 by "Next page" links, each id once and in order; the
    status and area filters narrow it; a two-letter piece (no trigram) and a name piece find the same people."""
    ids = add_people(console, 120)
    client = console.signed_in("operator")
    seen, url = [], "/admin/subscribers?q=pERSON"
    while url:
        page = client.get(url)
        assert page.status_code == 200
        seen += ids_on(page.text)
        found = re.search(r'href="(/admin/subscribers\?[^"]+)" rel="next"', page.text)
        url = found.group(1).replace("&amp;", "&") if found else ""
    assert seen == ids
    assert "50+ (more on the next page)" in client.get("/admin/subscribers?q=person").text
    with console.engine.begin() as conn:
        audience.block(conn, ids[7], "test")
    assert ids_on(client.get("/admin/subscribers?q=person&status=blocked").text) == [ids[7]]
    vision = ids_on(client.get("/admin/subscribers?area=Vision&q=person").text)
    assert vision and all(n % 3 == 0 or n % 4 == 1 for n in (ids.index(i) for i in vision))
    assert ids_on(client.get("/admin/subscribers?q=n0").text) == ids_on(client.get("/admin/subscribers?q=N0").text)
    assert ids_on(client.get("/admin/subscribers?q=nº11").text) == ids[11:12] + ids[110:120]
    assert client.get("/admin/subscribers?status=gone").status_code == 400


def test_the_search_index_follows_every_change_of_an_address_or_a_name(console):
    """A name changed, a subscriber erased, a row imported: the index (FTS5's triggers on SQLite, pg_trgm on
    PostgreSQL) answers as a scan would, and a piece of three characters or more and one of two agree."""
    add_people(console, 5)
    with console.engine.begin() as conn:
        sub = audience.get(conn, "person001@example.org")
        assert sub is not None
        audience.set_name(conn, sub.id, "Grace Hopper")
        audience.delete(conn, "person002@example.org")
    with console.engine.connect() as conn:
        def emails(piece: str) -> list[str]:
            return [s.email for s in search.page(conn, AREAS, search.Query(piece)).subscribers]
        assert emails("hopper") == emails("HOPPER") == ["Person001@example.org"]
        assert emails("Nº1") == [] and emails("person002") == [] and len(emails("pe")) == 4
        assert emails("rson00") == emails("on00") and len(emails("rson00")) == 4


def test_a_subscribers_page_shows_its_history_and_pages_older_events(console):
    """Status changes with their cause, newest first, 20 a page with an "Older" link; an address or a name with
    markup is shown escaped everywhere."""
    with console.engine.begin() as conn:
        sub = audience.add(conn, "o'hara&co@example.org", "<script>x()</script>", "", AREAS,
                           cause="added by the test")
        for n in range(12):
            audience.block(conn, sub.id, f"block {n}")
            audience.unblock(conn, sub.id, f"unblock {n}")
    client = console.signed_in("operator")
    page = client.get(f"/admin/subscribers/{sub.id}").text
    assert "&lt;script&gt;x()&lt;/script&gt;" in page and "<script>x()" not in page
    assert "o&#39;hara&amp;co@example.org" in page and "hara&co" not in page
    assert page.count("unblock 11") == 1 and "block 1<" not in page and "events_before=" in page
    older = re.search(r'href="\?events_before=(\d+)"', page)
    assert older
    rest = client.get(f"/admin/subscribers/{sub.id}?events_before={older.group(1)}").text
    assert "added by the test" in rest and "unblock 11" not in rest
    assert client.get("/admin/subscribers/999999").status_code == 404


def test_the_actions_change_the_subscriber_with_an_event_and_an_audit_line_each(console):
    """Areas, block (its reason kept), unblock (back to active), unsubscribe: each one is an event with its cause
    and an audit line naming the operator; a form without its CSRF field changes nothing."""
    (sid,) = add_people(console, 1)
    client = console.signed_in("operator")
    page = f"/admin/subscribers/{sid}"
    assert client.post(f"{page}/block", data={"reason": "no"}).status_code == 403
    assert post(client, f"{page}/areas", {"areas": "RL"}, page).status_code == 303
    assert post(client, f"{page}/block", {"reason": "signed up others"}, page).status_code == 303
    assert post(client, f"{page}/block", {}, page).status_code == 400  # blocked already: one line, on its page
    assert post(client, f"{page}/unblock", {}, page).status_code == 303
    assert post(client, f"{page}/unsubscribe", {}, page).status_code == 303
    with console.engine.connect() as conn:
        sub = audience.get_id(conn, sid)
        log = [(e.actor, e.action, e.target) for e in audit.recent(conn, 10)][::-1]
    assert sub is not None and (sub.areas, sub.status) == (("RL",), "unsubscribed")
    assert causes(console, sid)[1:] == [("blocked", "blocked by user:ada-operator: signed up others"),
                                        ("active", "unblocked by user:ada-operator"),
                                        ("unsubscribed", "unsubscribed by user:ada-operator")]
    assert [a for _, a, _ in log if a.startswith("subscriber.")] == \
        ["subscriber.areas", "subscriber.block", "subscriber.unblock", "subscriber.unsubscribe"]
    assert {(who, target) for who, a, target in log if a.startswith("subscriber.")} == \
        {("user:ada-operator", f"subscriber #{sid}")}


def test_erasing_needs_the_address_typed_and_then_forgets_it_everywhere(console):
    """Erase with a wrong confirmation: 400, nothing erased; with the address typed (any case): gone, its events
    gone, its hash on the suppression list, and the audit log names it no more."""
    with console.engine.begin() as conn:
        sub = audience.add(conn, "erase.me@example.org", "Eve", "", AREAS)
    api = token(console)
    client = console.signed_in("operator")
    page = f"/admin/subscribers/{sub.id}"
    wrong = post(client, f"{page}/erase", {"confirm": "someone@example.org"}, page)
    assert wrong.status_code == 400 and "nothing was erased" in wrong.text
    assert client.post("/api/v1/subscribers", headers=api, json={"email": "x@example.org"}).status_code == 201
    assert post(client, f"{page}/erase", {"confirm": " ERASE.me@example.org "}, page).status_code == 303
    with console.engine.connect() as conn:
        assert audience.get_id(conn, sub.id) is None and audience.is_suppressed(conn, "erase.me@example.org")
        assert not conn.scalar(sa.select(sa.func.count()).select_from(t.subscriber_events)
                               .where(t.subscriber_events.c.subscriber_id == sub.id))
    assert "erase.me" not in client.get("/admin/audit").text


def test_an_upload_shows_its_line_errors_before_anything_is_written_then_imports_its_good_rows(console):
    """Upload → the preview lists each bad line with its reason and the counts, and the list is unchanged; confirm
    → exactly the good rows are imported (with their event), the upload is gone and cannot be imported twice."""
    client = console.signed_in("operator")
    form = csrf(client, "/admin/subscribers/import")
    preview = client.post("/admin/subscribers/import", data={"csrf": form},
                          files={"file": ("list.csv", BAD_CSV.encode(), "text/csv")})
    assert preview.status_code == 200
    assert "line 3" not in preview.text  # listed by number in the table, not as prose
    lines = re.findall(r'<td class="num">(\d+)</td><td>([^<]+)</td>', preview.text)
    assert [n for n, _ in lines] == ["3", "4", "6"]
    assert "Quantum" in lines[1][1] and "duplicate of line 2" in lines[2][1]
    assert "add 2" in preview.text and "Import the 2 good rows" in preview.text
    with console.engine.connect() as conn:
        assert search.status_counts(conn)["active"] == 0
    action = re.search(r'action="(/admin/subscribers/import/[^"]+)"', preview.text)
    assert action
    done = post(client, action.group(1), {"do": "import"}, "/admin/subscribers/import")
    assert done.status_code == 200 and "added 2" in done.text
    with console.engine.connect() as conn:
        sub = audience.get(conn, "new3@example.org")
        assert sub is not None and sub.name == '=HYPERLINK("http://evil.example")'
    assert causes(console, sub.id) == [("active", "imported by user:ada-operator from list.csv")]
    assert post(client, action.group(1), {"do": "import"}, "/admin/subscribers/import").status_code == 404


def test_export_streams_the_list_with_formula_cells_neutralised_and_is_audited(console):
    """The export is CSV with the header import reads; a name that would run as a spreadsheet formula comes out
    with a ' first, and imports back as it was."""
    with console.engine.begin() as conn:
        audience.add(conn, "=1+2@example.org", "=HYPERLINK(\"http://evil.example\",\"x\")", "RL", AREAS)
        audience.add(conn, "plain@example.org", "Plain", "", AREAS)
    client = console.signed_in("operator")
    answer = client.get("/admin/subscribers/export.csv")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows == [["email", "name", "areas"],
                    ["'=1+2@example.org", "'=HYPERLINK(\"http://evil.example\",\"x\")", "RL"],
                    ["plain@example.org", "Plain", ""]]
    assert "subscribers.export" in client.get("/admin/audit").text
    assert client.get("/admin/subscribers/export.csv?status=nope").status_code == 400


def test_the_api_searches_with_a_cursor_and_acts_as_the_console_does(console):
    """GET with search and cursor pages every match once; add, areas, block, unblock, unsubscribe and erase answer
    the subscriber as it is after; an unknown id is 404 and a bad value 400, each in one line."""
    ids = add_people(console, 7)
    api = token(console)
    client = console.client()
    seen, cursor = [], ""
    while True:
        page = client.get(f"/api/v1/subscribers?search=PERSON&limit=3&cursor={cursor}", headers=api).json()
        seen += [s["id"] for s in page["subscribers"]]
        if not page["next"]:
            break
        cursor = page["next"]
    assert seen == ids
    made = client.post("/api/v1/subscribers", headers=api, json={"email": "Api@Example.org", "areas": ["llm"]})
    assert made.status_code == 201 and made.json()["areas"] == ["LLM"]
    sid = made.json()["id"]
    one = f"/api/v1/subscribers/{sid}"
    assert client.post(f"{one}/areas", headers=api, json={"areas": []}).json()["areas"] == []
    assert client.post(f"{one}/block", headers=api, json={"reason": "abuse"}).json()["status"] == "blocked"
    assert client.post(f"{one}/block", headers=api).json() == {"error": "Api@example.org: blocked already"}
    assert client.post(f"{one}/unblock", headers=api).json()["status"] == "active"
    assert client.post(f"{one}/unsubscribe", headers=api).json()["status"] == "unsubscribed"
    got = client.get(one, headers=api).json()
    assert [e["cause"] for e in got["history"]["events"]["items"]][:2] == \
        ["unsubscribed by token:ci-operator", "unblocked by token:ci-operator"]
    assert client.post(f"{one}/areas", headers=api, json={"areas": ["Quantum"]}).status_code == 400
    assert client.post("/api/v1/subscribers/999999/block", headers=api).status_code == 404
    assert client.request("DELETE", one, headers=api, json={"confirm": "nope"}).status_code == 400
    assert client.request("DELETE", one, headers=api, json={"confirm": "api@example.org"}).json() == {"erased": sid}
    assert client.get(one, headers=api).status_code == 404


def test_the_api_imports_a_csv_body_with_a_dry_run_first(console):
    """?dry_run=true lists the line errors and writes nothing; the import then adds the good rows; ?strict=true with
    a bad line imports nothing (400)."""
    api = token(console)
    client = console.client()
    headers = {**api, "Content-Type": "text/csv"}
    dry = client.post("/api/v1/subscribers/import?dry_run=true", headers=headers, content=BAD_CSV.encode())
    assert dry.status_code == 200 and dry.json()["written"] is False
    assert [r["line"] for r in dry.json()["rejected"]] == [3, 4, 6] and dry.json()["added"] == 2
    strict = client.post("/api/v1/subscribers/import?strict=true", headers=headers, content=BAD_CSV.encode())
    assert strict.status_code == 400 and strict.json()["error"].startswith("strict:")
    with console.engine.connect() as conn:
        assert search.status_counts(conn)["active"] == 0
    done = client.post("/api/v1/subscribers/import", headers=headers, content=BAD_CSV.encode())
    assert done.json()["added"] == 2 and done.json()["written"] is True
    bad = client.post("/api/v1/subscribers/import", headers=headers, content=b"\xff\xfe")
    assert bad.status_code == 400 and "UTF-8" in bad.json()["error"]
    schema = client.get("/api/v1/openapi.json").json()["paths"]
    assert {"/v1/subscribers", "/v1/subscribers/{sid}", "/v1/subscribers/import"} <= set(schema)


def test_every_status_change_is_an_event_with_its_cause(sent, make_config, runner):  # noqa: F811
    """Whoever changes a status writes why: the CLI's add, block and unblock; a hard bounce with its diagnostic; a
    complaint; soft bounces past the threshold; mail to the List-Unsubscribe address; the confirm and one-click
    links. The console's subscriber page shows each, with the messages sent and the notices with diagnostics."""
    config, _, rows = sent
    invoke(runner, config, "subscribers", "block", "away@example.org", "--reason", "asked by phone")
    invoke(runner, config, "subscribers", "unblock", "away@example.org")
    clock = ManualClock()
    fb = feedback_for(config, clock)
    to = {e: verp_address(BOUNCES, fb.links.verp_token("r", row.id)) for e, row in rows.items()}
    fb.handle(Notice(dsn(to["hard@example.org"], "hard@example.org", "5.1.1", "550 5.1.1 User unknown"), "t"))
    fb.handle(Notice(arf(BOUNCES, "angry@example.org", rows["angry@example.org"].message_id), "fbl"))
    mailto = verp_address(BOUNCES, fb.links.verp_token("u", rows["leaving@example.org"].subscriber_id))
    fb.handle(Notice(plain(mailto, "leaving@example.org", "unsubscribe", "please"), "mailto"))
    with fb.engine.begin() as conn:
        for day in range(3):
            audience.add_soft_bounce(conn, rows["soft@example.org"].subscriber_id, clock.now() + timedelta(days=day),
                                     timedelta(days=7), 3, "552 5.2.2 Mailbox full")
    made = Console(Path(config), roles=("operator",))
    try:
        def events_of(email: str) -> list[tuple[str, str]]:
            return causes(made, rows[email].subscriber_id)
        assert events_of("away@example.org") == [("active", "added by cli"),
                                                 ("blocked", "blocked by cli: asked by phone"),
                                                 ("active", "unblocked by cli")]
        assert events_of("hard@example.org")[-1] == ("bounced", "5.1.1 550 5.1.1 User unknown")
        assert events_of("angry@example.org")[-1][0] == "unsubscribed"
        assert events_of("angry@example.org")[-1][1].startswith("complaint")
        assert events_of("leaving@example.org")[-1] == ("unsubscribed", "mail to its List-Unsubscribe address")
        assert events_of("soft@example.org")[-1][1].startswith("3 soft bounces within 7 days")
        browser = TestClient(made.app, base_url="https://localhost", follow_redirects=False)  # base_url is https
        login(browser, "ada-operator", PASSWORD)
        page = browser.get(f"/admin/subscribers/{rows['hard@example.org'].subscriber_id}").text
        assert "2026-05-28" in page and "sent" in page and "5.1.1" in page and "User unknown" in page
        assert "verp" in page
        web = made.client()
        sid = rows["soft@example.org"].subscriber_id
        link = fb.links.token(UNSUBSCRIBE, rows["away@example.org"].subscriber_id)
        assert web.post(f"/unsubscribe/{link}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
        assert events_of("away@example.org")[-1] == ("unsubscribed",
                                                     "RFC 8058 one-click unsubscribe (List-Unsubscribe-Post)")
        assert web.post(f"/resubscribe/{link}", data={"csrf": csrf(web, f"/unsubscribe/{link}")}).status_code == 200
        assert events_of("away@example.org")[-1] == ("active",
                                                     "subscribed again from the unsubscribe page (its signed link)")
        assert events_of("soft@example.org")[-1][0] == "bounced" and sid
    finally:
        made.close()


def test_bench_subscribers_search_runs_on_both_databases(pg_url, tmp_path):
    """bench/subscribers_search.py on 2,000 subscribers prints its table; every query and page has a time."""
    import json
    import subprocess
    import sys

    from .conftest import PG_URL, REPO  # pg_url (unused schema) is what skips here, or fails in CI, without PostgreSQL

    done = subprocess.run([sys.executable, str(REPO / "bench" / "subscribers_search.py"), "--subscribers", "2000",
                           "--runs", "3", "--pg-url", PG_URL, "--json", str(tmp_path / "s.json")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    for store_name in ("sqlite", "postgresql"):
        timings = [v for k, v in figures[store_name].items() if k != "load"]
        assert len(timings) == 12 and all(v["p95_ms"] > 0 for v in timings)
    assert "a subscriber's page" in done.stdout
