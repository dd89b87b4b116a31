"""What came back to the bounce address: a bounce, a complaint, an auto-reply, a reader's own mail, or
something only a person can sort out.

One verdict per message, from the most machine-readable evidence down:

1. an RFC 5965 ARF report is a complaint (the recipient asked to hear no more; every report counts);
2. an RFC 3464 DSN is read from its message/delivery-status part: each failed or delayed recipient with its
   Status and Diagnostic-Code; a DSN that only reports delivery is not a bounce. A DSN is a bounce even when
   it carries ``Auto-Submitted: auto-replied``, as Postfix's do;
3. an RFC 3834 auto-reply (X-Autoreply, Precedence: auto_reply, "Out of Office", "Abwesenheitsnotiz", …) is
   never a bounce;
4. any other MTA notice (Exim, qmail, Exchange, Gmail, Yahoo, Sendmail, …) is read by flufl.bounce's detectors
   and by this package's own rules (``rules.py``): X-Failed-Recipients, "<addr>: …" lines, the list after
   "The following address(es) failed", the To: of the returned original. A notice with no recipient found is
   ``unknown`` and is kept for a person;
5. ``Auto-Submitted`` other than "no" on what is not a notice is an auto-reply; everything else is a reader's
   mail (``not-bounce``).

``classify`` never raises and its time is bounded whatever it is given: only the first 1 MiB is parsed,
attachments that are not text are dropped before any rule looks at them, at most 200 parts and 1,000
recipients are read. Measured with ``bench/feedback.py`` on this 2-core machine: 1,930 messages/s over the
152-message corpus (0.52 ms each; a bounce 0.6 ms, half of it in flufl.bounce and in parsing).
"""

from __future__ import annotations

import enum
import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser, HeaderParser
from email.utils import getaddresses

from newsletter.feedback import rules

MAX_BYTES = 1024 * 1024
MAX_PARTS = 200
MAX_RECIPIENTS = 1000
MAX_TEXT = 64 * 1024
MAX_HEADER = 64 * 1024
MAIL_HEADERS = ("from", "to", "subject", "date", "received", "message-id", "return-path", "content-type")
ROUTING = ("from", "to", "return-path", "sender")  # the notice's own ends, never the failed recipient
DONE = ("delivered", "relayed", "expanded")
DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
Pairs = list[tuple[str, bool | None]]  # (address, permanent) where a source can tell permanent from temporary
UNREADABLE = ("unreadable message", "classifier error")  # the reasons of a verdict on a message that raised
TAGS = re.compile(r"<(style|script)\b.*?</\1>|<[^>]*>", re.IGNORECASE | re.DOTALL)


