"""The bounce/complaint/auto-reply classifier on real-world mail (tests/data/feedback, LICENSES.md there), checked
against Sisimai (recipient, reason, hard or soft), plus the inputs it must survive. Vendors' layouts, remote-host
rules and complaint formats, on notices made here, are in tests/test_feedback_vendors.py.

    python -m tests.test_feedback_classify relabel     # rewrite labels.json from a full Sisimai run
"""

from __future__ import annotations

import email
import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable

import pytest
from flufl.bounce import all_failures

from newsletter.feedback import Kind, Recipient, Verdict, classify

from .conftest import REPO, need

CORPUS = REPO / "tests" / "data" / "feedback"
LABELS = CORPUS / "labels.json"
SISIMAI = REPO / "tests" / "sisimai_reference.pl"
Judge = Callable[[bytes], dict[str, bool]]  # a classifier's answer: failed address (lowercased) -> hard
FOUND, AGREED, REASONS = 0.97, 0.97, 0.92  # floors; measured 98.3 %, 98.3 %, 93.2 % (115, 115, 109 of 117)


def samples(kind: str) -> list[str]:
    return sorted(str(p.relative_to(CORPUS)) for p in (CORPUS / kind).glob("*.eml"))


def labels() -> dict[str, dict[str, object]]:
    return json.loads(LABELS.read_text(encoding="utf-8"))


def ours(raw: bytes) -> dict[str, bool]:
    return {r.address.lower(): r.hard for r in classify(raw).recipients}


def flufl_alone(raw: bytes) -> dict[str, bool]:
    temporary, permanent = all_failures(email.message_from_bytes(raw))
    found = {a.decode("utf-8", "replace").lower(): False for a in temporary}
    return found | {a.decode("utf-8", "replace").lower(): True for a in permanent}


def agreement(judge: Judge) -> tuple[float, float, list[str]]:
    """Share of labelled bounces whose Sisimai recipient the judge finds, share where it also agrees on hard or
    soft (a recipient not found counts as a disagreement), and one line per miss."""
    found = agreed = 0
    misses = []
    for name, label in sorted(labels().items()):
        answer = judge((CORPUS / name).read_bytes())
        recipient, hard = str(label["recipient"]).lower(), bool(label["hard"])
        found += recipient in answer
        agreed += answer.get(recipient) is hard
        if answer.get(recipient) is not hard:
            said = "not found" if recipient not in answer else ("hard" if answer[recipient] else "soft")
            misses.append(f"{name}: Sisimai {recipient} {label['reason']} ({'hard' if hard else 'soft'}); "
                          f"we: {said} in {sorted(answer)[:3]}")
    total = len(labels())
    return found / total, agreed / total, misses


def sisimai(*names: str) -> list[dict[str, object]]:
    """Sisimai's records (tests/sisimai_reference.pl) for corpus files, in the order given."""
    if not shutil.which("perl") or subprocess.run(["perl", "-MSisimai", "-e", "1"], capture_output=True).returncode:
        need("Sisimai is not installed (Debian's libsisimai-perl)")
    done = subprocess.run(["perl", str(SISIMAI), *names], cwd=CORPUS, capture_output=True, text=True, check=True,
                          timeout=300, stdin=subprocess.DEVNULL)
    return [json.loads(line) for line in done.stdout.splitlines()]


def label_of(record: dict[str, object]) -> dict[str, object]:
    return {"recipient": record["recipient"], "reason": record["reason"], "hard": record["hard"]}


def relabel() -> None:
    """labels.json: Sisimai's verdict on every bounce sample it has one for."""
    names = samples("bounce")
    found = {n: label_of(r) for n, r in zip(names, sisimai(*names), strict=True) if r["verdict"]}
    LABELS.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(found)} of {len(names)} bounce samples labelled in {LABELS}")


# --- the corpus ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", samples("complaint"))
def test_every_arf_sample_is_a_complaint(name):
    """Each real ARF report in the corpus is a complaint, whatever its Feedback-Type."""
    verdict = classify((CORPUS / name).read_bytes())
    assert verdict.kind is Kind.COMPLAINT, verdict


