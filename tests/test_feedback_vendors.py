"""Vendors' own notice layouts, remote-host rules, local delivery agents and complaint formats (issue #24), each on
a short notice written here in the layout Sisimai's module for it reads. The reason and class each test expects
are the ones Sisimai 4.25.15 gave the very same message when this was written (tests/sisimai_reference.pl);
``test_these_notices_are_read_as_sisimai_reads_them`` asks Sisimai again when it is installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from datetime import UTC, datetime

import pytest

from newsletter import store
from newsletter.feedback import Kind, Recipient, Verdict, classify, reasons
from newsletter.feedback.report import bounce_report
from newsletter.store import tables as t

from .conftest import REPO, invoke, need

WHEN = datetime(2026, 5, 28, 9, 0, tzinfo=UTC)
HEAD = "From: {sender}\nTo: bounces@newsletter.example\nSubject: {subject}\nDate: Thu, 29 Apr 2021 23:34:45 +0900\n"
ORIGINAL = ("From: digest@newsletter.example\nTo: {rcpt}\nSubject: The weekly digest\n"
            "Date: Thu, 29 Apr 2021 23:30:00 +0900\nMessage-ID: <issue-1@newsletter.example>\n\nHello\n")


def report(sender: str, subject: str, text: str, status: str, rcpt: str = "gone@example.org", extra: str = "") -> str:
    """A multipart/report DSN: the MTA's own words, its delivery-status fields for ``rcpt``, the original."""
    return (HEAD.format(sender=sender, subject=subject) + extra + "MIME-Version: 1.0\nContent-Type: multipart/report;"
            ' report-type=delivery-status; boundary="B"\n\n--B\nContent-Type: text/plain\n\n' + text +
            "\n--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n" + status +
            "\n--B\nContent-Type: message/rfc822\n\n" + ORIGINAL.format(rcpt=rcpt) + "--B--\n")


POSTFIX = report("MAILER-DAEMON@mx.example.net (Mail Delivery System)", "Undelivered Mail Returned to Sender",
                 "This is the mail system at host mx.example.net.\n\nI'm sorry to have to inform you that your message "
                 "could not\nbe delivered to one or more recipients.\n\n<gone@example.org>: host mx.example.org["
                 "192.0.2.25] said: 550 5.1.1\n    <gone@example.org>: Recipient address rejected: User unknown in "
                 "virtual\n    mailbox table (in reply to RCPT TO command)\n",
                 "Final-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.0.0\n"
                 "Remote-MTA: dns; mx.example.org\nDiagnostic-Code: smtp; 550 rejected\n")
SENDMAIL = report("Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>",
                  "Returned mail: see transcript for details",
                  "The original message was received at Thu, 29 Apr 2021 23:30:00 +0900\n\n   ----- The following "
                  "addresses had permanent fatal errors -----\n<gone@example.org>\n\n   ----- Transcript of session "
                  "follows -----\n... while talking to mx.example.org.:\n>>> DATA\n<<< 550 5.7.1 Message rejected "
                  "as spam by Content Filtering.\n554 5.0.0 Service unavailable\n",
                  "Final-Recipient: RFC822; gone@example.org\nAction: failed\nStatus: 5.7.1\n"
                  "Remote-MTA: DNS; mx.example.org\nDiagnostic-Code: SMTP; 550 5.7.1 Message rejected as spam\n")
POWERMTA = report("postmaster@mta.example.net", "Delivery report",
                  "Hello, this is the mail server on mta.example.net.\n\nI am sending you this message to inform you "
                  "on the delivery status of a\nmessage you previously sent.\n",
                  "Final-Recipient: rfc822;gone@example.org\nAction: failed\nStatus: 5.0.0\nRemote-MTA: dns;mx.example."
                  "org\nDiagnostic-Code: smtp;550 Requested action not taken\nX-PowerMTA-BounceCategory: bad-mailbox\n")
LAPOSTE = report("MAILER-DAEMON@mx.example.net (Mail Delivery System)", "Delivery Status Notification (Failure)",
                 "Your message could not be delivered.\n",
                 "Final-Recipient: rfc822; gone@laposte.net\nAction: failed\nStatus: 5.0.0\nRemote-MTA: dns; "
                 "smtpz4.laposte.net\nDiagnostic-Code: smtp; 550 5.5.0 Unknown: LPN007_416 mailbox gone\n",
                 rcpt="gone@laposte.net")
