"""Vendors' notices read in their own layouts, as Sisimai 4.25.15's lib/Sisimai/Lhost/<MTA>.pm modules read them:
where the failed recipients are written, the words about each, the SMTP command it failed at, and the phrases a
vendor uses for a reason the generic words would miss (Exim's "all host address lookups failed permanently" is
hostunknown, PowerMTA's X-PowerMTA-BounceCategory "bad-mailbox" userunknown, …).

Each vendor is a parser (``lhost_mta.py`` for mail servers, ``lhost_cloud.py`` for providers and gateways)
that is asked, in Sisimai's order, whether the notice is its own (by its headers: cheap) and then for its
``Record`` list; the first that answers wins, as in Sisimai::Message. A parser reads a ``Mail``: the headers and
the body flattened as Sisimai's MIME ``makeflat`` flattens it (the text parts decoded, each message/* part
under its own Content-Type line), so the layouts the Perl modules match are matched here unchanged.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from functools import cached_property

from . import mime

MAX_RECORDS = 1000
MAX_BODY = 64 * 1024
MAX_LINE = 1000    # a line longer than RFC 5322's 998 is cut: no vendor pattern then backtracks over more
MAX_WORDS = 4000   # a diagnosis is cut to this before any pattern reads it


@dataclass
class Record:
    """One failed recipient as a notice describes it (Sisimai::Lhost ``DELIVERYSTATUS``)."""

    recipient: str = ""
    diagnosis: str = ""
    status: str = ""
    command: str = ""
    reason: str = ""
    action: str = ""
    rhost: str = ""
    spec: str = ""
    alias: str = ""
    replycode: str = ""
    feedbacktype: str = ""
    notes: dict[str, str] = field(default_factory=dict)  # a parser's own scratch (alterrors, category, …)

    def add(self, key: str, text: str, sep: str = " ") -> None:
        """Append to a scratch note (Sisimai's ``$v->{'alterrors'} .= ...``)."""
        self.notes[key] = f"{self.notes[key]}{sep}{text}" if self.notes.get(key) else text


class Records:
    """The records a parser is building, the last one open (Sisimai's ``$dscontents``)."""

    def __init__(self) -> None:
        self.items: list[Record] = [Record()]
        self.count = 0

    @property
    def v(self) -> Record:
        return self.items[-1]

    def start(self, recipient: str = "") -> Record:
        """A new recipient: a fresh record unless the open one has none yet."""
        if self.v.recipient and len(self.items) < MAX_RECORDS:
            self.items.append(Record())
        self.v.recipient = recipient
        self.count += 1
        return self.v

    def done(self) -> list[Record] | None:
        return [r for r in self.items if r.recipient] if self.count else None


@dataclass(frozen=True)
class Mail:
    """A notice as a vendor parser reads it: lowercased header names to their (first) values, every Received
    header, and the flattened body, made only when a parser whose headers matched asks for it (most notices are
    claimed or passed over on their headers alone: 0.3 ms a message saved on the corpus)."""

    head: dict[str, str]
    received: tuple[str, ...]
    msg: Message = field(compare=False, repr=False, default_factory=Message)
    leaves: tuple[Message, ...] = field(compare=False, repr=False, default=())

    @classmethod
    def of(cls, msg: Message, leaves: list[Message], subject: str) -> Mail:
        """``subject`` is the decoded Subject, as Sisimai::Message decodes it before any module looks."""
        head: dict[str, str] = {}
        received: list[str] = []
        for name, value in msg.raw_items():
            key, text = name.lower(), " ".join(str(value).split())[:mime.MAX_HEADER]
            head.setdefault(key, text)
            if key == "received" and len(received) < 50:
                received.append(text)
        head["subject"] = subject
        return cls(head, tuple(received), msg, tuple(leaves))

    @cached_property
    def body(self) -> str:
        return flatten(self.msg, list(self.leaves))

    def h(self, name: str) -> str:
        return self.head.get(name, "")

    @property
    def subject(self) -> str:
        return self.h("subject")

    @property
    def sender(self) -> str:
        return self.h("from")

    def fillet(self, pattern: str | re.Pattern[str]) -> tuple[str, str]:
        """The notice's part and the returned original, cut at ``pattern`` (Sisimai::RFC5322 ``fillet``)."""
        found = re.search(pattern, self.body, re.MULTILINE)
        return (self.body[:found.start()], self.body[found.end():]) if found else (self.body, "")


Parser = Callable[[Mail], "list[Record] | None"]
PARSERS: dict[str, Parser] = {}
VENDORS = ("lhost_mta", "lhost_cloud", "lhost_webmail", "lhost_gateway", "lhost_mobile", "lhost_other")
# Sisimai::Order ``another``: the order the modules are tried in when the subject names none of them.
ORDER = ("MailRu Yandex Exim Sendmail Aol Office365 Exchange2007 Exchange2003 AmazonWorkMail AmazonSES Barracuda "
         "InterScanMSS KDDI SurfControl Verizon ApacheJames X2 X5 FML Postfix GSuite Yahoo Outlook GMX MessagingServer "
         "EinsUndEins Domino Notes qmail Courier OpenSMTPD Zoho MessageLabs MXLogic MailFoundry McAfee V5sendmail "
         "mFILTER SendGrid ReceivingSES Amavis PowerMTA GoogleGroups Gmail EZweb IMailServer MailMarshalSMTP "
         "Activehunter Bigfoot Biglobe Facebook X4 X1 X3 X6").split()
# Sisimai::Order ``make``: the modules tried first for a subject's first words.
BY_SUBJECT = {
    "aws-notification": "AmazonSES", "delivery-failure": "Domino X2", "delivery-notification": "MessagingServer",
    "delivery-report": "PowerMTA", "delivery-status": "GSuite Outlook GoogleGroups McAfee OpenSMTPD AmazonSES "
    "AmazonWorkMail ReceivingSES Gmail X3", "failed-delivery": "X2", "failure-delivery": "X2",
    "failure-notice": "Yahoo qmail mFILTER Activehunter X4", "loop-alert": "FML", "mail-could": "InterScanMSS",
    "mail-delivery": "Exim MailRu GMX EinsUndEins Zoho MessageLabs MXLogic", "mail-failure": "Exim", "mail-not": "X4",
    "mail-system": "EZweb", "message-delivery": "MailFoundry", "message-frozen": "Exim", "message-you": "Barracuda",
    "non-recapitabile": "Exchange2007", "non-remis": "Exchange2007", "notice": "Courier", "permanent-delivery": "X4",
    "postmaster-notify": "Sendmail", "returned-mail": "Sendmail Aol V5sendmail Bigfoot Biglobe X1",
    "sorry-your": "Facebook", "there-was": "X6", "undeliverable": "Office365 Exchange2007 Aol Exchange2003",
    "undeliverable-mail": "Amavis MailMarshalSMTP IMailServer", "undeliverable-message": "Notes Verizon",
    "undelivered-mail": "Postfix Aol SendGrid Zoho", "warning": "Sendmail Exim"}


def parser(name: str) -> Callable[[Parser], Parser]:
    """Register a vendor's parser under Sisimai's module name."""
    def register(fn: Parser) -> Parser:
        PARSERS[name] = fn
        return fn
    return register


def read(mail: Mail) -> tuple[str, list[Record]] | None:
    """The first vendor parser that reads the notice, with its records: those its subject names first, then the
    rest in Sisimai's order."""
    parsers = _parsers()
    for name in dict.fromkeys((*BY_SUBJECT.get(_subject_key(mail.subject), "").split(), *ORDER)):
        found = parsers[name](mail) if name in parsers else None
        if found:
            return name, found[:MAX_RECORDS]
    return None


def _parsers() -> dict[str, Parser]:
    """The registry, filled by importing the vendor modules (their ``@parser`` decorators) the first time."""
    if not PARSERS:
        for module in VENDORS:
            importlib.import_module(f"{__package__}.{module}")
    return PARSERS


def _subject_key(subject: str) -> str:
    """The subject's first words as Sisimai::Order ``make`` joins them ("Undelivered Mail …" is undelivered-mail)."""
    words = re.sub(r"[_\[\] ]+", " ", subject).strip()
    if ":" in words.split(" ")[0][1:]:
        key = words.split(":")[0].lower()
    else:
        key = "-".join(words.lower().split(" ", 2)[:2])
    return re.sub(r'[:",*]', "", key)


# --- what every parser uses ------------------------------------------------------------------------------------


def flatten(msg: Message, leaves: list[Message]) -> str:
    """The body as Sisimai's MIME ``makeflat`` gives it: text parts decoded (HTML only when there is no plain
    text), message/* and text/rfc822-headers parts under their Content-Type line, the returned original's headers."""
    if not msg.is_multipart():
        return "\n".join(line[:MAX_LINE] for line in mime.text(msg)[:MAX_BODY].split("\n"))
    plain = any(p.get_content_type() == "text/plain" for p in leaves)
    out: list[str] = []
    for part in leaves:
        kind = part.get_content_type()
        if kind == "text/plain" or kind == "text/html" and not plain:
            out.append(mime.text(part))
        elif kind == "message/rfc822":
            inner = part.get_payload()
            headers = inner[0].items() if isinstance(inner, list) and inner and isinstance(inner[0], Message) else []
            out.append("Content-Type: message/rfc822\n" + "".join(f"{k}: {v}\n" for k, v in headers))
        elif kind.startswith("message/") or kind == "text/rfc822-headers":
            out.append(f"Content-Type: {kind}\n" + _raw(part))
    body = "\n".join(out).replace("\r\n", "\n")[:MAX_BODY]
    return "\n".join(line[:MAX_LINE] for line in body.split("\n"))


def _raw(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list):
        return "\n".join("".join(f"{k}: {v}\n" for k, v in p.items()) + str(p.get_payload() or "")
                         for p in payload if isinstance(p, Message))
    return mime.text(part) or str(payload)


def sweep(text: str) -> str:
    """Sisimai::String ``sweep``: one line, no tabs, a trailing MIME boundary cut off; at most ``MAX_WORDS``."""
    text = text[:MAX_WORDS]
    return re.sub(r" -{2,}[^ \t].+$", "", re.sub(r" +", " ", text.replace("\n", " ").replace("\t", "")).strip())


def s3s4(text: str) -> str:
    """The address in "Name <addr>" or "<addr>" (Sisimai::Address ``s3s4``), lowercased domain left as is."""
    found = re.search(r"<([^<>\s]+@[^<>\s]+)>", text)
    value = found.group(1) if found else text.strip().strip("<>").split()[0] if text.strip() else ""
    return value.strip("\"'")


def is_address(text: str) -> bool:
    return bool(re.fullmatch(r"[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+", text))


def lines(text: str) -> Iterator[str]:
    yield from text.split("\n")


def after(text: str, start: Callable[[str], bool], inclusive: bool = False) -> Iterator[str]:
    """The lines after the first one ``start`` accepts (Sisimai's ``$readcursor``), that one too if ``inclusive``
    (the modules that read on from the starting line instead of skipping it)."""
    reading = False
    for line in text.split("\n"):
        if reading:
            yield line
        elif start(line):
            reading = True
            if inclusive:
                yield line


def phrase_reason(text: str, table: Mapping[str, Iterable[str]]) -> str:
    """The first reason one of whose phrases is in ``text`` (a vendor's ``$messagesof``)."""
    return next((reason for reason, phrases in table.items() if any(p in text for p in phrases)), "")


def pattern_reason(text: str, table: Mapping[str, re.Pattern[str]]) -> str:
    return next((reason for reason, pattern in table.items() if pattern.search(text)), "")


# The SMTP command a plain notice names ("in reply to RCPT TO command", "after RCPT TO:", ">>> RCPT TO:<…>").
COMMAND_WORDS = re.compile(r"(?:in reply to (?:end of )?|after (?:end of )?|>>> ?|\b)(EHLO|HELO|MAIL|RCPT|DATA)"
                           r"(?: FROM| TO)?(?: command\b|:)", re.IGNORECASE)
FIELD = re.compile(r"^(Original-Recipient|Final-Recipient|X-Actual-Recipient|Diagnostic-Code|Reporting-MTA"
                   r"|Received-From-MTA|Remote-MTA|Action|Status|Arrival-Date|Last-Attempt-Date):[ ]*(.*)$",
                   re.IGNORECASE)
PER_MESSAGE = ("reporting-mta", "received-from-mta", "arrival-date")
ACTIONS = {"deliverable": "delivered", "expired": "delayed", "failure": "failed"}


def dsn_field(line: str) -> tuple[str, str, str] | None:
    """An RFC 3464 field line as (lowercased name, type, value), as Sisimai::RFC1894 ``field`` splits it; None
    for anything else. The type is the part before ";" of an address, a diagnostic or a host."""
    found = FIELD.match(line)
    if not found:
        return None
    name, value = found.group(1).lower(), found.group(2)
    if name.endswith(("recipient", "-code", "-mta")):
        kind, semi, rest = value.partition(";")
        if not semi:
            return None
        rest = rest.strip()
        return name, kind.strip().upper(), rest.lower() if name.endswith("-mta") else rest
    if name == "action":
        word = value.strip().lower().split(" ")[0] if value.strip() else ""
        return (name, "", ACTIONS.get(word, word)) if word else None
    if name == "status":
        code = re.match(r"[245]\.\d+\.\d+", value.strip())
        return (name, "", code.group(0)) if code else None
    return name, "", value.strip()


def read_dsn(found: Records, line: str, per_message: dict[str, str]) -> bool:
    """Read one RFC 3464 field line into the records as Sisimai's DSN-layout modules do; False if it is not one."""
    parsed = dsn_field(line)
    if parsed is None:
        return False
    name, kind, value = parsed
    v = found.v
    if name == "final-recipient":
        found.start(value)
    elif name in ("original-recipient", "x-actual-recipient"):
        v.alias = value
    elif name == "diagnostic-code":
        v.spec, v.diagnosis = kind, value
    else:
        key = {"remote-mta": "rhost", "reporting-mta": "rhost", "received-from-mta": "lhost", "action": "action",
               "status": "status"}.get(name)
        if key == "lhost" or name in PER_MESSAGE:
            per_message[key or name] = value
        elif key:
            setattr(v, key, value)
    return True


def dsn_records(text: str, start: Callable[[str], bool] | None = None,
                other: Callable[[Records, str, str], None] | None = None,
                inclusive: bool = False, blanks: bool = False) -> tuple[Records, dict[str, str]]:
    """The RFC 3464 loop most DSN-layout modules share: fields into records, a folded Diagnostic-Code joined, and
    every other line handed to ``other`` (records, line, previous line) after the ``start`` line."""
    found, per_message, previous = Records(), dict[str, str](), ""
    for line in (after(text, start, inclusive) if start else lines(text)):
        if not line:
            if blanks and other:
                other(found, line, previous)
            previous = line
            continue
        if read_dsn(found, line, per_message):
            pass
        elif previous.lower().startswith("diagnostic-code:") and line[:1] in (" ", "\t"):
            found.v.diagnosis += " " + line.strip()
            line = "Diagnostic-Code: " + line
        elif other:
            other(found, line, previous)
        previous = line
    for record in found.items:
        record.rhost = record.rhost or per_message.get("rhost", "")
    return found, per_message


def received_hosts(value: str) -> list[str]:
    """The "from" and "by" hosts of a Received header (Sisimai::RFC5322 ``received``)."""
    if re.search(r"qmail[ \t]+.+invoked[ \t]+", value):
        return []
    found = re.match(r"from[ \t]+(.+)[ \t]+by[ \t]+([^ ]+)", value)
    if found:
        source, by = found.group(1), found.group(2)
    else:
        found = re.search(r"\bby[ \t]+([^ ]+)(.+)", value)
        if not found:
            return []
        source, by = found.group(1) + found.group(2), found.group(1)
    if " " in source:
        words = source.split()
        names = [w.strip("()") for w in words if not re.fullmatch(r"[(\[]\d+\.\d+\.\d+\.\d+[)\]]", w)]
        ips = [w.strip("[]()") for w in words if re.fullmatch(r"[(\[]\d+\.\d+\.\d+\.\d+[)\]]", w)]
        public = [a for a in ips if not re.match(r"10\.|127\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.", a)]
        source = next((n for n in names if "." in n), "") or (public[0] if public else ips[-1] if ips else "")
    return [re.sub(r"[()\[\];?]", "", h) for h in (source, by)]