@pytest.mark.parametrize("name", samples("auto-reply"))
def test_no_auto_reply_is_a_bounce(name):
    """Each vacation or auto-responder message is an auto-reply, never a bounce."""
    verdict = classify((CORPUS / name).read_bytes())
    assert verdict.kind is Kind.AUTO_REPLY, verdict


@pytest.mark.parametrize("name", samples("not-bounce"))
def test_no_reader_mail_is_a_bounce(name):
    """A reader's own mail (replies, a forward with the issue attached, one that talks about bounces) is not-bounce."""
    verdict = classify((CORPUS / name).read_bytes())
    assert verdict.kind is Kind.NOT_BOUNCE, verdict


def test_every_bounce_sample_reads_as_a_bounce_or_unknown():
    """No bounce in the corpus passes for a complaint, an auto-reply or a reader's mail."""
    wrong = {n: classify((CORPUS / n).read_bytes()) for n in samples("bounce")}
    wrong = {n: v for n, v in wrong.items() if v.kind not in (Kind.BOUNCE, Kind.UNKNOWN)}
    assert not wrong, "\n".join(f"{n}: {v.kind} {v.reason}" for n, v in wrong.items())


def test_recipients_and_classes_agree_with_sisimai():
    """On the bounces Sisimai reads, we find its recipient in at least 97 % and agree on hard/soft in 97 %."""
    found, agreed, misses = agreement(ours)
    report = f"recipient {found:.1%}, hard/soft {agreed:.1%}; misses:\n" + "\n".join(misses)
    assert found >= FOUND and agreed >= AGREED, report


def test_reasons_agree_with_sisimai():
    """On the bounces Sisimai reads, its recipient gets Sisimai's reason in at least 92 % (labels.json's reason)."""
    wrong = []
    for name, label in sorted(labels().items()):
        found = {r.address.lower(): r.reason for r in classify((CORPUS / name).read_bytes()).recipients}
        if found.get(str(label["recipient"]).lower()) != label["reason"]:
            wrong.append(f"{name}: Sisimai {label['reason']}, we {found.get(str(label['recipient']).lower())}")
    share = 1 - len(wrong) / len(labels())
    assert share >= REASONS, f"reason {share:.1%}; misses:\n" + "\n".join(wrong)


def test_flufl_alone_finds_less_and_misjudges_more():
    """flufl.bounce by itself, on the same bounces, finds fewer recipients and agrees far less on hard/soft."""
    found, agreed, _ = agreement(ours)
    flufl_found, flufl_agreed, _ = agreement(flufl_alone)
    report = f"ours {found:.1%} / {agreed:.1%}, flufl.bounce alone {flufl_found:.1%} / {flufl_agreed:.1%}"
    assert found >= flufl_found and agreed > flufl_agreed + 0.4, report


def test_labels_are_what_sisimai_says_today():
    """Sisimai run live on every file of the corpus (1.3 s) gives exactly what labels.json holds for each bounce,
    'feedback' for each complaint, at most 'vacation' for an auto-reply and nothing for ordinary mail."""
    known = labels()
    names = samples("bounce")
    for name, record in zip(names, sisimai(*names), strict=True):
        if record["verdict"]:
            assert known.get(name) == label_of(record), name
        else:
            assert name not in known, name
    assert len(known) >= 100 and all(n.startswith("bounce/") for n in known)
    others = {kind: samples(kind) for kind in ("complaint", "auto-reply", "not-bounce")}
    said = dict(zip(sum(others.values(), []), sisimai(*sum(others.values(), [])), strict=True))
    assert all(said[n]["verdict"] and said[n]["reason"] == "feedback" for n in others["complaint"])
    assert all(not said[n]["verdict"] or said[n]["reason"] == "vacation" for n in others["auto-reply"])
    assert not any(said[n]["verdict"] for n in others["not-bounce"])


