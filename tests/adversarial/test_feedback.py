"""Notices written by a stranger: nothing that comes back to the bounce address changes a subscriber unless it
carries proof the engine issued (a VERP token, or a Message-ID, VERP address or signed link the engine sent to
that very address); the rest is logged as unproven for a person. Storage, rate and logs are bounded too."""

from __future__ import annotations

import json
import logging
import smtplib

import pytest
import sqlalchemy as sa

from newsletter import store
from newsletter.config import load_config
from newsletter.feedback import receive
from newsletter.feedback.ingest import Notice
from newsletter.links import verp_address
from newsletter.mailsink import free_port
from newsletter.store import tables as t
from tests.conftest import ManualClock, invoke
from tests.notices import arf, dsn, plain
from tests.test_feedback import BOUNCES, ISSUE, PEOPLE, feedback_for, status_of

VICTIM = "hard@example.org"


def logged(config) -> list[sa.Row]:  # type: ignore[no-untyped-def]
    engine = store.engine_for(load_config(config).database_url)
    with engine.connect() as conn:
        b = t.bounce_log.c
        rows = conn.execute(sa.select(b.kind, b.proof, b.action, b.issue_id, sa.func.length(b.raw).label("raw"))
                            .order_by(b.id)).all()
    engine.dispose()
    return rows


def exim(rcpts: list[str]) -> bytes:
    """An Exim-style text bounce: X-Failed-Recipients and the failed addresses in its words, no DSN part."""
    lines = "\n".join(f"  {r}\n    SMTP error from remote mail server after RCPT TO:<{r}>:\n    550 5.1.1 No such user"
                      for r in rcpts)
    return (f"From: Mail Delivery System <Mailer-Daemon@mx.example.net>\nTo: {BOUNCES}\n"
            f"Subject: Mail delivery failed: returning message to sender\nX-Failed-Recipients: {', '.join(rcpts)}\n"
            f"Auto-Submitted: auto-replied\n\nThis message was created automatically by mail delivery software.\n\n"
            f"A message that you sent could not be delivered to one or more of its recipients. This is a permanent "
            f"error. The following address(es) failed:\n\n{lines}\n").replace("\n", "\r\n").encode()


@pytest.mark.attack(edge="feedback", attack="hand-written DSN naming a subscriber, sent to the bounce address",
                    held="unproven: logged for a person, nobody suppressed")
def test_a_forged_dsn_suppresses_nobody(sent, runner):
    """A DSN with Final-Recipient and Status 5.1.1 but no token or quoted Message-ID of ours changes nobody, is
    logged as unproven and counted so in `bounces report`."""
    config, _, _ = sent
    feedback_for(config).handle(Notice(dsn(BOUNCES, VICTIM, "5.1.1", "550 5.1.1 User unknown"), "forged"))
    assert status_of(config, VICTIM)[0] == "active"
    assert [(r.kind, r.proof) for r in logged(config)] == [("bounce", "none")]
    report = json.loads(invoke(runner, config, "bounces", "report", "--json").output)
    assert report["unproven"] == 1 and report["for_a_person"][0]["action"].startswith("unproven: 1 named")


@pytest.mark.attack(edge="feedback", attack="forged DSN sent over SMTP to postmaster@ of the bounce domain",
                    held="unproven, nobody suppressed")
def test_a_forged_dsn_to_postmaster_suppresses_nobody(sent):
    """The receiver takes mail for any address of the bounce domain; a forged DSN to postmaster@ is unproven."""
    config, _, _ = sent
    port = free_port()
    server = receive.start(feedback_for(config), "127.0.0.1", port)
    try:
        with smtplib.SMTP("127.0.0.1", port) as client:
            postmaster = "postmaster@bounces.example.org"
            client.sendmail("", [postmaster], dsn(postmaster, VICTIM, "5.1.1", "550 5.1.1 User unknown"))
    finally:
        server.stop()
    assert status_of(config, VICTIM)[0] == "active" and logged(config)[0].proof == "none"


@pytest.mark.attack(edge="feedback", attack="ARF report naming Original-Rcpt-To of a subscriber",
                    held="unproven, the subscriber stays subscribed")
def test_a_forged_complaint_unsubscribes_nobody(sent):
    """An abuse report that only names the address (no Message-ID the engine sent to it) unsubscribes nobody."""
    config, _, _ = sent
    feedback_for(config).handle(Notice(arf(BOUNCES, "angry@example.org"), "fbl"))
    assert status_of(config, "angry@example.org")[0] == "active" and logged(config)[0].proof == "none"


@pytest.mark.attack(edge="feedback", attack="Exim-style X-Failed-Recipients text bounce",
                    held="unproven, nobody suppressed")
