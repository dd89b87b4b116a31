"""RFC 3464 delivery status notifications that no vendor parser claimed (Sisimai::RFC3464, the fallback), and the
step every failed recipient goes through whoever read it: Sisimai's reason for it and, from that, hard or soft.

Original-Recipient names the address as the engine sent it, so it is the address a recipient is known by here;
Sisimai reports the Final-Recipient (which may be an alias the receiving side expanded it to) and keeps the other
as its ``alias``; ``bench/classify_corpus.py`` counts either as found (they differ in 7 of the 570 bounces of
Sisimai's set-of-emails). A DSN's words are its Diagnostic-Code; where that is missing the notice's paragraph
about the recipient speaks. A local delivery agent's words (dovecot, mail.local, procmail, maildrop, vpopmail,
vmailmgr: Sisimai::MDA) name the reason themselves.
"""

from __future__ import annotations

import re
from email.message import Message

from . import lhost, mime, reasons, rhost, rules
from .verdict import Recipient

MAX_RECIPIENTS = lhost.MAX_RECORDS
DONE = ("delivered", "relayed", "expanded")
# the report's part; some MTAs (XWall) label it message/xdelivery-status, which Sisimai's RFC3464 reads too
TYPES = ("message/delivery-status", "message/global-delivery-status", "message/xdelivery-status")
COMMAND = re.compile(r" (RCPT|MAIL|DATA) +command\b")
ERROR_LINE = re.compile(r"^(?:[45]\d\d[ \t]+|<[^@\s]+@[^@\s]+>:?[ \t]+).*$", re.MULTILINE)
MDA_START = re.compile(r"Your message to [^ ]+ was automatically rejected:$|(?:mail\.local|procmail|maildrop"
                       r"|vdelivermail|vdeliver): ")
MDA_NAMES = (("dovecot", "Your message to"), ("mail.local", "mail.local: "), ("procmail", "procmail: "),
             ("maildrop", "maildrop: "), ("vpopmail", "vdelivermail: "), ("vmailmgr", "vdeliver: "))
# Sisimai::MDA $messagesof, copied (BSD-2-Clause): each agent's words for its reasons, matched lowercased.
MDA: dict[str, dict[str, tuple[str, ...]]] = {
    "dovecot": {"userunknown": ("mailbox doesn't exist: ",), "mailboxfull": (
        "quota exceeded", "quota exceeded (mailbox for user is full)", "not enough disk space")},
    "mail.local": {"userunknown": (": unknown user:", ": user unknown", ": invalid mailbox path",
                                   ": user missing home directory"),
                   "mailboxfull": ("disc quota exceeded", "mailbox full or quota exceeded"),
                   "systemerror": ("temporary file write error",)},
    "procmail": {"mailboxfull": ("quota exceeded while writing",), "systemfull": ("no space left to finish writing",)},
    "maildrop": {"userunknown": ("invalid user specified.", "cannot find system user"),
                 "mailboxfull": ("maildir over quota.",)},
    "vpopmail": {"userunknown": ("sorry, no mailbox here by that name.",),
                 "filtered": ("account is locked email bounced", "user does not exist, but will deliver to "),
                 "mailboxfull": ("domain is over quota", "user is over quota")},
    "vmailmgr": {"userunknown": ("invalid or unknown base user or domain", "invalid or unknown virtual user",
                                 "user name does not refer to a virtual user"),
                 "mailboxfull": ("delivery failed due to system quota violation",)}}


def records(msg: Message, leaves: list[Message], mail: lhost.Mail) -> tuple[list[lhost.Record], int] | None:
    """Each failed recipient of the message/delivery-status parts, and how many it reports delivered; None when
    there is no such part."""
    reports = [p for p in leaves if p.get_content_type() in TYPES]
    if not reports:
        return None
    notice = rules.split_original(mime.notice_text(leaves))[0]
    lowered, reporting = notice.lower(), ""
    found: list[lhost.Record] = []
    delivered = 0
    for block in (b for part in reports for b in mime.fields(part)):
        reporting = reporting or mime.first(block, "reporting-mta").partition(";")[2].strip().lower()
        record = _record(block, notice, lowered)
        if record is None:
            continue
        if record.action.startswith(DONE) or record.status.startswith("2"):
            delivered += 1
        elif len(found) < MAX_RECIPIENTS:
            record.rhost = record.rhost or reporting
            found.append(record)
    agent = _mda(mail)
    for record in found:
        if agent:
            record.reason, record.command = agent[0] or "undefined", ""
            record.diagnosis = agent[1] or record.diagnosis
        record.status = record.status or reasons.find_status(record.diagnosis)
    return found, delivered