# --- the rules, on messages made here --------------------------------------------------------------------------


def dsn(*blocks: str, headers: str = "", text: str = "Your message could not be delivered.") -> bytes:
    """A multipart/report DSN with one per-recipient block for each of ``blocks``."""
    report = "\n".join(f"{b.strip()}\n" for b in blocks)
    return (f"From: MAILER-DAEMON@mta.example.net (Mail Delivery System)\nTo: bounces@newsletter.example\n"
            f"Subject: Undelivered Mail Returned to Sender\n{headers}MIME-Version: 1.0\n"
            f'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
            f"--B\nContent-Type: text/plain\n\n{text}\n\n--B\nContent-Type: message/delivery-status\n\n"
            f"Reporting-MTA: dns; mta.example.net\n\n{report}\n--B--\n").encode()


def block(rcpt: str, action: str = "failed", status: str = "5.1.1", diagnostic: str = "550 5.1.1 User unknown") -> str:
    return f"Final-Recipient: rfc822; {rcpt}\nAction: {action}\nStatus: {status}\nDiagnostic-Code: smtp; {diagnostic}"


def only(verdict: Verdict) -> Recipient:
    assert verdict.kind is Kind.BOUNCE and len(verdict.recipients) == 1, verdict
    return verdict.recipients[0]


def test_dsn_with_auto_submitted_is_still_a_bounce():
    """A DSN carrying Auto-Submitted: auto-replied (as Postfix's do) is a bounce, read from its report."""
    verdict = classify(dsn(block("reader@example.org"), headers="Auto-Submitted: auto-replied\n"))
    assert verdict.reason == "RFC 3464 DSN"
    assert only(verdict) == Recipient("reader@example.org", True, "5.1.1", "550 5.1.1 User unknown", "userunknown")


def test_delayed_dsn_is_soft_with_its_status():
    """Action: delayed is a soft failure that keeps its 4.x.x status."""
    verdict = classify(dsn(block("slow@example.org", "delayed", "4.4.1", "Connection timed out")))
    recipient = only(verdict)
    assert (recipient.hard, recipient.klass, recipient.status) == (False, "soft", "4.4.1")
    assert verdict.reason == "RFC 3464 DSN (delayed)"


def test_delivered_relayed_and_expanded_are_not_failures():
    """A DSN reporting only delivery, relay or expansion names no failed recipient and is not a bounce."""
    verdict = classify(dsn(*(block(f"r{i}@example.org", action, "2.0.0", "250 OK")
                             for i, action in enumerate(["delivered", "relayed", "expanded"]))))
    assert verdict.kind is Kind.NOT_BOUNCE and verdict.recipients == ()


def test_only_the_failed_recipients_of_a_mixed_dsn_count():
    """Of a DSN with one delivered and one failed recipient, only the failed one is listed."""
    verdict = classify(dsn(block("ok@example.org", "delivered", "2.0.0", "250 OK"), block("gone@example.org")))
    assert only(verdict).address == "gone@example.org"


# Each (status, diagnostic) in a plain RFC 3464 DSN, with the reason and class Sisimai 4.25.15 gave the same DSN
# when this was written (tests/sisimai_reference.pl on these very messages).
@pytest.mark.parametrize("status, diagnostic, reason, hard", [
    ("5.2.2", "552 5.2.2 Mailbox full", "mailboxfull", False),
    ("5.0.0", "550 Requested action not taken: mailbox full, over quota", "mailboxfull", False),
    ("5.1.1", "550 5.1.1 <a@example.org>: Recipient address rejected: User unknown", "userunknown", True),
    ("5.7.1", "550 5.7.1 Message blocked by policy", "securityerror", False),
    ("5.4.4", "Host or domain name not found. Name service error for name=example.invalid", "hostunknown", True),
    ("5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found", "filtered", False),
    ("5.0.0", "550 5.0.0 Account has been disabled", "onhold", False),
    ("4.2.2", "452 4.2.2 Over quota", "mailboxfull", False),
    ("5.0.0", "554 delivery error: dd This user doesn't have a yahoo.com account", "filtered", False),
])
def test_reason_and_class_are_sisimais(status, diagnostic, reason, hard):
    """A DSN gets Sisimai's reason and Sisimai's class for it: words before the code, a full mailbox soft."""
    recipient = only(classify(dsn(block("a@example.org", status=status, diagnostic=diagnostic))))
    assert (recipient.reason, recipient.hard) == (reason, hard)


