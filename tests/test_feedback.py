"""The feedback loop (#14) end to end without an MTA: VERP on every message, notices in through files,
SMTP and LMTP, the policy (hard, soft, complaint, auto-reply, mailto unsubscribe) and its guards."""

from __future__ import annotations

import json
import smtplib
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter import audience, store
from newsletter.config import load_config
from newsletter.feedback import receive
from newsletter.feedback.ingest import Feedback, Notice
from newsletter.links import links_for, verp_address, verp_token_of
from newsletter.mailsink import free_port
from newsletter.store import tables as t

from .conftest import ManualClock, invoke, parse
from .notices import arf, dsn, plain
from .smtpd import smtp_server

ISSUE = "2026-05-28"
BOUNCES = "bounces@bounces.example.org"
PEOPLE = ["hard@example.org", "soft@example.org", "angry@example.org", "away@example.org", "leaving@example.org"]


@pytest.fixture
def sent(make_config, runner, tmp_path):
    """An issue sent with [bounces] address set to five subscribers; (config path, handler, rows by email)."""
    with smtp_server() as (handler, port):
        config = make_config(f"""
            [newsletter]
            secret_key = "feedback-secret-0123456789abcdef0123456789"
            base_url = "https://news.example.org"
            [smtp]
            port = {port}
            [bounces]
            address = "{BOUNCES}"
            soft_threshold = 3
            """)
        for address in PEOPLE:
            invoke(runner, config, "subscribers", "add", address)
        invoke(runner, config, "send", ISSUE)
    engine = sa.create_engine(load_config(config).database_url)
    with engine.connect() as conn:
        rows = {r.email: r for r in conn.execute(sa.select(t.outbox))}
    engine.dispose()
    return config, handler, rows


def status_of(config: Path, email: str) -> tuple[str, str | None, int]:
    engine = sa.create_engine(load_config(config).database_url)
    with engine.connect() as conn:
        s = t.subscribers.c
        found = conn.execute(sa.select(s.status, s.status_reason, s.bounce_score).where(s.email == email)).one()
    engine.dispose()
    return found.status, found.status_reason, found.bounce_score


def test_every_copy_carries_a_signed_verp_sender_and_a_signed_unsubscribe_mailto(sent):
    """Each message's envelope sender is bounces+<token>@ naming its own outbox row; its List-Unsubscribe
    mailto is a signed address on the same domain naming its subscriber."""
    config, handler, rows = sent
    links = links_for(load_config(config), store.engine_for(load_config(config).database_url))
    for rcpt, data in handler.messages:
        token = verp_token_of(handler.senders[rcpt], BOUNCES)
        assert token is not None and links.verify_verp(token) == ("r", rows[rcpt].id)
        mailto = parse(data)["List-Unsubscribe"].split(",")[1].strip(" <>")
        address = mailto.removeprefix("mailto:").split("?")[0]
        assert links.verify_verp(verp_token_of(address, BOUNCES) or "") == ("u", rows[rcpt].subscriber_id)


def feedback_for(config: Path, clock: ManualClock | None = None) -> Feedback:
    cfg = load_config(config)
    return Feedback(cfg, store.engine_for(cfg.database_url), **({"clock": clock} if clock else {}))


def test_the_policy_suppresses_scores_unsubscribes_and_ignores_as_it_says(sent, runner):
    """Hard bounce: suppressed with its reason; soft: scored, at most a point a day, suppressed at the threshold;
    ARF complaint: unsubscribed and suppressed; vacation reply: nothing; mail to the List-Unsubscribe address:
    exactly that subscriber unsubscribed."""
    config, handler, rows = sent
    links = links_for(load_config(config), store.engine_for(load_config(config).database_url))
    to = {email: verp_address(BOUNCES, links.verp_token("r", row.id)) for email, row in rows.items()}
    clock = ManualClock()
    fb = feedback_for(config, clock)
    fb.handle(Notice(dsn(to["hard@example.org"], "hard@example.org", "5.1.1", "550 5.1.1 User unknown"), "t"))
    assert status_of(config, "hard@example.org")[:2] == ("bounced", "5.1.1 550 5.1.1 User unknown")
    soft = dsn(to["soft@example.org"], "soft@example.org", "5.2.2", "552 5.2.2 Mailbox full")
    for day in range(3):
        fb.handle(Notice(soft, f"soft day {day}"))  # the same row again: a replay, not counted again
        clock.at += timedelta(days=1)
    assert status_of(config, "soft@example.org") == ("active", None, 1)  # one message, counted once
    fb.handle(Notice(arf(BOUNCES, "angry@example.org", rows["angry@example.org"].message_id), "fbl"))
    assert status_of(config, "angry@example.org")[0] == "unsubscribed"
    fb.handle(Notice(plain(to["away@example.org"], "away@example.org", "Out of Office: back Monday",
                           "I am away.", Auto_Submitted="auto-replied"), "vacation"))
    assert status_of(config, "away@example.org")[0] == "active"
    mailto = verp_address(BOUNCES, links.verp_token("u", rows["leaving@example.org"].subscriber_id))
    fb.handle(Notice(plain(mailto, "leaving@example.org", "unsubscribe", "please"), "mailto"))
    assert status_of(config, "leaving@example.org")[0] == "unsubscribed"
    assert status_of(config, "away@example.org")[0] == "active"


