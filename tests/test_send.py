"""`newsletter send` and `report` end to end: a real SQLite file, a real aiosmtpd server, real subprocesses."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import audience, store
from newsletter.content import load_issue
from newsletter.links import UNSUBSCRIBE, Links
from newsletter.render import split_papers
from newsletter.store import tables as t

from .conftest import AREAS, REPO, invoke, parse, tls_relay
from .smtpd import smtp_server

SAMPLE = REPO / "subscribers" / "sample.csv"
ISSUE = "2026-05-28"
SECRET = "test-secret-key-0123456789-abcdefghij"


@pytest.fixture
def server(tmp_path):
    with smtp_server(tmp_path / "mail") as (handler, port):
        yield handler, port


@pytest.fixture
def setup(make_config, server, tmp_path):
    """A config aimed at the test server and a tmp SQLite file; returns (config path, handler)."""
    handler, port = server

    def make(smtp_extra: str = "", **kw: str):
        config = make_config(f"""
            [newsletter]
            secret_key = "{SECRET}"
            base_url = "https://news.example.org"
            [smtp]
            host = "127.0.0.1"
            port = {port}
            connections = {kw.get('connections', '2')}
            timeout = {kw.get('timeout', '3')}
            retry_seconds = 0.05
            max_attempts = 3
            {smtp_extra}
            """)
        return config

    return make, handler


run = invoke


def import_sample(runner, config) -> list[dict[str, str]]:
    run(runner, config, "subscribers", "import", str(SAMPLE))
    with SAMPLE.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def outbox_rows(config: Path) -> list[sa.Row]:
    engine = sa.create_engine(f"sqlite:///{config.parent / 'newsletter.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.outbox).order_by(t.outbox.c.id)).all()
    engine.dispose()
    return rows


def test_every_subscriber_gets_one_message_of_their_group(setup, runner):
    """Each active subscriber receives exactly one message, showing in full exactly their areas' papers."""
    make, handler = setup
    config = make()
    sample = import_sample(runner, config)
    out = run(runner, config, "send", ISSUE).output
    issue = load_issue(REPO / "issues" / f"{ISSUE}.toml", AREAS)
    assert sorted(handler.received) == sorted(r["email"].casefold() for r in sample)
    assert set(handler.received.values()) == {1}
    for rcpt, data in handler.messages:
        areas = next(r["areas"] for r in sample if r["email"].casefold() == rcpt.casefold())
        featured, others = split_papers(issue, [a for a in areas.split(";") if a] or AREAS)
        text = parse(data).get_body(("plain",)).get_content()
        flat = " ".join(text.split())  # the plain-text part wraps long titles at 72 columns
        for paper in featured:
            assert paper.sections[0].body.split("\n")[0][:60] in text.replace("\n", " ") or \
                paper.sections[0].body[:40] in text
        for paper in others:
            assert paper.title in flat and paper.sections[0].body[:40] not in text
    assert f"{ISSUE}: sent" in out
    report = json.loads(run(runner, config, "report", ISSUE, "--json").output)
    assert report["state"] == "sent" and report["failures"] == []
    assert report["counts"] == {"queued": 0, "sending": 0, "sent": 25, "deferred": 0, "failed": 0, "skipped": 0,
                                "unknown": 0}


@pytest.mark.parametrize("commit_every", [1, 8])  # 8: the database makes the Message-ID as it claims the rows
def test_each_outbox_row_keeps_the_message_id_its_subscriber_received(setup, runner, commit_every):
    """The outbox row holds the Message-ID of the message the relay got, so a bounce or a log line can be traced."""
    make, handler = setup
    config = make(f"commit_every = {commit_every}")
    import_sample(runner, config)
    run(runner, config, "send", ISSUE)
    got = {rcpt.casefold(): parse(data)["Message-ID"] for rcpt, data in handler.messages}
    kept = {r.email.casefold(): r.message_id for r in outbox_rows(config)}
    assert kept == got and len(set(got.values())) == len(got)


