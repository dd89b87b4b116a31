"""The console's dashboard, issue pages and sending (#22), and /api/v1/issues: real requests on a real SQLite file
(and PostgreSQL where the send's state machine matters), a real aiosmtpd relay, the send in the server's own thread."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from newsletter import accounts, audit, spamcheck
from newsletter.mailsink import start
from newsletter.send.background import Sends
from newsletter.send.worker import Worker
from newsletter.store import tables as t

from .conftest import need, parse
from .console import Console, post
from .sendkit import ISSUE, Slow, add_subscribers, config_text, counts, issue_text, issues_folder, sent

PAGE = f"/admin/issues/{ISSUE}"


@pytest.fixture
def relay():
    handler = Slow()
    controller = start(handler)
    try:
        yield handler, controller.port
    finally:
        controller.stop()


@pytest.fixture
def make_console(tmp_path, relay):
    """A console on ``db_url`` (default: a SQLite file) with the small issue, a draft unless ``ready``."""
    made: list[Console] = []

    def make(db_url: str = "", ready: bool = False, extra: str = "") -> Console:
        path = tmp_path / "config.toml"
        path.write_text(config_text(issues_folder(tmp_path, ready), db_url or f"sqlite:///{tmp_path / 'c.db'}",
                                    relay[1], extra), encoding="utf-8")
        made.append(Console(path))
        return made[-1]

    yield make
    for console in made:
        Sends.of(console.config, console.engine).stop_all(10)
        console.close()


def sends(console: Console) -> Sends:
    return Sends.of(console.config, console.engine)


def audited(console: Console) -> list[tuple[str, str, str]]:
    with console.engine.connect() as conn:
        return [(e.actor, e.action, e.target) for e in audit.recent(conn)]


def token(console: Console, role: str) -> dict[str, str]:
    with console.engine.begin() as conn:
        _, secret = accounts.create_token(conn, f"{role}-script", role, "test", console.clock.now())
    return {"Authorization": f"Bearer {secret}"}


def sent_issue(console: Console, slug: str, sent_rows: int, complaints: int, bounces: int) -> None:
    """An issue sent earlier, written as its rows would be: ``sent_rows`` sent, and what came back for some."""
    now = console.clock.now()
    with console.engine.begin() as conn:
        iid = conn.execute(t.issues.insert().values(slug=slug, title="Earlier", state="sent", created_at=now,
                                                    started_at=now, finished_at=now)).inserted_primary_key[0]
        conn.execute(t.outbox.insert(), [{"issue_id": iid, "email": f"e{n}@example.org", "name": "", "group_key": "all",
                                          "state": "sent", "attempts": 1, "created_at": now, "updated_at": now,
                                          "sent_at": now} for n in range(sent_rows)])
        first = conn.scalar(sa.select(sa.func.min(t.outbox.c.id)).where(t.outbox.c.issue_id == iid))
        kinds = ["complaint"] * complaints + ["bounce"] * bounces
        conn.execute(t.bounce_log.insert(), [{"received_at": now, "source": "test", "kind": kind, "class": "hard",
                                              "issue_id": iid, "outbox_id": first + n, "action": "suppressed"}
                                             for n, kind in enumerate(kinds)])


def test_the_dashboard_shows_every_issue_its_counts_rates_and_the_next_send(make_console, tmp_path):
    """Each issue file with its readiness, state and counts; complaints at 0.2 % marked near the 0.3 % line; the
    next weekly send and that its issue is not approved; an issue's title is shown as text, never as markup."""
    console = make_console()
    (tmp_path / "issues" / "2026-05-21.toml").write_text(
        issue_text(date="2026-05-21", title="Earlier <b>bold</b>"), encoding="utf-8")
    sent_issue(console, "2026-05-21", 1000, complaints=2, bounces=5)
    console.clock.at += timedelta(hours=1)  # past this Thursday's slot: the next one is 2026-06-04's
    page = console.signed_in("editor").get("/admin/")
    assert page.status_code == 200
    text = page.text
    assert "Thu 2026-06-04 09:00 UTC" in text and "not approved (draft)" in text
    assert "0.200 % near the 0.3 % line" in text and "0.50 %" in text and ">1000<" in text
    assert "Earlier &lt;b&gt;bold&lt;/b&gt;" in text and "<b>bold" not in text
    assert "Report of 2026-05-21" not in text  # reports name addresses: operators only
    listed = console.client().get("/api/v1/issues", headers=token(console, "editor")).json()["issues"]
    assert [(i["slug"], i["state"], i["readiness"], i["complaints"]) for i in listed] == [
        (ISSUE, None, "draft", None), ("2026-05-21", "sent", "file", "near")]
    assert listed[1]["counts"]["sent"] == 1000 and listed[1]["rates"]["complained"] == 0.002