def _record(block: mime.Fields, notice: str, lowered: str) -> lhost.Record | None:
    """One per-recipient block as a record: the address as sent (Original-Recipient first), its words, status
    (an x.0.0 field gives way to a code in the words), command and Remote-MTA."""
    named = {n: rules.normalize(mime.first(block, n).rpartition(";")[2]) for n in
             ("original-recipient", "final-recipient", "x-actual-recipient")}
    usable = [a for a in named.values() if a and not a.startswith(("|", "/"))]
    if not usable:
        return None
    code = mime.first(block, "diagnostic-code")
    spec, _, words = code.partition(";") if ";" in code[:16] else ("", "", code)
    diagnosis = " ".join(words.split()) or _other_words(block, notice) \
        or " ".join(rules.paragraph_of(notice, usable[0], lowered).split())
    field = rules.status_in(mime.first(block, "status")) or ""
    status = field if field and not field.endswith(".0.0") else reasons.find_status(diagnosis) or field
    command = COMMAND.search(diagnosis)
    action = mime.first(block, "action").lower().split(" ")[0] if mime.first(block, "action") else ""
    return lhost.Record(usable[0], diagnosis[:4000], status, command.group(1) if command else "",
                        action=lhost.ACTIONS.get(action, action),
                        rhost=mime.first(block, "remote-mta").partition(";")[2].strip().lower(),
                        spec=spec.strip().upper(), alias=named["final-recipient"] or "")


def _other_words(block: mime.Fields, notice: str) -> str:
    """Sisimai::RFC3464's words for a block without a Diagnostic-Code (its ``alterrors``): a Status field that is
    a reply ("553 Exceeded maximum inbound message size"), else the notice's lines that start with a reply code
    or an address in angle brackets."""
    status = re.fullmatch(r"(\d+ +.+)", mime.first(block, "status"))
    if status:
        return status.group(1)
    return " ".join(line.strip() for line in ERROR_LINE.findall(notice))[:4000]


def _mda(mail: lhost.Mail) -> tuple[str, str] | None:
    """A local delivery agent's reason and words (Sisimai::MDA), for a notice from a mailer daemon."""
    if not re.match(r"(?:mail delivery subsystem|mailer-daemon|postmaster)", mail.sender.lower()):
        return None
    agent, lines = "", []
    for line in mail.body.split("\n"):
        if not agent:
            if not line or not MDA_START.match(line):
                continue
            agent = next(name for name, start in MDA_NAMES if line.startswith(start))
        lines.append(line)
        if not line:
            break
    if not agent:
        return None
    for reason, phrases in MDA[agent].items():
        said = next((line for line in lines if any(p in line.lower() for p in phrases)), "")
        if said:
            return reason, said
    return "", ""


def _host(value: str) -> str:
    """A remote host name as Sisimai::Data ``make`` cleans it: no brackets, nothing up to "=", the first word."""
    words = re.sub(r"^.+=", "", re.sub(r"[\[\]()]", "", value)).split()
    return words[0].rstrip(".") if words else ""