class Kind(enum.StrEnum):
    """What a message is; ``unknown`` looks like an MTA's notice but says nothing usable: a person reads it."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto-reply"
    NOT_BOUNCE = "not-bounce"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Recipient:
    """A failed (or complaining) recipient. For a complaint ``hard`` is True: mail to it must stop at once."""

    address: str
    hard: bool
    status: str | None
    diagnostic: str | None

    @property
    def klass(self) -> str:
        return "hard" if self.hard else "soft"


@dataclass(frozen=True)
class Verdict:
    """A message's kind, whom it concerns (the failed or complaining recipients; none for the other kinds) and
    one line on what decided it, for the log and for the person who reads the unknown ones."""

    kind: Kind
    recipients: tuple[Recipient, ...]
    reason: str

    @property
    def unreadable(self) -> bool:
        """No rule could read the message at all (it raised): ``bounces fetch`` moves such a message aside whole."""
        return self.kind is Kind.UNKNOWN and self.reason.startswith(UNREADABLE)


def classify(raw: bytes) -> Verdict:
    """The one verdict on a message as received (bytes, headers included). Never raises."""
    try:
        return _classify(raw)
    except Exception as exc:  # a message no rule can read is kept for a person, never lost in a traceback
        return Verdict(Kind.UNKNOWN, (), f"unreadable message ({type(exc).__name__})")


def _classify(raw: bytes) -> Verdict:
    data = bytes(raw[:MAX_BYTES])
    if not data.strip():
        return Verdict(Kind.UNKNOWN, (), "empty message")
    msg = BytesParser().parsebytes(data)
    if not any(msg.get(name) is not None for name in MAIL_HEADERS):
        return Verdict(Kind.UNKNOWN, (), "no mail headers")
    _trim(msg)
    parts = _parts(msg)
    subject = _subject(msg)
    verdict = _complaint(msg, parts) or _dsn(parts)
    if verdict:
        return verdict
    auto = rules.auto_reply_mark(msg, subject, weak=False)
    if auto:
        return Verdict(Kind.AUTO_REPLY, (), auto)
    mark = rules.bounce_mark(msg, subject) or _report_mark(msg)
    if mark:
        return _text_bounce(msg, parts, mark)
    auto = rules.auto_reply_mark(msg, subject, weak=True)
    if auto:
        return Verdict(Kind.AUTO_REPLY, (), auto)
    return Verdict(Kind.NOT_BOUNCE, (), "no mark of a bounce, a complaint or an auto-reply")


# --- MIME ------------------------------------------------------------------------------------------------------


def _trim(msg: Message) -> None:
    """Drop what no rule reads (attachments that are not text) and cut long texts, at any depth, so a 20 MB
    attachment costs nothing after parsing; flufl.bounce's line scanners would otherwise read it all."""
    todo, seen = [msg], 0
    while todo and seen < 10 * MAX_PARTS:
        part, seen = todo.pop(), seen + 1
        payload = part.get_payload()
        if isinstance(payload, list):
            todo += [p for p in payload if isinstance(p, Message)]
        elif part.get_content_maintype() not in ("text", "message", "multipart"):
            part.set_payload("")
        elif isinstance(payload, str) and len(payload) > MAX_TEXT:
            part.set_payload(payload[:MAX_TEXT])


def _parts(msg: Message) -> list[Message]:
    """The leaves of the notice, in order, without descending into a returned original (message/rfc822)."""
    out: list[Message] = []
    todo = [msg]
    while todo and len(out) < MAX_PARTS:
        part = todo.pop(0)
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, list):
            todo[0:0] = [p for p in payload if isinstance(p, Message)]
        else:
            out.append(part)
    return out


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        text = payload[:MAX_TEXT].decode(charset, "replace")
    except LookupError:
        text = payload[:MAX_TEXT].decode("latin-1")
    if part.get_content_type() == "text/html":
        text = html.unescape(TAGS.sub(" ", text))
    return text.replace("\r\n", "\n")


def _notice_text(parts: list[Message]) -> str:
    """The notice's human-readable text: its plain parts, or its HTML ones with the tags taken out."""
    for kind in ("text/plain", "text/html", "multipart"):  # the last: a multipart with no boundary to split at
        texts = [_text(p) for p in parts if kind in (p.get_content_type(), p.get_content_maintype())]
        if any(t.strip() for t in texts):
            return "\n".join(texts)[:MAX_TEXT]
    return ""


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return "" if value is None else str(value)[:MAX_HEADER]


def _subject(msg: Message) -> str:
    raw = _header(msg, "subject")
    try:
        return " ".join(str(make_header(decode_header(raw))).split())
    except Exception:  # an undecodable encoded word: the raw text is still worth matching
        return " ".join(raw.split())


def _addresses(values: list[str]) -> list[str]:
    found = (rules.normalize(address) for _, address in getaddresses(values))
    return [a for a in found if a]


def _param(msg: Message, name: str) -> str:
    value = msg.get_param(name)
    return (value[2] if isinstance(value, tuple) else str(value or "")).strip().lower()