def test_an_editor_approves_and_sends_a_test_but_cannot_send(make_console, relay):
    """An editor approves the draft (audited, readiness approved) and sends a [Test] copy of a group to an address
    (audited; the outbox untouched); the send form is not theirs, and its POST is refused (403)."""
    console = make_console()
    handler, _ = relay
    add_subscribers(console.engine, 3)
    editor = console.signed_in("editor")
    page = editor.get(PAGE).text
    assert "Approve 2026-06-04" in page and "send-confirm" not in page
    assert f'src="/admin/issues/{ISSUE}/frame/llm-rl"' in page and page.count("<iframe") == 30
    approved = post(editor, f"{PAGE}/approve", {}, PAGE)
    assert approved.status_code == 200 and "Approved 2026-06-04" in approved.text
    assert "ready (approved)" in approved.text
    tested = post(editor, f"{PAGE}/test", {"to": "me@example.org", "group": "llm-rl"}, PAGE)
    assert "Test copy of 2026-06-04 (LLM, RL) sent to me@example.org." in tested.text
    assert list(handler.received) == ["me@example.org"]
    assert parse(handler.messages[0][1])["Subject"].startswith("[Test]")
    assert post(editor, f"{PAGE}/send", {"confirm": ISSUE}, PAGE).status_code == 403
    assert counts(console.engine) == {}
    actions = audited(console)
    assert {("user:ada-editor", "issue.test", ISSUE), ("user:ada-editor", "issue.approve", ISSUE)} <= set(actions)


def test_a_groups_frame_is_its_email_alone_framed_only_by_the_console(make_console):
    """The frame of a group is its HTML with a CSP that allows no script and framing only by the console itself."""
    editor = make_console().signed_in("editor")
    frame = editor.get(f"{PAGE}/frame/all")
    assert frame.status_code == 200 and "One paper for every area" in frame.text
    assert "frame-ancestors 'self'" in frame.headers["content-security-policy"]
    assert "script-src" not in frame.headers["content-security-policy"]
    assert frame.headers["x-frame-options"] == "SAMEORIGIN"
    assert editor.get(f"{PAGE}/frame/nope").status_code == 404


def test_a_groups_spam_score_is_shown_when_asked_for(make_console):
    """Where spamassassin is installed, the issue page shows a group's local score once asked (a GET: it changes
    nothing)."""
    if spamcheck.spamassassin() is None:
        need("spamassassin is not installed (bash .ci/run installs it)")
    editor = make_console().signed_in("editor")
    assert "data-field=\"spam\"" not in editor.get(PAGE).text
    assert re.search(r'data-field="spam">all: -?\d+\.\d', editor.get(f"{PAGE}?spam=all").text)


def test_a_send_needs_the_issues_date_typed_then_runs_in_the_server(make_console, relay, db_url):
    """A wrong or empty date is refused with a message and nothing is sent; the issue's date starts the send in a
    thread of the server, whose progress stream ends with every row sent; the send is in the audit log."""
    console = make_console(db_url, ready=True)
    handler, _ = relay
    people = add_subscribers(console.engine, 20)
    operator = console.signed_in("operator")
    for typed in ("", "2026-06-05", "yes"):
        refused = post(operator, f"{PAGE}/send", {"confirm": typed}, PAGE)
        assert refused.status_code == 400 and "type the issue&#39;s date, 2026-06-04, to confirm" in refused.text
    assert counts(console.engine) == {} and handler.total() == 0
    started = post(operator, f"{PAGE}/send", {"confirm": ISSUE}, PAGE)
    assert started.status_code == 303 and started.headers["location"] == f"{PAGE}?done=sending"
    with operator.stream("GET", f"{PAGE}/progress") as stream:
        events = [line for line in stream.iter_lines() if line.startswith(("event:", "data:"))]
    assert events[-2] == "event: done"
    final = json.loads(events[-1].removeprefix("data: "))
    assert final["state"] == "sent" and final["done"] == final["total"] == 20 and final["percent"] == 100
    assert sends(console).join(ISSUE, 30)
    assert sorted(handler.received) == people and set(handler.received.values()) == {1}
    assert ("user:ada-operator", "issue.send", ISSUE) in audited(console)
    again = post(operator, f"{PAGE}/send", {"confirm": ISSUE}, PAGE)
    assert again.status_code == 400 and "2026-06-04 was sent already: nothing to send" in again.text
    assert "Send 2026-06-04 to the list" not in again.text  # a sent issue has no send form


