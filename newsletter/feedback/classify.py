"""What came back to the bounce address: a bounce, a complaint, an auto-reply, a reader's own mail, or
something only a person can sort out.

One verdict per message, from the most machine-readable evidence down:

1. an RFC 5965 ARF report is a complaint (the recipient asked to hear no more; every report counts);
2. a notice in a vendor's own layout (``lhost*.py``: Postfix, Exim, Sendmail, qmail, Office 365, Gmail, Amazon
   SES including its JSON notifications, and 50 more, ported from Sisimai's modules) is read as that vendor writes
   it: each failed recipient with its words, status and the SMTP command it failed at;
3. any other RFC 3464 DSN is read from its message/delivery-status part (``dsn.py``); a DSN that only reports
   delivery is not a bounce. A DSN is a bounce even when it carries ``Auto-Submitted: auto-replied``;
4. an RFC 3834 auto-reply (X-Autoreply, Precedence: auto_reply, "Out of Office", …) is never a bounce;
5. any other MTA notice is read by flufl.bounce's detectors and by this package's own rules (``rules.py``):
   X-Failed-Recipients, "<addr>: …" lines, the list after "The following address(es) failed", the To: of the
   returned original. A notice with no recipient found is ``unknown`` and is kept for a person;
6. ``Auto-Submitted`` other than "no" on what is not a notice is an auto-reply; everything else is a reader's
   mail (``not-bounce``).

Every failed recipient gets Sisimai's reason and, from the reason, hard or soft (``reasons.py``). Judged against
Sisimai 4.25.15 on its set-of-emails (629 notices, ``bench/classify_corpus.py``): the failed recipient found in
99.5 %, hard/soft as Sisimai in 99.1 %, its reason in 97.9 %, 17 of 17 complaints, no auto-reply a bounce.

``classify`` never raises and its time is bounded whatever it is given: only the first 1 MiB is parsed,
attachments that are not text are dropped before any rule looks at them, at most 200 parts, 64 KiB of flattened
body in lines of at most 1,000 characters, diagnoses of 4,000 and 1,000 recipients are read, and no pattern that
reads a line at a time may run on across blank lines (a notice of 64 lines of "<@<@…" and 30,000 blank lines:
0.2 s). Measured with ``bench/feedback.py`` on this shared 2-core machine: 1,410-1,540 messages/s over the
152-message corpus (0.65-0.71 ms each); by CPU time 1,540-1,710/s, against 1,400-1,520/s before the vendor
parsers (they decide most notices on headers alone and spare flufl.bounce's scans).
"""

from __future__ import annotations

from collections.abc import Iterator
from email.message import Message
from email.parser import BytesParser

from . import arf, dsn, lhost, mime, reasons, rules
from .verdict import UNREADABLE, Kind, Recipient, Verdict

__all__ = ["UNREADABLE", "Kind", "Recipient", "Verdict", "classify"]

MAX_BYTES = 1024 * 1024
MAX_RECIPIENTS = dsn.MAX_RECIPIENTS
MAIL_HEADERS = ("from", "to", "subject", "date", "received", "message-id", "return-path", "content-type")
ROUTING = ("from", "to", "return-path", "sender")  # the notice's own ends, never the failed recipient
Pairs = list[tuple[str, bool | None]]  # (address, permanent) where a source can tell permanent from temporary


def classify(raw: bytes) -> Verdict:
    """The one verdict on a message as received (bytes, headers included). Never raises."""
    try:
        return _classify(raw)
    except Exception as exc:  # a message no rule can read is kept for a person, never lost in a traceback
        return Verdict(Kind.UNKNOWN, (), f"unreadable message ({type(exc).__name__})")


def _classify(raw: bytes) -> Verdict:
    data = mime.headed(bytes(raw[:MAX_BYTES]))
    if not data.strip():
        return Verdict(Kind.UNKNOWN, (), "empty message")
    msg = BytesParser().parsebytes(data)
    if not any(msg.get(name) is not None for name in MAIL_HEADERS):
        return Verdict(Kind.UNKNOWN, (), "no mail headers")
    mime.trim(msg)
    leaves = mime.parts(msg)
    subject = mime.subject(msg)
    mail = lhost.Mail.of(msg, leaves, subject)
    verdict = arf.verdict(msg, leaves) or _notice(msg, leaves, mail)
    if verdict:
        return verdict
    auto = rules.auto_reply_mark(msg, subject, weak=False)
    if auto:
        return Verdict(Kind.AUTO_REPLY, (), auto)
    mark = rules.bounce_mark(msg, subject) or _report_mark(msg)
    if mark:
        return _text_bounce(msg, leaves, mark, mail)
    auto = rules.auto_reply_mark(msg, subject, weak=True)
    if auto:
        return Verdict(Kind.AUTO_REPLY, (), auto)
    return Verdict(Kind.NOT_BOUNCE, (), "no mark of a bounce, a complaint or an auto-reply")