def test_user_unknown_words_need_rcpt_or_a_code():
    """"Unknown user" with no code is userunknown (hard) only when the notice shows it came at RCPT TO; after DATA
    a content filter writes the same words (Sisimai: filtered, soft)."""
    def notice(words: str) -> bytes:
        return (f"From: MAILER-DAEMON@mx.example.net\nTo: bounces@newsletter.example\nSubject: failure notice\n\n"
                f"<gone@example.org>:\n{words}\n").encode()

    assert (only(classify(notice("550 unknown user"))).reason, only(classify(notice("550 unknown user"))).hard) == \
        ("filtered", False)
    rcpt = only(classify(notice("after RCPT TO:<gone@example.org>: 550 unknown user")))
    assert (rcpt.reason, rcpt.hard) == ("userunknown", True)


def test_recipient_is_as_found_with_a_lowercased_domain_and_a_short_diagnostic():
    """The address keeps its local part's case, its domain is lowercased; the diagnostic is one line of ≤ 500."""
    long = "550 5.1.1 " + "user unknown\n " * 100
    recipient = only(classify(dsn(block("Mixed.Case@Example.ORG", diagnostic=long))))
    assert recipient.address == "Mixed.Case@example.org"
    assert recipient.diagnostic and "\n" not in recipient.diagnostic and len(recipient.diagnostic) <= 500


def test_complaint_names_the_to_of_the_original_when_the_report_names_nobody():
    """An ARF report without Original-Rcpt-To names the To: of the attached original."""
    raw = (b'From: fbl@isp.example\nTo: abuse@newsletter.example\nSubject: complaint\nMIME-Version: 1.0\n'
           b'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\n\n'
           b"--F\nContent-Type: text/plain\n\nA complaint.\n\n--F\nContent-Type: message/feedback-report\n\n"
           b"Feedback-Type: abuse\nUser-Agent: FBL/1.0\nVersion: 1\n\n--F\nContent-Type: message/rfc822\n\n"
           b"From: digest@newsletter.example\nTo: Angry Reader <Angry@Example.ORG>\nSubject: Issue\n\nhi\n--F--\n")
    verdict = classify(raw)
    assert verdict.kind is Kind.COMPLAINT and verdict.reason == "ARF feedback report (abuse)"
    assert [(r.address, r.hard, r.reason) for r in verdict.recipients] == [("Angry@example.org", True, "feedback")]


# --- what it must survive --------------------------------------------------------------------------------------