def test_headers_parse_back_with_pythons_email_parser(setup, runner):
    """From, To, Subject, Date, Message-ID, List-Id, List-Unsubscribe(+Post) and both parts parse back."""
    make, handler = setup
    config = make()
    run(runner, config, "subscribers", "add", "zoe@example.org", "--name", "Zoë Ünïcode-Long", "--areas", "RL")
    run(runner, config, "send", ISSUE)
    (rcpt, data), = handler.messages
    msg = parse(data)
    assert msg["To"].addresses[0].display_name == "Zoë Ünïcode-Long"
    assert msg["To"].addresses[0].addr_spec == "zoe@example.org"
    assert msg["From"].addresses[0].addr_spec and msg["Subject"] and msg["Date"].datetime.tzinfo
    assert msg["Message-ID"].startswith("<") and msg["List-Id"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = [u.strip().strip("<>") for u in msg["List-Unsubscribe"].split(",")]
    assert https.startswith("https://news.example.org/unsubscribe/") and mailto.startswith("mailto:")
    sub_id = outbox_rows(config)[0].subscriber_id
    assert Links(SECRET, "https://news.example.org").verify(UNSUBSCRIBE, https.rsplit("/", 1)[1]) == sub_id
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert "Zoë" in msg.get_body(("plain",)).get_content()
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_4xx_answers_are_deferred_then_retried(setup, runner):
    """421 and 451 answers defer the row with backoff; the retry delivers; each attempt is logged."""
    make, handler = setup
    config = make()
    run(runner, config, "subscribers", "add", "a@example.org")
    run(runner, config, "subscribers", "add", "b@example.org")
    handler.data.extend(["421 4.3.2 try later", "451 4.7.1 greylisted"])
    run(runner, config, "send", ISSUE)
    assert handler.received == {"a@example.org": 1, "b@example.org": 1}
    rows = outbox_rows(config)
    # one thread claims both rows (a batch is 50): each is deferred once, then sent
    assert [r.state for r in rows] == ["sent", "sent"] and [r.attempts for r in rows] == [2, 2]
    engine = sa.create_engine(f"sqlite:///{config.parent / 'newsletter.db'}")
    with engine.connect() as conn:
        codes = sorted(conn.scalars(sa.select(t.delivery_attempts.c.code)))
    engine.dispose()
    assert codes == [250, 250, 421, 451]


def test_550_fails_one_row_and_marks_the_hard_bounce(setup, runner):
    """A 550 user-unknown fails that row with its answer kept and marks the subscriber bounced."""
    make, handler = setup
    config = make()
    for name in ("ok", "gone"):
        run(runner, config, "subscribers", "add", f"{name}@example.org")
    handler.rcpt["gone@example.org"] = deque(["550 5.1.1 <gone@example.org>: User unknown"])
    run(runner, config, "send", ISSUE)
    report = json.loads(run(runner, config, "report", ISSUE, "--json").output)
    assert report["issue"] == ISSUE
    assert report["counts"] == {"queued": 0, "sending": 0, "sent": 1, "deferred": 0, "failed": 1, "skipped": 0,
                                "unknown": 0}
    assert report["failures"] == [{"email": "gone@example.org", "code": 550,
                                   "answer": "5.1.1 <gone@example.org>: User unknown"}]
    listed = run(runner, config, "subscribers", "list", "--status", "bounced").output
    assert "gone@example.org" in listed
    assert handler.received == {"ok@example.org": 1}


def test_dropped_line_before_the_final_dot_is_retried(setup, runner):
    """The server closing the line before the final dot (here at RCPT) defers the row; the retry delivers it once."""
    make, handler = setup
    config = make()
    run(runner, config, "subscribers", "add", "a@example.org")
    handler.rcpt["a@example.org"] = deque(["drop"])
    run(runner, config, "send", ISSUE)
    assert handler.received == {"a@example.org": 1}
    (row,) = outbox_rows(config)
    assert row.state == "sent" and row.attempts == 2


def test_stalled_server_times_out_and_is_retried(setup, runner):
    """A server that answers nothing past the timeout before the final dot defers the row; the next try delivers."""
    make, handler = setup
    config = make(timeout="1")
    handler.stall_seconds = 2.5
    run(runner, config, "subscribers", "add", "a@example.org")
    handler.rcpt["a@example.org"] = deque(["stall"])
    run(runner, config, "send", ISSUE)
    (row,) = outbox_rows(config)
    assert row.state == "sent" and row.attempts == 2 and handler.received == {"a@example.org": 1}


def test_4xx_until_max_attempts_fails_the_row(setup, runner):
    """A row that keeps getting 4xx is failed after max_attempts, with the last answer kept."""
    make, handler = setup
    config = make()
    run(runner, config, "subscribers", "add", "a@example.org")
    handler.data.extend(["452 4.2.2 mailbox full"] * 3)
    run(runner, config, "send", ISSUE)
    (row,) = outbox_rows(config)
    assert (row.state, row.attempts, row.last_code) == ("failed", 3, 452) and not handler.received


def test_starttls_auth_send_and_refused_login_pauses(make_config, runner, tmp_path, monkeypatch):
    """A wrong password pauses the send with a one-line reason (no password shown), rows stay queued;
    with the right one (from the env var) the send resumes over STARTTLS + AUTH and completes."""
    kwargs, ca_file = tls_relay(tmp_path, lambda _user, password: password == b"s3cret-pw")
    with smtp_server(**kwargs) as (handler, port):
        config = make_config(f"""
            [smtp]
            port = {port}
            security = "starttls"
            username = "editor"
            ca_file = "{ca_file}"
            retry_seconds = 0.05
            """)
        run(runner, config, "subscribers", "add", "a@example.org")
        run(runner, config, "subscribers", "add", "b@example.org")
        monkeypatch.setenv("NEWSLETTER_SMTP__PASSWORD", "wrong-pw")
        paused = run(runner, config, "send", ISSUE, code=1)
        assert "refused the login: 535" in paused.output and "wrong-pw" not in paused.output
        assert [r.state for r in outbox_rows(config)] == ["queued", "queued"]
        monkeypatch.setenv("NEWSLETTER_SMTP__PASSWORD", "s3cret-pw")
        run(runner, config, "send", ISSUE)
    assert handler.received == {"a@example.org": 1, "b@example.org": 1}


def test_name_with_crlf_or_html_never_reaches_a_header_or_raw_html(setup, runner):
    """A stored name holding CR/LF and HTML gives no extra header and is escaped in the HTML part."""
    make, handler = setup
    config = make()
    run(runner, config, "init")
    engine = store.engine_for(f"sqlite:///{config.parent / 'newsletter.db'}")
    with engine.begin() as conn:  # written directly: the commands themselves refuse such a name
        sub = audience.add(conn, "eve@example.org", "Eve", "", AREAS)
        conn.execute(t.subscribers.update().where(t.subscribers.c.id == sub.id).values(
            name="Eve\r\nBcc: victim@example.com\r\n<script>alert(1)</script>"))
    engine.dispose()
    run(runner, config, "send", ISSUE)
    (rcpt, data), = handler.messages
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head and rcpt == "eve@example.org"
    msg = parse(data)
    assert msg["Bcc"] is None and msg["To"].addresses[0].addr_spec == "eve@example.org"
    html = msg.get_body(("html",)).get_content()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_dry_run_and_test_copy_leave_the_outbox_alone(setup, runner):
    """--dry-run counts per group and sends nothing; --test-to sends one [Test] copy, no outbox rows."""
    make, handler = setup
    config = make()
    import_sample(runner, config)
    dry = run(runner, config, "send", ISSUE, "--dry-run").output
    assert "Would send 25 messages; 0 skipped." in dry and not handler.messages
    run(runner, config, "send", ISSUE, "--test-to", "editor@example.org", "--areas", "Vision")
    (rcpt, data), = handler.messages
    assert rcpt == "editor@example.org" and parse(data)["Subject"].startswith("[Test] ")
    assert outbox_rows(config) == []


def test_second_send_sends_nothing_more(setup, runner):
    """Running send again after it finished delivers nothing: a sent row is never sent again."""
    make, handler = setup
    config = make()
    import_sample(runner, config)
    run(runner, config, "send", ISSUE)
    first = sum(handler.received.values())
    run(runner, config, "send", ISSUE)
    assert sum(handler.received.values()) == first == 25


def test_subscriber_who_left_before_their_turn_is_skipped(setup, runner):
    """A subscriber who unsubscribes after the outbox was made is not mailed when the send resumes."""
    make, handler = setup
    config = make()
    run(runner, config, "subscribers", "add", "stay@example.org")
    run(runner, config, "subscribers", "add", "leave@example.org")
    handler.data.append("451 4.3.0 later")  # first try of the first row is deferred
    run(runner, config, "send", ISSUE, "--no-wait")
    run(runner, config, "subscribers", "unsubscribe", "stay@example.org")
    run(runner, config, "send", ISSUE)
    states = {r.email: r.state for r in outbox_rows(config)}
    assert states == {"stay@example.org": "skipped", "leave@example.org": "sent"}


@pytest.mark.parametrize("commit_every", [1, 8])
def test_sigkill_mid_send_then_resume_sends_no_address_twice(setup, runner, tmp_path, commit_every):
    """A send killed with SIGKILL mid-run resumes: nobody gets two messages, unknown ≤ connections × commit_every."""
    make, handler = setup
    config = make(f"commit_every = {commit_every}", connections="3")
    run(runner, config, "init")
    people = tmp_path / "people.csv"
    people.write_text("email,name,areas\n" + "".join(f"p{i}@example.org,P {i},\n" for i in range(240)),
                      encoding="utf-8")
    run(runner, config, "subscribers", "import", str(people))
    handler.delay = 0.02
    env = {**os.environ, "NEWSLETTER_CONFIG": str(config)}
    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "send", ISSUE], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while sum(handler.received.values()) < 40 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    handler.delay = 0
    before = sum(handler.received.values())
    assert 40 <= before < 240
    resumed = run(runner, config, "send", ISSUE).output
    rows = outbox_rows(config)
    unknown = [r.email for r in rows if r.state == "unknown"]
    assert ("marked unknown" in resumed) == bool(unknown)
    assert max(handler.received.values()) == 1
    assert len(unknown) <= 3 * commit_every
    missing = {r.email for r in rows} - set(handler.received)
    assert missing <= set(unknown)
    assert sum(1 for r in rows if r.state == "sent") + len(unknown) == 240