def recipients(found: list[lhost.Record], mail: lhost.Mail) -> tuple[Recipient, ...]:
    """Each record as a failed (or, for a provider's complaint, complaining) recipient with Sisimai's reason and
    hard or soft; records naming no address, or a delivery, are left out."""
    seen: dict[str, Recipient] = {}
    for record in found:
        address = rules.normalize(lhost.s3s4(record.recipient) if "<" in record.recipient else record.recipient)
        if not address or record.status.startswith("2.") or address.lower() in seen:
            continue
        failure = reasons.Failure(record.status, record.diagnosis, record.command, record.action, record.reason,
                                  record.spec)
        rule = rhost.rule_for(_host(record.rhost)) or rhost.rule_for(address.rpartition("@")[2])
        reason = reasons.reason_of(failure, rule)
        if reason in ("delivered", "vacation"):  # Sisimai's two reasons that are no failure
            continue
        hard = reason == "feedback" or reasons.is_hard(reason, f"{record.status} {record.diagnosis}")
        status = record.status or reasons.find_status(record.diagnosis)
        seen[address.lower()] = Recipient(address, hard, status or None, rules.one_line(record.diagnosis), reason)
    return tuple(seen.values())[:MAX_RECIPIENTS]


# Sisimai::RFC3464's last resort for a notice with no DSN part (BODY_PARSER_FOR_FALLBACK), copied: a line that
# starts with an address (or names one after "Recipient:", "could not be delivered to:", …) is a recipient.
FALLBACK_FROM = re.compile(r"\b(?:postmaster|mailer-daemon|root)@")
FALLBACK_SUBJECT = re.compile(r"delivery (?:failed|failure|report)|failure notice|mail (?:delivery|error)"
                              r"|non-delivery|returned mail|undeliverable mail|warning: ")
FALLBACK_SKIP = re.compile(r"^-+=|^\s+$|^\s*--|^\s+=\d+|^hi !|content-(?:description|disposition|transfer-encoding"
                           r"|type): |(?:name|charset)=|--$|: --------")
FALLBACK_STOP = re.compile(
    r"^\*\*\* .+ .+ \*\*\*|^content-type: message/delivery-status|^here is a copy of the first part of the message"
    r"|^the non-delivered message is attached to this message.|^received:[ \t]*|^received-from-mta:[ \t]*"
    r"|^reporting-mta:[ \t]*|^return-path:[ \t]*|^a copy of the original message below this line:"
    r"|attachment is a copy of the message|below is a copy of the original message:"
    r"|below this line is a copy of the message|message contains .+ file attachments|message text follows: "
    r"|original message follows|the attachment contains the original mail headers|the first \d+ lines "
    r"|unsent message below|your message reads \(in part\):|^content-type: *(?:message/rfc822|text/rfc822-headers)")
FALLBACK_ADDRESS = re.compile(
    r"(?:^\s*|^\".+\"\s*|^[ \t]*recipient:[ \t]*|^ *address: |addressed to |could not be delivered to: "
    r"|delivered to +|delivery failed: |did not reach the following recipient: |error-for: +|failed recipient: "
    r"|failed to deliver to |intended recipient: |mailbox is full: |rcpt to:|smtp server <.+> rejected recipient "
    r"|the following recipients returned permanent errors: |the following message to |unknown user: "
    r"|undeliverable to |undeliverable address: *|you sent mail to |your message to )"
    r"['\"]?<?([^\s@=<>]+@[-.0-9a-z]+\.[0-9a-z]+)>?['\"]?")


def fallback(mail: lhost.Mail) -> list[tuple[str, str]]:
    """The recipients and their words in a notice only Sisimai's last resort reads, when it is from a mailer
    daemon or says it is a failure."""
    if not (FALLBACK_FROM.search(mail.sender.lower()) or FALLBACK_SUBJECT.search(mail.subject.lower())
            or re.search(r"<>|mailer-daemon", mail.h("return-path").lower())):
        return []
    found: list[list[str]] = []
    for line in mail.body.split("\n"):
        lowered = line.lower()
        if FALLBACK_STOP.search(lowered):
            break
        if not line or FALLBACK_SKIP.search(lowered) or line.startswith("*"):
            continue
        address = FALLBACK_ADDRESS.search(lowered)
        if address and (not found or found[-1][0] != address.group(1)) and len(found) < MAX_RECIPIENTS:
            found.append([address.group(1), ""])
        if found:
            found[-1][1] += " " + line
    return [(address, " ".join(words.split())) for address, words in found]