def test_soft_bounces_of_different_messages_suppress_at_the_threshold_one_point_a_day(sent):
    """Three soft bounces of three messages on three days reach soft_threshold = 3; two on one day count once."""
    config, _, rows = sent
    cfg = load_config(config)
    engine = store.engine_for(cfg.database_url)
    clock = ManualClock()
    sid = rows["soft@example.org"].subscriber_id
    with engine.begin() as conn:
        scores = []
        for hours in (0, 1, 24, 48):
            clock.at = ManualClock().at + timedelta(hours=hours)
            scores.append(audience.add_soft_bounce(conn, sid, clock.now(), timedelta(days=7), 3, "552 5.2.2 full"))
    assert scores == [(1, False), (1, False), (2, False), (3, True)]
    assert status_of(config, "soft@example.org")[0] == "bounced"


def test_forged_unknown_and_never_sent_notices_change_nothing_and_are_logged(sent):
    """A token that does not verify, a row that was never sent: each is logged as ignored; an address named without
    proof: unproven; nobody is suppressed."""
    config, _, rows = sent
    fb = feedback_for(config)
    forged = verp_address(BOUNCES, f"r{rows['hard@example.org'].id}-aaaaaaaaaa")
    never = verp_address(BOUNCES, fb.links.verp_token("r", 999999))
    done = [fb.handle(Notice(dsn(forged, "hard@example.org", "5.1.1", "550 user unknown"), "forged")),
            fb.handle(Notice(dsn(never, "hard@example.org", "5.1.1", "550 user unknown"), "never")),
            fb.handle(Notice(dsn(BOUNCES, "stranger@example.org", "5.1.1", "550 user unknown"), "stranger"))]
    assert [d.actions[0].split(":")[0] for d in done] == ["ignored", "ignored", "unproven"]
    assert all(status_of(config, e)[0] == "active" for e in PEOPLE)


def test_a_notice_saved_with_blank_lines_above_its_headers_acts_by_its_verp_token(sent):
    """A notice file that starts with blank lines (saved or pasted so) is read from its first header: its VERP
    token is found and its subscriber suppressed, as without them."""
    config, _, rows = sent
    fb = feedback_for(config)
    to = verp_address(BOUNCES, fb.links.verp_token("r", rows["hard@example.org"].id))
    done = fb.handle(Notice(b"\n \r\n" + dsn(to, "hard@example.org", "5.1.1", "550 5.1.1 User unknown"), "pasted"))
    assert (done.kind, done.recipients[0]["reason"]) == ("bounce", "userunknown")
    assert status_of(config, "hard@example.org")[0] == "bounced"