# XWall labels its report's part message/xdelivery-status (a notice of Mail::DeliveryStatus::BounceParser's corpus);
# Sisimai's RFC3464 reads it as a delivery-status part
XWALL = report("System Administrator <postmaster@mx.example.net>", "Non delivery report: 5.7.1 (Spam)",
               "Your message\n\n To: gone@example.org\n Subj: The weekly digest\n\nhas encountered a delivery "
               "problem.\n\nReason: Spam\nThe message seems to be spam and was not delivered to the recipient.\n",
               "Final-Recipient: rfc822; gone@example.org\nAction: failed\nStatus: 5.7.1\n"
               "Diagnostic-Code: smtp; 550 5.7.1 Message rejected as spam\n").replace(
    "Content-Type: message/delivery-status", "Content-Type: message/xdelivery-status")
DOVECOT = report("Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>", "Automatically rejected mail",
                 "Your message to <full@example.org> was automatically rejected:\nQuota exceeded (mailbox for user "
                 "is full)\n",
                 "Final-Recipient: rfc822; full@example.org\nAction: failed\nStatus: 5.2.0\n", rcpt="full@example.org")
EXIM = (HEAD.format(sender="Mail Delivery System <Mailer-Daemon@mx.example.net>",
                    subject="Mail delivery failed: returning message to sender") +
        "Message-Id: <E1abcDe-000Fgh-Ij@mx.example.net>\nX-Failed-Recipients: gone@nowhere.example\n\n"
        "This message was created automatically by mail delivery software.\n\nA message that you sent could not be "
        "delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:"
        "\n\n  gone@nowhere.example\n    all host address lookups failed permanently\n\n------ This is a copy of "
        "the message, including all the headers. ------\n\n" + ORIGINAL.format(rcpt="gone@nowhere.example"))
QMAIL = (HEAD.format(sender="MAILER-DAEMON@mx.example.net", subject="failure notice") +
         "\nHi. This is the qmail-send program at mx.example.net.\nI'm afraid I wasn't able to deliver your message "
         "to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n"
         "<gone@example.org>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n--- Below this line is a copy of the "
         "message.\n\n" + ORIGINAL.format(rcpt="gone@example.org"))
DOMINO = (HEAD.format(sender="Postmaster@notes.example.net", subject="DELIVERY FAILURE: User gone not listed") +
          "\nYour message\n\n  Subject: The weekly digest\n\nwas not delivered to:\n\n  gone@example.org\n\nbecause:\n"
          "\n  User gone (gone@example.org) not listed in Domino Directory\n")
JSON_COMPLAINT = {"notificationType": "Complaint", "complaint": {
    "complainedRecipients": [{"emailAddress": "angry@example.org"}], "complaintFeedbackType": "abuse",
    "timestamp": "2021-04-29T14:34:45.000Z"}, "mail": {"messageId": "0100-issue-1"}}
SES = ("From: no-reply@sns.amazonaws.com\nTo: bounces@newsletter.example\nSubject: AWS Notification Message\n"
       "Date: Thu, 29 Apr 2021 23:34:45 +0900\nX-Amz-Sns-Message-Id: 1a2b3c4d-0000-1111-2222-333344445555\n"
       "Content-Type: text/plain; charset=UTF-8\n\n" + json.dumps({"Type": "Notification",
                                                                  "Message": json.dumps(JSON_COMPLAINT)}) + "\n")
JMRP = ("From: staff@hotmail.com\nTo: abuse@newsletter.example\nSubject: complaint about message from 192.0.2.25\n"
        "Date: Thu, 29 Apr 2021 23:34:45 +0000\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"J\"\n\n"
        "--J\nContent-Type: message/rfc822\nContent-Disposition: inline\n\nX-HmXmrOriginalRecipient: "
        "angry@example.org\n" + ORIGINAL.format(rcpt="angry@example.org") + "--J--\n")
SISIMAI_FALLBACK = (HEAD.format(sender="postmaster <postmaster@mx.example.net>", subject="failure notice") +
                    "\nThe message could not be sent to the address below.\ngone@example.org\n\n-------server message\n"
                    "452 4.3.1 Insufficient system resources\n")