def test_report_of_unsent_issue_is_one_line(setup, runner):
    """`report` for an issue never sent says so in one line."""
    make, _ = setup
    config = make()
    result = run(runner, config, "report", "2026-05-17", code=1)
    assert "has not been sent" in result.output and len(result.output.strip().splitlines()) == 1


def test_demo_sends_the_latest_issue_to_its_own_server(runner, tmp_path):
    """`newsletter demo` imports the sample list, sends the latest issue and leaves one .eml per message."""
    out = tmp_path / "demo"
    result = run(runner, REPO / "config.toml", "demo", "--out", str(out))
    emls = list((out / "mail").glob("*.eml"))
    assert emls and f"{len(emls)} messages received, saved as .eml files in {out / 'mail'}" in result.output
    assert "Imported 25 subscribers" in result.output and ": sent" in result.output
    assert all(parse(p.read_bytes())["List-Unsubscribe"] for p in emls)


def test_dkim_signature_verifies_over_the_subscribers_copy(setup, runner, tmp_path):
    """With a DKIM key configured every message carries a signature that dkimpy verifies, List-Unsubscribe included."""
    import base64

    import dkim
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    (tmp_path / "dkim.pem").write_bytes(pem)
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    make, handler = setup
    config = make(f'dkim_key_file = "{tmp_path / "dkim.pem"}"\ndkim_selector = "nl2026"')
    run(runner, config, "subscribers", "add", "dot@example.org", "--name", ".Dot Leading")
    run(runner, config, "send", ISSUE)
    (_, data), = handler.messages

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"nl2026._domainkey.example.org."
        return b"v=DKIM1; k=rsa; p=" + public

    assert data.startswith(b"DKIM-Signature:") and b"list-unsubscribe" in data.split(b"\r\n\r\n")[0].lower()
    assert dkim.verify(data, dnsfunc=dns)
    assert not dkim.verify(data.replace(b"Subject:", b"Subject: x", 1), dnsfunc=dns)


def test_unreadable_dkim_key_is_one_line(setup, runner, tmp_path):
    """A DKIM key file that is missing is reported in one line naming the key, and nothing is sent."""
    make, handler = setup
    config = make(f'dkim_key_file = "{tmp_path / "missing.pem"}"\ndkim_selector = "s"')
    run(runner, config, "subscribers", "add", "a@example.org")
    result = run(runner, config, "send", ISSUE, code=1)
    assert "smtp.dkim_key_file: cannot read" in result.output and not handler.messages