def test_pause_stops_the_servers_send_and_resume_finishes_it_once(make_console, relay, db_url):
    """Paused mid-send from the console, the server's send stops after the message in flight (the counts stop
    growing, nothing is left mid-transfer); resumed, it sends the rest; no address gets two."""
    console = make_console(db_url, ready=True)
    handler, _ = relay
    handler.delay = 0.02
    people = add_subscribers(console.engine, 60)
    operator = console.signed_in("operator")
    assert post(operator, f"{PAGE}/send", {"confirm": ISSUE}, PAGE).status_code == 303
    handler.wait_for(5)
    assert post(operator, f"{PAGE}/pause", {}, PAGE).headers["location"] == f"{PAGE}?done=paused"
    assert sends(console).join(ISSUE, 30)
    stopped = counts(console.engine)
    assert stopped.get("sending", 0) == 0 and handler.total() == stopped["sent"] < 60
    page = operator.get(f"{PAGE}?done=paused").text
    assert "paused by user:ada-operator" in page and "Resume 2026-06-04" in page and "Pause 2026-06-04" not in page
    assert handler.total() == sent(console.engine) == stopped["sent"]  # the send has ended: nothing more goes
    assert post(operator, f"{PAGE}/resume", {}, PAGE).headers["location"] == f"{PAGE}?done=resumed"
    assert sends(console).join(ISSUE, 30)
    assert sorted(handler.received) == people and set(handler.received.values()) == {1}
    assert [a for _, a, _ in audited(console) if a.startswith("issue.")] == ["issue.resume", "issue.pause",
                                                                            "issue.send"]


def test_with_workers_the_console_only_makes_the_outbox(make_console, relay):
    """With [schedule] deliver = "workers" a send from the console makes the outbox and sends nothing itself; a
    worker then delivers every row."""
    console = make_console(ready=True, extra='[schedule]\ndeliver = "workers"\n')
    handler, _ = relay
    add_subscribers(console.engine, 5)
    operator = console.signed_in("operator")
    answer = post(operator, f"{PAGE}/send", {"confirm": ISSUE}, PAGE)
    assert answer.headers["location"] == f"{PAGE}?done=enqueued" and not sends(console).running(ISSUE)
    assert counts(console.engine) == {"queued": 5} and handler.total() == 0
    Worker(console.config, console.engine).run(exit_when_idle=True)
    assert counts(console.engine) == {"sent": 5} and handler.total() == 5


def test_the_api_sends_pauses_cancels_and_reports_with_roles(make_console, relay, db_url):
    """/api/v1/issues: an editor's token may not send (403); a send without the date sends nothing (400); with it
    it starts (202); pause (200, paused), cancel skips what was left (200); the report is `report --json`'s."""
    console = make_console(db_url, ready=True)
    handler, _ = relay
    handler.delay = 0.02
    add_subscribers(console.engine, 40)
    client, ops, eds = console.client(), token(console, "operator"), token(console, "editor")
    base = f"/api/v1/issues/{ISSUE}"
    assert client.post(f"{base}/send", json={"confirm": ISSUE}, headers=eds).status_code == 403
    wrong = client.post(f"{base}/send", json={"confirm": "2026-06-05"}, headers=ops)
    assert wrong.status_code == 400 and "type the issue's date" in wrong.json()["error"]
    assert client.post(f"{base}/pause", headers=ops).status_code == 409  # nothing to pause yet
    assert client.post(f"{base}/send", json={"confirm": ISSUE}, headers=ops).status_code == 202
    handler.wait_for(3)
    paused = client.post(f"{base}/pause", headers=ops)
    assert paused.status_code == 200 and paused.json()["state"] == "paused"
    assert sends(console).join(ISSUE, 30)
    done = sent(console.engine)
    cancelled = client.post(f"{base}/cancel", json={"confirm": ISSUE}, headers=ops)
    assert cancelled.json() == {"slug": ISSUE, "skipped": 40 - done}
    one = client.get(base, headers=eds).json()
    assert (one["state"], one["reason"], one["counts"]["skipped"]) == ("sent", "cancelled by token:operator-script",
                                                                     40 - done)
    assert client.get(f"{base}/report", headers=eds).status_code == 403
    report = client.get(f"{base}/report", headers=ops).json()
    assert report["counts"]["sent"] == done == handler.total() and "domains" in report
    assert client.post(f"{base}/resume", headers=ops).status_code == 409
    schema = client.get("/api/v1/openapi.json").json()["paths"]
    assert "requestBody" in schema["/v1/issues/{slug}/send"]["post"] and "/v1/issues" in schema


def test_the_report_page_is_report_html_in_the_console_for_operators(make_console, relay):
    """After a send the issue's report page shows `report --html`'s content (counts, the per-minute chart) in the
    console's layout; an editor is refused it (it names addresses)."""
    console = make_console(ready=True)
    add_subscribers(console.engine, 4)
    operator = console.signed_in("operator")
    post(operator, f"{PAGE}/send", {"confirm": ISSUE}, PAGE)
    assert sends(console).join(ISSUE, 30)
    page = operator.get(f"{PAGE}/report")
    assert page.status_code == 200 and "Delivery report · 2026-06-04" in page.text and 'id="per-minute"' in page.text
    assert "Sign out" in page.text and "<!doctype html>" in page.text and page.text.count("<html") == 1
    assert console.signed_in("editor").get(f"{PAGE}/report").status_code == 403
    console.clock.at += timedelta(days=1)
    assert operator.get("/admin/issues/2026-01-01/report").status_code == 404