MALFORMED = {
    "multipart without boundary": b"From: MAILER-DAEMON@mx.example\nSubject: Undeliverable\n"
    b"Content-Type: multipart/report; report-type=delivery-status\n\n--x\nContent-Type: message/delivery-status\n\n"
    b"Final-Recipient: rfc822; lost@example.org\nAction: failed\nStatus: 5.1.1\n",
    "unterminated parts": b'From: MAILER-DAEMON@mx.example\nSubject: Undeliverable\nContent-Type: multipart/mixed; '
    b'boundary="a"\n\n--a\nContent-Type: multipart/alternative; boundary="b"\n\n--b\nContent-Type: text/plain\n\n'
    b"<lost@example.org>: 550 5.1.1 user unknown\n",
    "broken headers": b"\x00\xff: \xfe\nFrom \x80\x81\nSubject: =?utf-8?b?////?=\nContent-Type: text/plain; "
    b"charset=no-such-charset\n\n\xff\xfe",
    "unknown charset and bad base64": b"From: MAILER-DAEMON@mx.example\nSubject: failure notice\nContent-Type: "
    b"text/plain; charset=x-unheard-of\nContent-Transfer-Encoding: base64\n\n!!!not base64!!!\n",
    "deep nesting": b'From: a@example.org\nContent-Type: multipart/mixed; boundary="n0"\n\n'
    + b"".join(b'--n%d\nContent-Type: multipart/mixed; boundary="n%d"\n\n' % (i, i + 1) for i in range(3000)),
    "ten thousand parts": b'From: a@example.org\nContent-Type: multipart/mixed; boundary="p"\n\n'
    + b"--p\nContent-Type: text/plain\n\nx\n" * 10_000 + b"--p--\n",
    "delivery-status that is not fields": dsn("\x00\x01 garbage: \n\n::::\n\nnot a field at all"),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_mime_gives_a_verdict(name):
    """Malformed MIME never raises: it gives the verdict it can read, or unknown."""
    verdict = classify(MALFORMED[name])
    assert isinstance(verdict, Verdict) and verdict.reason
    if verdict.kind is Kind.BOUNCE:
        assert [r.address for r in verdict.recipients] == ["lost@example.org"]


@pytest.mark.timeout(20)
def test_twenty_megabyte_attachment_is_cut_short():
    """A bounce returning a 20 MB attachment is still read from its report, and a reply with one is a reader's."""
    attachment = b"QUFB" * 19 + b"\n"
    big = attachment * (20 * 1024 * 1024 // len(attachment))
    original = (b'\n--B\nContent-Type: message/rfc822\n\nFrom: digest@newsletter.example\nTo: big@example.org\n'
                b'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="M"\n\n--M\nContent-Type: '
                b"application/pdf\nContent-Transfer-Encoding: base64\n\n" + big + b"--M--\n")
    bounce = dsn(block("big@example.org", diagnostic="552 5.3.4 Message size exceeds fixed limit")).replace(
        b"\n--B--\n", original + b"\n--B--\n")
    assert len(bounce) > 20_000_000
    recipient = only(classify(bounce))
    assert (recipient.address, recipient.hard) == ("big@example.org", False)
    reply = (b'From: reader@example.org\nTo: bounces@newsletter.example\nSubject: Re: the issue\nMIME-Version: 1.0\n'
             b'Content-Type: multipart/mixed; boundary="M"\n\n--M\nContent-Type: text/plain\n\nMy slides.\n--M\n'
             b"Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n" + big + b"--M--\n")
    assert classify(reply).kind is Kind.NOT_BOUNCE


@pytest.mark.timeout(20)
def test_dsn_with_thousands_of_recipients_is_capped_at_a_thousand():
    """A DSN naming 1,500 failed recipients gives the first 1,000, each read as its block says."""
    verdict = classify(dsn(*(block(f"user{i}@example.org") for i in range(1500))))
    assert verdict.kind is Kind.BOUNCE and len(verdict.recipients) == 1000
    assert verdict.recipients[999].address == "user999@example.org"
    assert all(r.hard and r.status == "5.1.1" for r in verdict.recipients)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("size", [1, 4096, 20 * 1024 * 1024])
def test_binary_junk_is_unknown(size):
    """Random bytes of any length are unknown: there is no mail in them to read."""
    junk = random.Random(size).randbytes(size) if size < 10_000 else os.urandom(size)
    assert classify(junk).kind is Kind.UNKNOWN


@pytest.mark.parametrize("raw", [b"", b"   \r\n\r\n\t", "From: a@example.org\n\nnot bytes"], ids=["empty",
                                                                                                "blank", "str"])
def test_empty_or_wrong_input_is_unknown(raw):
    """Nothing, blank lines, or something that is not bytes at all: unknown, without raising."""
    verdict = classify(raw)
    assert verdict.kind is Kind.UNKNOWN and verdict.recipients == () and verdict.reason


if __name__ == "__main__":
    if sys.argv[1:] != ["relabel"]:
        sys.exit(__doc__)
    relabel()