def _blocks(text: str) -> list[list[tuple[str, str]]]:
    """RFC 822-style field blocks (a DSN's or an ARF report's body), split at blank lines."""
    blocks: list[list[tuple[str, str]]] = []
    for chunk in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        fields: list[tuple[str, str]] = []
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and fields:
                fields[-1] = (fields[-1][0], f"{fields[-1][1]} {line.strip()}")
            elif ":" in line:
                name, _, value = line.partition(":")
                fields.append((name.strip().lower(), value.strip()))
        if fields:
            blocks.append(fields)
    return blocks


def _fields(part: Message) -> list[list[tuple[str, str]]]:
    """The field blocks of a message/delivery-status or message/feedback-report part, however it was parsed."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return _blocks(_text(part) or str(payload))
    blocks = []
    for sub in payload:
        if isinstance(sub, Message):
            blocks.append([(k.lower(), " ".join(str(v).split())) for k, v in sub.items()])
            body = sub.get_payload()
            if isinstance(body, str) and ":" in body:
                blocks += _blocks(body)
    return blocks


def _first(fields: list[tuple[str, str]], *names: str) -> str:
    for want in names:
        for name, value in fields:
            if name == want and value:
                return value
    return ""


# --- the verdicts ----------------------------------------------------------------------------------------------


def _complaint(msg: Message, parts: list[Message]) -> Verdict | None:
    """RFC 5965: the complaining recipient from Original-Rcpt-To / Removal-Recipient, else the To: of the
    attached original."""
    reports = [p for p in parts if p.get_content_type() == "message/feedback-report"]
    arf = msg.get_content_type() == "multipart/report" and _param(msg, "report-type") == "feedback-report"
    if not reports and not arf:
        return None
    fields = [f for block in (_fields(reports[0]) if reports else []) for f in block]
    kind = _first(fields, "feedback-type") or "unspecified"
    named = [v.rpartition(";")[2] for n, v in fields if n in ("original-rcpt-to", "removal-recipient")]
    addresses = _addresses(named) or _addresses(_original_headers(parts, "to"))
    recipients = _unique(Recipient(a, True, None, f"Feedback-Type: {kind}") for a in addresses)
    reason = f"ARF feedback report ({kind})" + ("" if recipients else ", no recipient named")
    return Verdict(Kind.COMPLAINT, recipients, reason)


def _dsn(parts: list[Message]) -> Verdict | None:
    """RFC 3464: each per-recipient block of the message/delivery-status part. Original-Recipient names the
    address as we sent it, so it comes before Final-Recipient, which may be an alias it was expanded to
    (Sisimai takes Final-Recipient: two samples of the corpus differ from it for that reason)."""
    reports = [p for p in parts if p.get_content_type() in DSN_TYPES]
    if not reports:
        return None
    notice = rules.split_original(_notice_text(parts))[0]
    lowered = notice.lower()
    found: list[Recipient] = []
    delivered = delays = 0
    for block in (b for part in reports for b in _fields(part)):
        target = _first(block, "original-recipient", "final-recipient", "x-actual-recipient")
        address = rules.normalize(target.rpartition(";")[2])
        if not address:
            continue
        recipient = _dsn_recipient(block, address, notice, lowered)
        if recipient is None:
            delivered += 1
        else:
            found.append(recipient)
            delays += _first(block, "action").lower().startswith("delayed")
        if len(found) >= MAX_RECIPIENTS:
            break
    recipients = _unique(found)
    if recipients:
        return Verdict(Kind.BOUNCE, recipients, "RFC 3464 DSN" + (" (delayed)" if delays == len(found) else ""))
    if delivered:
        return Verdict(Kind.NOT_BOUNCE, (), "RFC 3464 DSN reporting delivery, not a failure")
    return None


def _dsn_recipient(block: list[tuple[str, str]], address: str, notice: str, lowered: str) -> Recipient | None:
    """One recipient's failure, or None for a recipient the DSN reports delivered, relayed or expanded."""
    action = _first(block, "action").lower()
    field = rules.status_in(_first(block, "status"))
    code = _first(block, "diagnostic-code")
    diagnostic = rules.one_line(code.partition(";")[2] if ";" in code[:12] else code)
    status = field if field and not field.endswith(".0.0") else rules.status_in(diagnostic) or field
    if action.startswith(DONE) or _first(block, "status").startswith("2"):
        return None
    paragraph = "" if diagnostic else rules.paragraph_of(notice, address, lowered)
    hard = not action.startswith("delayed") and rules.is_hard(status, diagnostic or paragraph or notice, notice)
    return Recipient(address, hard, status, diagnostic or rules.one_line(paragraph))