def test_ingest_dry_run_json_reads_files_folders_and_mbox(sent, runner, tmp_path):
    """`bounces ingest --dry-run --json` prints one object per message (mbox messages as path#N), each recipient with
    its class and Sisimai's reason, and changes nothing."""
    config, _, _ = sent
    folder = tmp_path / "notices"
    folder.mkdir()
    (folder / "hard.eml").write_bytes(dsn(BOUNCES, "hard@example.org", "5.1.1", "550 5.1.1 User unknown"))
    (folder / "reply.eml").write_bytes(plain(BOUNCES, "ada@example.org", "Re: digest", "Thanks!"))
    box = tmp_path / "box.mbox"
    box.write_bytes(b"From MAILER-DAEMON Thu May 28 09:00:00 2026\n" + arf(BOUNCES, "angry@example.org")
                    + b"\nFrom MAILER-DAEMON Thu May 28 09:00:01 2026\n"
                    + dsn(BOUNCES, "soft@example.org", "4.2.2", "452 4.2.2 Mailbox full", "delayed") + b"\n")
    out = invoke(runner, config, "bounces", "ingest", "--dry-run", "--json", str(folder), str(box)).output
    got = [json.loads(line) for line in out.splitlines()]
    assert [(g["source"], g["kind"]) for g in got] == [
        (str(folder / "hard.eml"), "bounce"), (str(folder / "reply.eml"), "not-bounce"),
        (f"{box}#1", "complaint"), (f"{box}#2", "bounce")]
    assert got[0]["recipients"] == [{"address": "hard@example.org", "class": "hard", "reason": "userunknown",
                                     "status": "5.1.1", "diagnostic": got[0]["recipients"][0]["diagnostic"]}]
    assert (got[3]["recipients"][0]["class"], got[3]["recipients"][0]["reason"]) == ("soft", "mailboxfull")
    assert got[2]["recipients"][0] | {"diagnostic": None} == {"address": "angry@example.org", "class": "hard",
                                                              "reason": "feedback", "status": None, "diagnostic": None}
    assert all(status_of(config, e)[0] == "active" for e in PEOPLE)


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_receive_answers_250_once_stored_and_applies_the_notice(sent, lmtp):
    """The listener takes a DSN over SMTP or LMTP, answers 250 after storing it, and the subscriber is suppressed."""
    config, _, rows = sent
    fb = feedback_for(config)
    port = free_port()
    server = receive.start(fb, "127.0.0.1", port, lmtp)
    try:
        to = verp_address(BOUNCES, fb.links.verp_token("r", rows["hard@example.org"].id))
        client = smtplib.LMTP("127.0.0.1", port) if lmtp else smtplib.SMTP("127.0.0.1", port)
        with client:
            refused = client.sendmail("", [to], dsn(to, "hard@example.org", "5.1.1", "550 5.1.1 User unknown"))
    finally:
        server.stop()
    assert refused == {} and status_of(config, "hard@example.org")[0] == "bounced"


def test_report_shows_what_came_back_beside_what_was_sent(sent, runner):
    """`report ISSUE --json` counts bounced, complained and unsubscribed with their rates; `bounces report`
    groups them by verdict and domain."""
    config, _, rows = sent
    fb = feedback_for(config)
    to = verp_address(BOUNCES, fb.links.verp_token("r", rows["hard@example.org"].id))
    fb.handle(Notice(dsn(to, "hard@example.org", "5.1.1", "550 5.1.1 User unknown"), "t"))
    fb.handle(Notice(arf(verp_address(BOUNCES, fb.links.verp_token("r", rows["angry@example.org"].id)),
                         "angry@example.org"), "fbl"))
    report = json.loads(invoke(runner, config, "report", ISSUE, "--json").output)
    assert report["feedback"] == {"bounced_hard": 1, "bounced_soft": 0, "complained": 1, "unsubscribed": 1}
    assert report["rates"]["complained"] == 0.2
    text = " ".join(invoke(runner, config, "report", ISSUE).output.split())  # rich wraps at the terminal width
    assert "complained 1 (20.00%)" in text and "above Gmail's 0.3% line" in text
    summary = json.loads(invoke(runner, config, "bounces", "report", "--issue", ISSUE, "--json").output)
    assert summary["by_kind"] == {"bounce": 1, "complaint": 1} and summary["by_class"] == {"hard": 1}
    assert summary["by_domain"] == [{"domain": "example.org", "hard": 1, "soft": 0, "complaints": 1}]