LOST_BOUNDARY = (HEAD.format(sender="Microsoft Outlook <postmaster@outlook.example>", subject="Undeliverable: hi") +
                 'MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary="R"\n\n'
                 "--R\nContent-Type: multipart/alternative; differences=Content-Type;\nboundary=\"A\"\n\n--A\n"
                 "Content-Type: text/plain; charset=us-ascii\n\nDelivery has failed to these recipients or groups:\n\n"
                 "gone@example.org\n\n--A--\n\n--R\nContent-Type: message/delivery-status\n\nReporting-MTA: dns;"
                 "mx.outlook.example\n\nFinal-Recipient: rfc822;gone@example.org\nAction: failed\nStatus: 5.1.1\n"
                 "Diagnostic-Code: smtp;550 5.1.1 RESOLVER.ADR.RecipNotFound; not found\n\n--R--\n")
AWAY = (HEAD.format(sender="Ada <ada@example.org>", subject="Automatic reply: The weekly digest") +
        "Auto-Submitted: auto-replied\nX-Autoreply: yes\n\nI am out of the office. Your message could not be "
        "delivered to me before Monday; mail to gone@example.org is undeliverable while I am away.\n")

SAMPLES = {  # name: (message, recipient, reason, hard)
    "postfix": (POSTFIX, "gone@example.org", "userunknown", True),
    "sendmail": (SENDMAIL, "gone@example.org", "spamdetected", False),
    "powermta": (POWERMTA, "gone@example.org", "userunknown", True),
    "laposte": (LAPOSTE, "gone@laposte.net", "userunknown", True),
    "dovecot": (DOVECOT, "full@example.org", "mailboxfull", False),
    "exim": (EXIM, "gone@nowhere.example", "hostunknown", True),
    "qmail": (QMAIL, "gone@example.org", "userunknown", True),
    "domino": (DOMINO, "gone@example.org", "userunknown", True),
    "fallback": (SISIMAI_FALLBACK, "gone@example.org", "systemfull", False),
    "xdelivery-status": (XWALL, "gone@example.org", "spamdetected", False),
    # saved with blank lines above its headers (three Exchange notices of PHP-Bounce-Handler's corpus are)
    "blank-lines-first": ("\n  \n" + POSTFIX, "gone@example.org", "userunknown", True),
}


def only(verdict: Verdict) -> Recipient:
    assert verdict.kind is Kind.BOUNCE and len(verdict.recipients) == 1, verdict
    return verdict.recipients[0]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_each_layout_gives_its_recipient_reason_and_class(name):
    """Each vendor's layout yields the failed recipient with the reason and class Sisimai gives it."""
    message, address, reason, hard = SAMPLES[name]
    recipient = only(classify(message.encode()))
    assert (recipient.address, recipient.reason, recipient.hard) == (address, reason, hard)


def test_these_notices_are_read_as_sisimai_reads_them(tmp_path):
    """Sisimai itself, run on the notices above, gives each the recipient, reason and class the tests expect."""
    if not shutil.which("perl") or subprocess.run(["perl", "-MSisimai", "-e", "1"], capture_output=True).returncode:
        need("Sisimai is not installed (Debian's libsisimai-perl)")
    names = sorted(SAMPLES)
    for name in names:
        (tmp_path / f"{name}.eml").write_text(SAMPLES[name][0], encoding="utf-8")
    done = subprocess.run(["perl", str(REPO / "tests" / "sisimai_reference.pl"), *(f"{n}.eml" for n in names)],
                          cwd=tmp_path, capture_output=True, text=True, check=True, timeout=60)
    said = {n: json.loads(line) for n, line in zip(names, done.stdout.splitlines(), strict=True)}
    assert {n: (r["recipient"], r["reason"], r["hard"]) for n, r in said.items()} == \
        {n: (address, reason, hard) for n, (_, address, reason, hard) in SAMPLES.items()}


def test_a_providers_json_complaint_is_a_complaint():
    """An Amazon SES complaint notification (JSON through SNS) is a complaint naming the complaining address."""
    verdict = classify(SES.encode())
    assert verdict.kind is Kind.COMPLAINT
    assert [(r.address, r.hard, r.reason) for r in verdict.recipients] == [("angry@example.org", True, "feedback")]