def test_a_forged_exim_bounce_suppresses_nobody(sent):
    """A text bounce whose only evidence is X-Failed-Recipients and the address in its words changes nobody."""
    config, _, _ = sent
    done = feedback_for(config).handle(Notice(exim([VICTIM]), "exim"))
    assert done.kind == "bounce" and done.recipients[0]["address"] == VICTIM
    assert status_of(config, VICTIM)[0] == "active" and logged(config)[0].proof == "none"


@pytest.mark.attack(edge="feedback", attack="one DSN listing every subscriber",
                    held="all unproven in one log line, nobody suppressed")
def test_one_notice_naming_the_whole_list_suppresses_nobody(sent):
    """A notice that lists every subscriber (up to the classifier's 1,000) suppresses none of them."""
    config, _, _ = sent
    blocks = "".join(f"Final-Recipient: rfc822; {a}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n" for a in PEOPLE[1:])
    raw = dsn(BOUNCES, PEOPLE[0], "5.1.1", "550 5.1.1 User unknown").replace(
        b"Final-Recipient:", blocks.encode() + b"Final-Recipient:", 1)
    done = feedback_for(config).handle(Notice(raw, "many"))
    assert len(done.recipients) == len(PEOPLE) and done.actions[0].startswith(f"unproven: {len(PEOPLE)} named")
    assert [status_of(config, e)[0] for e in PEOPLE] == ["active"] * len(PEOPLE)


@pytest.mark.attack(edge="feedback", attack="forged DSN piped to `bounces ingest` on stdin",
                    held="unproven, nobody suppressed")
def test_a_forged_dsn_on_stdin_suppresses_nobody(sent, runner):
    """`bounces ingest` reading standard input applies the same proof rule as the receiver."""
    config, _, _ = sent
    result = runner.invoke(__import__("newsletter.cli", fromlist=["cli"]).cli,
                           ["--config", str(config), "bounces", "ingest"],
                           input=dsn(BOUNCES, VICTIM, "5.1.1", "550 5.1.1 User unknown"))
    assert result.exit_code == 0 and "stdin: bounce: unproven: 1 named" in result.output
    assert status_of(config, VICTIM)[0] == "active"


@pytest.mark.attack(edge="feedback", attack="DSN naming a victim, quoting the Message-ID of another's copy",
                    held="a Message-ID proves only the address it was sent to")
def test_a_message_id_proves_only_its_own_address(sent):
    """A stranger who got their own copy cannot quote its Message-ID in a DSN about someone else."""
    config, _, rows = sent
    stolen = rows["soft@example.org"].message_id
    feedback_for(config).handle(Notice(dsn(BOUNCES, VICTIM, "5.1.1", "550 5.1.1 User unknown", message_id=stolen),
                                       "stolen"))
    assert status_of(config, VICTIM)[0] == "active" and status_of(config, "soft@example.org")[0] == "active"
    assert logged(config)[0].proof == "none"


@pytest.mark.attack(edge="feedback", attack="guessed Message-ID and forged unsubscribe link quoted in a DSN",
                    held="an unknown Message-ID or bad signature proves nothing")
def test_guessed_proofs_prove_nothing(sent):
    """A Message-ID the engine never sent and an unsubscribe link with a forged signature are no proof."""
    config, _, rows = sent
    sid = rows[VICTIM].subscriber_id
    raw = dsn(BOUNCES, VICTIM, "5.1.1", "550 5.1.1 User unknown", message_id="<0123456789abcdef@example.org>")
    raw = raw.replace(b"Subject: Top-conf", f"List-Unsubscribe: <https://news.example.org/unsubscribe/{sid}."
                      f"AAAAAAAAAAAAAAAAAAAAAAAAAAA>\r\nSubject: Top-conf".encode())
    feedback_for(config).handle(Notice(raw, "guessed"))
    assert status_of(config, VICTIM)[0] == "active" and logged(config)[0].proof == "none"


@pytest.mark.attack(edge="feedback", attack="address-only bounce missing from the issue's report",
                    held="a DSN proven by its quoted Message-ID counts against its issue")
def test_a_proven_notice_without_token_counts_against_its_issue(sent, runner):
    """A DSN without VERP that quotes the Message-ID of the victim's copy suppresses it, and `report ISSUE` and
    `bounces report --issue` count it as a hard bounce of that issue."""
    config, _, rows = sent
    fb = feedback_for(config)
    fb.handle(Notice(dsn(BOUNCES, VICTIM, "5.1.1", "550 5.1.1 User unknown", message_id=rows[VICTIM].message_id),
                     "proven"))
    assert status_of(config, VICTIM)[0] == "bounced" and logged(config)[0].proof == "message-id"
    report = json.loads(invoke(runner, config, "report", ISSUE, "--json").output)
    assert report["feedback"]["bounced_hard"] == 1
    summary = json.loads(invoke(runner, config, "bounces", "report", "--issue", ISSUE, "--json").output)
    assert summary["by_class"] == {"hard": 1}