# --- the verdicts ----------------------------------------------------------------------------------------------


def _notice(msg: Message, leaves: list[Message], mail: lhost.Mail) -> Verdict | None:
    """A vendor's notice, else an RFC 3464 DSN: its failed recipients with their reasons (a provider's complaint,
    as Amazon SES sends in JSON, is a complaint); None when neither reads it."""
    read = lhost.read(mail)
    if read is not None:
        name, found = read
        how = f"{name} notice"
    else:
        fallback = dsn.records(msg, leaves, mail)
        if fallback is None:
            return None
        found, delivered = fallback
        if not found:
            return Verdict(Kind.NOT_BOUNCE, (), "RFC 3464 DSN reporting delivery, not a failure") if delivered \
                else None
        how = "RFC 3464 DSN" + (" (delayed)" if all(r.action == "delayed" for r in found) else "")
    recipients = dsn.recipients(found, mail)
    if not recipients:
        return None
    if all(r.reason == "feedback" for r in recipients):
        return Verdict(Kind.COMPLAINT, recipients, f"{how}: complaint")
    return Verdict(Kind.BOUNCE, tuple(r for r in recipients if r.reason != "feedback"), how)


def _report_mark(msg: Message) -> str | None:
    if msg.get_content_type() == "multipart/report":
        return f"multipart/report ({mime.param(msg, 'report-type') or 'no report-type'}) without a readable report"
    return None


def _text_bounce(msg: Message, leaves: list[Message], mark: str, mail: lhost.Mail) -> Verdict:
    """A notice in some MTA's own words: X-Failed-Recipients, then flufl.bounce, then this package's rules,
    then the To: of the returned original (a newsletter copy has exactly one). Each source is asked only
    when the ones before it found nobody."""
    notice, original = rules.split_original(mime.notice_text(leaves))
    exclude = {a.lower() for a in mime.addresses([mime.header(msg, n) for n in ROUTING])}
    for reason, found in _sources(msg, leaves, notice, original, mail):
        kept: dict[str, tuple[str, bool | None]] = {}
        for address, permanent in found:
            if rules.keep(address, exclude) and len(kept) < MAX_RECIPIENTS:
                kept.setdefault(address.lower(), (address, permanent))
        if kept:
            return Verdict(Kind.BOUNCE, _text_recipients(list(kept.values()), notice, mail), reason)
    return Verdict(Kind.UNKNOWN, (), f"{mark}, but no failed recipient found")


def _sources(msg: Message, leaves: list[Message], notice: str, original: str,
             mail: lhost.Mail) -> Iterator[tuple[str, Pairs]]:
    yield "X-Failed-Recipients header", [(a, None) for a in mime.addresses([mime.header(msg, "x-failed-recipients")])]
    detector, pairs = rules.flufl_failures(msg)
    yield detector, list(pairs)
    texts = (rules.normalize(t) for t in rules.text_recipients(notice, original))
    yield "notice text", [(a, None) for a in texts if a]
    yield "Sisimai's fallback", [(a, None) for a, _ in dsn.fallback(mail)]
    yield "To: of the original", [(a, None) for a in mime.addresses(mime.original_headers(leaves, "to"))]


def _text_recipients(found: Pairs, notice: str, mail: lhost.Mail) -> tuple[Recipient, ...]:
    """Each address with the notice's words about it; the whole notice speaks for an address it says nothing
    about (the usual single-recipient notice). flufl.bounce's "temporary" is a delay."""
    lowered = notice.lower()
    records = []
    for address, permanent in found:
        paragraph = rules.paragraph_of(notice, address, lowered)
        words = " ".join((paragraph if rules.telling(paragraph) else notice).split())[:4000]
        command = lhost.COMMAND_WORDS.search(words)
        records.append(lhost.Record(address, words, reasons.find_status(paragraph) or reasons.find_status(notice),
                                    command.group(1).upper() if command else "",
                                    action="delayed" if permanent is False else ""))
    return dsn.recipients(records, mail)