def test_a_microsoft_junk_mail_report_is_a_complaint():
    """Microsoft's JMRP report (multipart/mixed, not ARF) is a complaint about X-HmXmrOriginalRecipient."""
    verdict = classify(JMRP.encode())
    assert verdict.kind is Kind.COMPLAINT and verdict.reason.startswith("Microsoft JMRP")
    assert [r.address for r in verdict.recipients] == ["angry@example.org"]


def test_a_boundary_folded_onto_its_own_line_is_still_split():
    """A multipart whose boundary parameter sits on a line of its own (Office 365 writes so) is still read."""
    recipient = only(classify(LOST_BOUNDARY.encode()))
    assert (recipient.address, recipient.reason, recipient.hard) == ("gone@example.org", "userunknown", True)


def test_an_auto_reply_that_talks_of_undeliverable_mail_is_no_bounce():
    """An out-of-office reply naming an address and "undeliverable" stays an auto-reply."""
    assert classify(AWAY.encode()).kind is Kind.AUTO_REPLY


def test_notaccept_is_hard_unless_its_code_is_temporary():
    """Sisimai's one reason whose class depends on the code: notaccept is soft under a 4xx, hard otherwise."""
    assert reasons.is_hard("notaccept", "4.3.2 452 system not accepting network messages") is False
    assert reasons.is_hard("notaccept", "5.3.2 550 system not accepting network messages") is True
    assert reasons.is_hard("notaccept") is True and reasons.is_hard("mailboxfull", "5.2.2") is False


def test_a_recipient_built_without_a_reason_has_none():
    """A recipient built with four fields (as a test or an old caller builds one) has no reason and keeps its class."""
    assert Recipient("a@example.org", True, "5.1.1", "bounced").reason is None


def test_bounces_report_counts_by_reason_hard_and_soft(make_config, runner, tmp_path):
    """Migration 0009 gives bounce_log its reason; `bounces report` counts bounces by it, hard and soft apart (a 5xx
    notaccept is hard, a 4xx one soft), and complaints, most first; rows without a reason are not counted."""
    config = make_config()
    engine = store.engine_for(f"sqlite:///{tmp_path / 'newsletter.db'}")
    assert store.migrate(engine)[1] >= "0009"
    rows = [("bounce", "hard", "userunknown"), ("bounce", "hard", "userunknown"), ("bounce", "soft", "mailboxfull"),
            ("bounce", "hard", "notaccept"), ("bounce", "soft", "notaccept"), ("complaint", None, "feedback"),
            ("auto-reply", None, None), ("bounce", "soft", None)]
    with engine.begin() as conn:
        conn.execute(t.bounce_log.insert(), [{"received_at": WHEN, "source": "t", "kind": k, "class": c,
                                              "action": "x", "reason": r} for k, c, r in rows])
    with engine.connect() as conn:
        assert bounce_report(conn).by_reason == [("notaccept", 1, 1, 0), ("userunknown", 2, 0, 0),
                                                 ("feedback", 0, 0, 1), ("mailboxfull", 0, 1, 0)]
    engine.dispose()
    said = json.loads(invoke(runner, config, "bounces", "report", "--json").output)["by_reason"]
    assert said[1] == {"reason": "userunknown", "hard": 2, "soft": 0, "complaints": 0} and len(said) == 4
    text = invoke(runner, config, "bounces", "report").output
    assert "By reason" in text and all(r in text for r in ("notaccept", "userunknown", "feedback", "mailboxfull"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("line", ["<@" * 499, "@" * 999, "a@" * 499, " (in reply to RCPT" * 50, "<a@b>: " * 140])
def test_notices_of_pathological_lines_are_read_in_bounded_time(line):
    """A notice whose 64 KiB body is lines every vendor's patterns could backtrack over is read in under 2 s."""
    for sender, subject in (("MAILER-DAEMON@mx.example.net", "failure notice"),
                            ("Mail Delivery System <m@mx.example.net>", "Mail delivery failed"),
                            ("postmaster@outlook.example", "Undeliverable: hi")):
        raw = (HEAD.format(sender=sender, subject=subject) + "X-Ms-Exchange-Message-Is-Ndr: 1\n\n"
               "Hi. This is the qmail-send program\nDelivery has failed to these recipients or groups:\n"
               + (line + "\n") * 64 + "\n" * 30_000 + "--- Below this line is a copy of the message.\n").encode()
        began = time.process_time()
        assert isinstance(classify(raw), Verdict)
        assert time.process_time() - began < 2, (sender, line[:20])