def test_the_receiver_survives_junk_huge_and_malformed_notices_and_logs_each(sent):
    """Binary junk, malformed MIME, a bounce quoting a 20 MB attachment and a DSN naming 1,000 strangers: each is
    answered 250 and logged with its verdict (the strangers as unproven), nobody is suppressed, and a real DSN after
    them still applies."""
    config, _, rows = sent
    fb = feedback_for(config)
    port = free_port()
    server = receive.start(fb, "127.0.0.1", port)
    blocks = "".join(f"Final-Recipient: rfc822; stranger{n}@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
                     for n in range(999))  # and the one dsn() writes: 1,000
    many = dsn(BOUNCES, "stranger@example.net", "5.1.1", "550 5.1.1 User unknown").replace(
        b"Final-Recipient:", blocks.encode() + b"Final-Recipient:", 1)
    huge = dsn(BOUNCES, "stranger@example.net", "5.2.2", "552 5.2.2 over quota").replace(
        b"--B1--", b"--B1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + (b"QUJD" * 19 + b"\r\n") * 270_000 + b"--B1--")
    broken = b"Content-Type: multipart/report; boundary=\"X\"\r\nFrom: <>\r\n\r\n--X\r\nContent-Type: message/deliv"
    junk = bytes(range(256)) * 64
    hard = verp_address(BOUNCES, fb.links.verp_token("r", rows["hard@example.org"].id))
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            for raw in (junk, broken, huge, many):
                assert client.sendmail("", [BOUNCES], raw) == {}
            client.sendmail("", [hard], dsn(hard, "hard@example.org", "5.1.1", "550 5.1.1 User unknown"))
    finally:
        server.stop()
    engine = store.engine_for(load_config(config).database_url)
    with engine.connect() as conn:
        logged = conn.execute(sa.select(t.bounce_log.c.kind, t.bounce_log.c.action, sa.func.length(t.bounce_log.c.raw))
                              .order_by(t.bounce_log.c.id)).all()
    engine.dispose()
    assert [k for k, _, _ in logged] == ["unknown", "unknown", "bounce", "bounce", "bounce"]
    assert "unproven: 1 named without a VERP token, Message-ID or signed link the engine sent to them: " \
           "stranger@example.net" in logged[2][1]
    assert logged[2][2] == 64 << 10  # the raw notice of a stranger kept, cut at 64 KiB
    assert "unproven: 1000 named without a VERP token, Message-ID or signed link the engine sent to them: " \
           "stranger0@example.net, " in logged[3][1]
    assert "suppressed" in logged[4][1]
    assert [status_of(config, e)[0] for e in PEOPLE] == ["bounced", "active", "active", "active", "active"]


def test_ingest_stores_the_rest_when_the_database_refuses_one_notice(sent, runner, tmp_path):
    """Of a folder of notices stored in one batch, the one the database refuses is reported with its reason (exit 1)
    and the others are applied: the batch is redone one by one, nothing is half-written."""
    config, _, rows = sent
    fb = feedback_for(config)
    engine = store.engine_for(load_config(config).database_url)
    with engine.begin() as conn:  # as a full disk would, for this one notice
        conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON bounce_log WHEN NEW.diagnostic LIKE "
                             "'%poison%' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    engine.dispose()
    folder = tmp_path / "notices"
    folder.mkdir()
    for name, email, diagnostic in (("1", "hard@example.org", "550 5.1.1 User unknown"),
                                    ("2", "soft@example.org", "550 5.1.1 poison"),
                                    ("3", "angry@example.org", "550 5.1.1 User unknown")):
        to = verp_address(BOUNCES, fb.links.verp_token("r", rows[email].id))
        (folder / f"{name}.eml").write_bytes(dsn(to, email, "5.1.1", diagnostic))
    out = invoke(runner, config, "bounces", "ingest", str(folder), code=1).output
    assert f"{folder / '2.eml'}: not stored: IntegrityError" in out
    assert [status_of(config, e)[0] for e in PEOPLE[:3]] == ["bounced", "active", "bounced"]


def test_raw_notices_are_forgotten_after_keep_raw_days(sent):
    """A notice's raw bytes are kept [bounces] keep_raw_days (30), then forgotten; its log line stays."""
    config, _, _ = sent
    clock = ManualClock()
    fb = feedback_for(config, clock)
    fb.handle(Notice(plain(BOUNCES, "ada@example.org", "Re: digest", "Thanks!"), "t"))
    engine = store.engine_for(load_config(config).database_url)
    raw = sa.select(t.bounce_log.c.raw)
    clock.at += timedelta(days=29)
    assert fb.expire_raw() == 0
    clock.at += timedelta(days=2)
    assert fb.expire_raw() == 1
    with engine.connect() as conn:
        assert conn.execute(raw).all() == [(None,)]
    engine.dispose()