def _report_mark(msg: Message) -> str | None:
    if msg.get_content_type() == "multipart/report":
        return f"multipart/report ({_param(msg, 'report-type') or 'no report-type'}) without a readable report"
    return None


def _text_bounce(msg: Message, parts: list[Message], mark: str) -> Verdict:
    """A notice in some MTA's own words: X-Failed-Recipients, then flufl.bounce, then this package's rules,
    then the To: of the returned original (a newsletter copy has exactly one). Each source is asked only
    when the ones before it found nobody."""
    notice, original = rules.split_original(_notice_text(parts))
    exclude = {a.lower() for a in _addresses([_header(msg, n) for n in ROUTING])}
    for reason, found in _sources(msg, parts, notice, original):
        kept: dict[str, tuple[str, bool | None]] = {}
        for address, permanent in found:
            if rules.keep(address, exclude) and len(kept) < MAX_RECIPIENTS:
                kept.setdefault(address.lower(), (address, permanent))
        if kept:
            return Verdict(Kind.BOUNCE, _text_recipients(list(kept.values()), notice), reason)
    return Verdict(Kind.UNKNOWN, (), f"{mark}, but no failed recipient found")


def _sources(msg: Message, parts: list[Message], notice: str, original: str) -> Iterator[tuple[str, Pairs]]:
    yield "X-Failed-Recipients header", [(a, None) for a in _addresses([_header(msg, "x-failed-recipients")])]
    detector, pairs = rules.flufl_failures(msg)
    yield detector, list(pairs)
    texts = (rules.normalize(t) for t in rules.text_recipients(notice, original))
    yield "notice text", [(a, None) for a in texts if a]
    yield "To: of the original", [(a, None) for a in _addresses(_original_headers(parts, "to"))]


def _text_recipients(found: Pairs, notice: str) -> tuple[Recipient, ...]:
    """Each address with the notice's words about it; the whole notice speaks for an address it says nothing
    about (the usual single-recipient notice)."""
    lowered, overall = notice.lower(), rules.status_in(notice)
    recipients = []
    for address, permanent in found:
        paragraph = rules.paragraph_of(notice, address, lowered)
        status = rules.status_in(paragraph) or overall
        words = paragraph if rules.telling(paragraph) else notice
        hard = permanent is not False and rules.is_hard(status, words, notice)
        recipients.append(Recipient(address, hard, status, rules.one_line(paragraph or notice)))
    return tuple(recipients)


def _original_headers(parts: list[Message], name: str) -> list[str]:
    """A header of the returned original, attached whole (message/rfc822) or as headers (text/rfc822-headers)."""
    for part in parts:
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return [str(v) for v in inner[0].get_all(name, [])]
        if part.get_content_type() == "text/rfc822-headers":
            return [str(v) for v in HeaderParser().parsestr(_text(part), headersonly=True).get_all(name, [])]
    return []


def _unique(recipients: Iterable[Recipient]) -> tuple[Recipient, ...]:
    seen: dict[str, Recipient] = {}
    for recipient in recipients:
        seen.setdefault(recipient.address.lower(), recipient)
    return tuple(seen.values())[:MAX_RECIPIENTS]