@pytest.mark.attack(edge="feedback", attack="unknown notices kept 365 days at keep_raw_days = 0",
                    held="no raw text is kept at 0, whatever the verdict")
def test_keep_raw_days_zero_keeps_no_raw_text(sent, make_config):
    """At `keep_raw_days = 0` an unknown notice's raw text is not stored either."""
    config, _, _ = sent
    text = config.read_text().replace("soft_threshold = 3", "soft_threshold = 3\nkeep_raw_days = 0")
    config.write_text(text)
    feedback_for(config).handle(Notice(b"From: <>\r\nSubject: Undelivered Mail\r\n\r\n?", "junk"))
    assert [(r.kind, r.raw) for r in logged(config)] == [("unknown", None)]


@pytest.mark.attack(edge="feedback", attack="many junk notices of 1.2 MB to fill the database",
                    held="a stranger's raw text is cut to 64 KiB, and a daily byte budget stops it")
def test_junk_cannot_fill_the_database(sent):
    """Twenty 1.2 MB junk notices keep at most 64 KiB each, and none past `raw_bytes_per_day`."""
    config, _, _ = sent
    config.write_text(config.read_text().replace("soft_threshold = 3", f"soft_threshold = 3\n"
                                                 f"raw_bytes_per_day = {5 * (64 << 10)}"))
    fb = feedback_for(config)
    junk = b"From: <>\r\nSubject: Undelivered Mail Returned to Sender\r\n\r\n" + b"x" * 1_200_000
    for n in range(20):
        fb.handle(Notice(junk, f"junk {n}"))
    kept = [r.raw for r in logged(config)]
    assert kept[:5] == [64 << 10] * 5 and kept[5:] == [None] * 15


@pytest.mark.attack(edge="feedback", attack="one client flooding `bounces receive`",
                    held="past receive_per_minute it is told 450 until the minute has passed")
def test_the_receiver_limits_each_client(sent):
    """A client over `receive_per_minute` gets 450 at MAIL (an MTA retries later); a minute on it may send again."""
    config, _, _ = sent
    config.write_text(config.read_text().replace("soft_threshold = 3", "soft_threshold = 3\nreceive_per_minute = 3"))
    clock = ManualClock()
    port = free_port()
    server = receive.start(feedback_for(config, clock), "127.0.0.1", port)
    note = plain(BOUNCES, "someone@example.net", "hello", "hi")
    try:
        with smtplib.SMTP("127.0.0.1", port) as client:
            for _ in range(3):
                client.sendmail("someone@example.net", [BOUNCES], note)
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("someone@example.net", [BOUNCES], note)
            assert refused.value.smtp_code == 450
            clock.at += receive.MINUTE
            assert client.sendmail("someone@example.net", [BOUNCES], note) == {}
    finally:
        server.stop()
    assert len(logged(config)) == 4


@pytest.mark.attack(edge="feedback", attack="reading the receiver's log for working VERP tokens",
                    held="aiosmtpd's lines carry bounces+…@, never the token")
def test_the_receivers_log_holds_no_token(sent, caplog):
    """aiosmtpd logs each envelope address and command line at INFO; none of them carries a working VERP token."""
    config, _, rows = sent
    fb = feedback_for(config)
    token = fb.links.verp_token("r", rows[VICTIM].id)
    to = verp_address(BOUNCES, token)
    port = free_port()
    server = receive.start(fb, "127.0.0.1", port)
    try:
        with caplog.at_level(logging.DEBUG, logger="mail.log"), smtplib.SMTP("127.0.0.1", port) as client:
            client.sendmail("", [to], dsn(to, VICTIM, "5.1.1", "550 5.1.1 User unknown"))
    finally:
        server.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "mail.log"]
    assert any("bounces+…@bounces.example.org" in line for line in lines)
    assert not any(token in line or token.split("-")[1] in line for line in lines)


@pytest.mark.attack(edge="feedback", attack="terminal escape sequences in a notice an operator reads",
                    held="`bounces show` prints control characters as U+FFFD")
def test_bounces_show_prints_no_escape_sequence(sent, runner):
    """A notice kept for a person is readable with `bounces show ID`, and its escape sequences cannot drive the
    operator's terminal."""
    config, _, _ = sent
    feedback_for(config).handle(Notice(b"From: <>\r\nSubject: Undelivered\r\n\r\n\x1b]0;owned\x07\x1b[2J", "esc"))
    out = invoke(runner, config, "bounces", "show", "1").output
    assert "#1 " in out and "esc: unknown" in out and "\x1b" not in out and "\x07" not in out
    assert "\ufffd]0;owned" in out
    assert invoke(runner, config, "bounces", "show", "99", code=1).output.strip() == \
        "Error: no notice #99 in the bounce log"
