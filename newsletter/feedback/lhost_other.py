"""Notices in their own plain layouts (Lotus Domino and Notes, Exchange 2003, Sun/Oracle Messaging Server, IMail,
Apache James, fml, m-FILTER, and the unnamed MTAs Sisimai calls X1, X2, X3, X5 and X6), each ported from the
Sisimai 4.25.15 module named in its decorator (lib/Sisimai/Lhost/<Name>.pm, BSD-2-Clause), its phrase tables
copied from the module."""

from __future__ import annotations

import base64
import re
from email.header import decode_header, make_header

from .lhost import (
    Mail,
    Record,
    Records,
    after,
    dsn_field,
    dsn_records,
    parser,
    pattern_reason,
    phrase_reason,
    received_hosts,
    s3s4,
    sweep,
)
from .lhost_cloud import RFC822
from .reasons import find_status

DOMINO = {"userunknown": ("not listed in Domino Directory", "not listed in public Name & Address Book",
                          "non répertorié dans l'annuaire Domino", "Domino ディレクトリには見つかりません"),
          "filtered": ("Cannot route mail to user",), "systemerror": ("Several matches found in Domino Directory",)}


@parser("Domino")
def domino(mail: Mail) -> list[Record] | None:
    if not re.match(r"DELIVERY(?: |_)FAILURE:", mail.subject):
        return None
    notice, _ = mail.fillet(RFC822)
    found = Records()
    for e in after(notice, lambda x: x.startswith("Your message")):
        address, field = re.fullmatch(r"  ([^ ]+@[^ ]+)", e), dsn_field(e)
        if not e:
            continue
        if e == "was not delivered to:":
            found.start(e)
        elif address:
            found.v.recipient = s3s4(address.group(1))
        elif e == "because:" or found.v.diagnosis == "because:":
            found.v.diagnosis = e
        elif field and field[0] == "diagnostic-code":
            found.v.spec, found.v.diagnosis = found.v.spec or field[1], found.v.diagnosis or field[2]
        elif field and field[0] in ("action", "status"):
            setattr(found.v, field[0], field[2])
        elif field and field[0] == "remote-mta":
            found.v.rhost = field[2]
    for r in found.items:
        r.diagnosis, r.recipient = sweep(r.diagnosis), s3s4(r.recipient)
        r.reason = phrase_reason(r.diagnosis, DOMINO) or r.reason
    return found.done()


@parser("Notes")
def notes(mail: Mail) -> list[Record] | None:
    if not mail.subject.startswith("Undeliverable message"):
        return None
    notice, original = mail.fillet(r"^------- Returned Message --------")
    found = Records()
    for e in after(notice, lambda x: x.startswith("------- Failure Reasons ")):
        if re.match(r"[^ ]+@[^ ]+", e):
            found.start(e)
        elif e and not e.startswith("-"):
            found.v.diagnosis += e
    if not found.count:
        to = re.search(r"^To:[ ]*(.+)$", original, re.MULTILINE)
        if to and s3s4(to.group(1)):
            found.start(s3s4(to.group(1)))
    table = {"userunknown": ("User not listed in public Name & Address Book", "ディレクトリのリストにありません"),
             "networkerror": ("Message has exceeded maximum hop count",)}
    for r in found.items:
        r.diagnosis, r.recipient = sweep(r.diagnosis), s3s4(r.recipient)
        r.reason = phrase_reason(r.diagnosis, table) or r.reason
    return found.done()


EXCHANGE2003 = {"onhold": ("000B099C", "000B09AA", "000B09B6"), "userunknown": ("000C05A6",),
                "systemerror": ("00010256", "000D06B5"), "networkerror": ("00120270",),
                "contenterror": ("00050311", "000502CC"), "securityerror": ("000B0981",), "filtered": ("000C0595",)}


@parser("Exchange2003")
def exchange2003(mail: Mail) -> list[Record] | None:
    if not ("x-ms-embedded-report" in mail.head
            or mail.h("x-mailer").startswith(("Internet Mail Service (", "Microsoft Exchange Server Internet Mail "
                                                                          "Connector"))
            or mail.h("x-mimeole").startswith("Produced By Microsoft Exchange")
            or any(" with Internet Mail Service (" in r for r in mail.received)):
        return None
    notice, _ = mail.fillet(RFC822)
    found, header, status_part = Records(), set[str](), False
    for e in after(notice, lambda x: x.startswith("Your message")):
        if status_part:
            break
        if len(header) < 3:
            for name, pattern in (("to", r"[ \t]+To:[ \t]+(.+)"), ("subject", r"[ \t]+Subject:[ \t]+(.+)"),
                                  ("date", r"[ \t]+Sent:[ \t]+(?:[A-Z][a-z]{2},.+[-+]\d{4}|\d+/\d+/\d+[ \t]+\d+:"
                                           r"\d+:\d+[ \t].+)")):
                header.update({name} if re.fullmatch(pattern, e) else set())
            continue
        address = re.fullmatch(r"[ \t]*([^ ]+@[^ ]+) on[ \t]*.*", e) \
            or re.fullmatch(r"[ \t]*.+(?:SMTP|smtp)=([^ ]+@[^ ]+) on[ \t]*.*", e)
        exch = re.fullmatch(r"[ \t]+(MSEXCH:.+)", e)
        if address:
            found.start(address.group(1)).notes["msexch"] = ""
        elif exch:
            found.v.diagnosis += exch.group(1)
        elif not found.v.notes.get("msexch"):
            if found.v.diagnosis.startswith("MSEXCH:"):
                found.v.notes["msexch"], status_part = "1", True
                found.v.diagnosis += " " + e
            else:
                found.v.add("alterrors", e)
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        code = re.fullmatch(r"MSEXCH:.+[ \t]*\(([0-9A-F]{8})\)[ \t]*(.*)", r.diagnosis)
        if code:
            r.reason = next((r for r, codes in EXCHANGE2003.items() if code.group(1) in codes), "")
            r.diagnosis = code.group(2)
        if not r.reason and r.notes.get("alterrors"):
            r.diagnosis = sweep(r.notes["alterrors"] + " " + r.diagnosis)
    return found.done()


@parser("MessagingServer")
def messaging_server(mail: Mail) -> list[Record] | None:
    if "Boundary_(ID_" not in mail.h("content-type") and not mail.subject.startswith("Delivery Notification: "):
        return None
    notice, _ = mail.fillet(r"^(?:Content-type:[ \t]*message/rfc822|Return-path:[ \t]*)")
    found = Records()
    start = "This report relates to a message you sent with the following header fields:"
    for e in after(notice, lambda x: x.startswith(start)):
        recipient = re.fullmatch(r"[ \t]+Recipient address:[ \t]*([^ ]+@[^ ]+)", e)
        original = re.fullmatch(r"[ \t]+Original address:[ \t]*([^ ]+@[^ ]+)", e)
        reason = re.fullmatch(r"[ \t]+Reason:[ \t]*(.+)", e)
        code = re.fullmatch(r"[ \t]+Diagnostic code:[ \t]*([^ ]+);(.+)", e)
        status = re.fullmatch(r"Status:[ \t]*(\d\.\d\.\d)[ \t]*\((.+)\)", e)
        remote = re.fullmatch(r"[ \t]+Remote system:[ \t]*dns;([^ ]+)[ \t]*([^ ]+)[ \t]*.+", e)
        if remote:
            found.v.rhost = remote.group(1)
        elif recipient:
            found.start(s3s4(recipient.group(1)))
        elif original:
            found.v.recipient = s3s4(original.group(1))
        elif reason:
            found.v.diagnosis = reason.group(1)
        elif code:
            found.v.spec, found.v.diagnosis = code.group(1).upper(), code.group(2)
        elif status:
            found.v.status, found.v.diagnosis = status.group(1), found.v.diagnosis or status.group(2)
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.reason = phrase_reason(r.diagnosis, {"hostunknown": ("Illegal host/domain name found",)}) or r.reason
    return found.done()


IMAIL_COMMANDS = {"CONN": r"(?:SMTP connection failed,|Unexpected connection response from server:)",
                  "EHLO": r"Unexpected response to EHLO/HELO:", "MAIL": r"Server response to MAIL FROM:",
                  "RCPT": r"Additional RCPT TO generated following response:",
                  "DATA": r"DATA command generated response:"}
IMAIL = {"hostunknown": re.compile(r"Unknown host"),
         "userunknown": re.compile(r"^(?:Unknown user|Invalid final delivery userid)"),
         "mailboxfull": re.compile(r"^User mailbox exceeds allowed size"),
         "virusdetected": re.compile(r"^Requested action not taken: virus detected"),
         "undefined": re.compile(r"^undeliverable to"), "expired": re.compile(r"^Delivery failed \d+ attempts")}


@parser("IMailServer")
def imail(mail: Mail) -> list[Record] | None:
    if not (re.fullmatch(r"Undeliverable Mail *", mail.subject) or mail.h("x-mailer").startswith("<SMTP32 v")):
        return None
    notice, _ = mail.fillet(r"^Original message follows\.")
    found = Records()
    for e in notice.split("\n"):
        failed = re.match(r"([^ ]+) (.+):[ \t]*([^ ]+@[^ ]+)", e)
        to = re.fullmatch(r"undeliverable +to +(.+)", e)
        if failed:
            found.start(failed.group(3)).diagnosis = f"{failed.group(1)} {failed.group(2)}"
        elif to:
            found.start(s3s4(to.group(1)))
        elif "Body of message generated response:" in e:
            found.v.notes["alterrors"] = e
        elif found.v.notes.get("alterrors"):
            found.v.add("alterrors", e)
    for r in found.items:
        if r.notes.get("alterrors"):
            r.diagnosis = r.notes["alterrors"] + " " + r.diagnosis
        r.diagnosis = sweep(r.diagnosis)
        r.command = next((c for c, p in IMAIL_COMMANDS.items() if re.search(p, r.diagnosis)), r.command)
        r.reason = pattern_reason(r.diagnosis, IMAIL) or r.reason
    return found.done()


@parser("ApacheJames")
def apache_james(mail: Mail) -> list[Record] | None:
    if not (mail.subject == "[BOUNCE]" or ".JavaMail." in mail.h("message-id")
            or any("JAMES SMTP Server" in r for r in mail.received)):
        return None
    notice, _ = mail.fillet(RFC822)
    found, done = Records(), False
    for e in notice.split("\n")[1:]:
        rcpt = re.fullmatch(r"  RCPT TO: ([^ ]+@[^ ]+)", e)
        if not e or re.match(r"  (?:Sent date|Subject): ", e):
            continue
        if rcpt:
            found.start(rcpt.group(1))
        elif not done:
            if found.v.diagnosis:
                done = e == "Message details:"
                found.v.diagnosis += "" if done else " " + e
            else:
                found.v.diagnosis = (e if e == "Error message below:" else "") + " " + e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
    return found.done()


FML_TEXT = {"rejected": re.compile(r"(?:Ignored )*NOT MEMBER article from |reject (?:mail from \S+@|since .{1,200}? "
                                   r"header may cause mail loop|spammers:)|You are not a member of this mailing list"),
            "systemerror": re.compile(r"Duplicated Message-ID|fml .{1,200}? has detected a loop condition so that"
                                      r"|Loop Back Warning:"),
            "securityerror": re.compile(r"Security alert:")}
FML_SUBJECT = {"rejected": re.compile(r"(?:Ignored )*NOT MEMBER article from |reject mail (?:.+:|from) ,"
                                      r"|Spam mail from a spammer is rejected|You .+ are not member"),
               "systemerror": re.compile(r"fml system error message|Loop Alert: |Loop Back Warning: "
                                         r"|WARNING: UNIX FROM Loop"),
               "securityerror": re.compile(r"Security Alert")}


@parser("FML")
def fml(mail: Mail) -> list[Record] | None:
    if "x-mlserver" not in mail.head or not re.match(r".+-admin@.+", mail.sender) \
            or not re.fullmatch(r"<\d+\.FML.+@.+>", mail.h("message-id")):
        return None
    notice, _ = mail.fillet(r"^Original mail as follows:")
    found = Records()
    for e in notice.split("\n"):
        address = re.search(r"<([^ <>]+@[^ <>]+)>\.$", e)
        if address:
            found.start(address.group(1)).diagnosis = e
        elif e:
            found.v.diagnosis += e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.reason = pattern_reason(r.diagnosis, FML_TEXT) or pattern_reason(mail.subject, FML_SUBJECT)
    return found.done()


@parser("mFILTER")
def mfilter(mail: Mail) -> list[Record] | None:
    if mail.h("x-mailer") != "m-FILTER" or mail.subject != "failure notice":
        return None
    notice, _ = mail.fillet(r"^-------original (?:message|mail info)")
    found, marks = Records(), {"command": False}
    for e in after(notice, lambda x: bool(re.fullmatch(r"[^ ]+@[^ ]+\.[a-zA-Z]+", x)), inclusive=True):
        if not e:
            continue
        if re.fullmatch(r"[^ ]+@[^ ]+", e):
            found.start(e)
        elif re.match(r"[A-Z]{4}", e):
            found.v.command = found.v.command or (e if marks["command"] else "")
        elif e == "-------SMTP command":
            marks["command"] = True
        elif e != "-------server message" and not e.startswith("-") and not found.v.diagnosis:
            found.v.diagnosis = e
    hosts = [h for h in (received_hosts(mail.received[-1]) if mail.received else []) if "." in h]
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.command = r.command[:4] if r.command else ""
        r.rhost = hosts[-1] if hosts else r.rhost
    return found.done()


@parser("X1")
def x1(mail: Mail) -> list[Record] | None:
    if not mail.subject.startswith("Returned Mail: ") or not mail.sender.startswith('"Mail Deliver System" '):
        return None
    notice, _ = mail.fillet(r"^Received: from \d+\.\d+\.\d+\.\d")
    found = Records()
    for e in after(notice, lambda x: bool(re.match(r"The original message was received at (.+)$", x))):
        failed = re.fullmatch(r"([^ @]+@[^ ]+?)[ \t]+\[(.+)\]", e)
        if failed:
            found.start(failed.group(1)).diagnosis = sweep(failed.group(2))
    return found.done()


@parser("X2")
def x2(mail: Mail) -> list[Record] | None:
    if "MAILER-DAEMON@" not in mail.sender or not re.match(r"Delivery failure|fail(?:ure|ed) delivery", mail.subject):
        return None
    notice, _ = mail.fillet(r"^--- Original message follows\.")
    found = Records()
    for e in after(notice, lambda x: x.startswith("Unable to deliver message to the following address")):
        address = re.fullmatch(r"<([^ <>]+@[^ <>]+)>:", e)
        if address:
            found.start(address.group(1))
        elif e:
            found.v.diagnosis += " " + e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
    return found.done()


@parser("X3")
def x3(mail: Mail) -> list[Record] | None:
    if not mail.sender.startswith("Mail Delivery System") \
            or not mail.subject.startswith("Delivery status notification"):
        return None
    notice, _ = mail.fillet(RFC822)
    found = Records()
    start = "      This is an automatically generated Delivery Status Notification."
    for e in after(notice, lambda x: x.startswith(start)):
        address = re.fullmatch(r"[ \t]+\*[ \t]([^ ]+@[^ ]+)", e)
        smtp, routing = re.fullmatch(r"SMTP:([^ ]+)[ \t](.+)", e), re.match(r"Routing: (.+)", e)
        code = re.match(r"Diagnostic-Code: smtp; (.+)", e)
        if address:
            found.start(address.group(1))
        elif smtp:
            found.v.command, found.v.diagnosis = smtp.group(1).upper(), smtp.group(2)
        elif routing or code:
            found.v.diagnosis = (routing or code).group(1)  # type: ignore[union-attr]
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.status = find_status(r.diagnosis)
    return found.done()


@parser("X5")
def x5(mail: Mail) -> list[Record] | None:
    """A DSN whose From and Subject are MIME-encoded "Mail Delivery Subsystem" (TWFpbCBEZWxpdmVyeSBTdWJzeXN0ZW0)."""
    score = int("NotificationRecipients" in mail.h("to"))
    if "TWFpbCBEZWxpdmVyeSBTdWJzeXN0ZW0" in mail.sender:
        score += "Mail Delivery Subsystem" in _decoded(mail.sender)
    if "=?" in mail.subject:
        score += "Mail Delivery Subsystem" in _decoded(mail.subject)
    if score < 2:
        return None
    notice, _ = mail.fillet(RFC822)
    found, _ = dsn_records(notice, lambda x: x.startswith("Content-Type: message/delivery-status"))
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
    return found.done()


def _decoded(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # a broken encoded word: try it as bare base64
        found = re.search(r"\?[Bb]\?([A-Za-z0-9+/=]+)\?=", value)
        return base64.b64decode(found.group(1) + "==").decode("utf-8", "replace") if found else ""


@parser("X6")
def x6(mail: Mail) -> list[Record] | None:
    if not mail.subject.startswith("There was an error sending your mail"):
        return None
    notice, _ = mail.fillet(r"^The attachment contains the original mail headers.+$")
    found = Records()
    for e in after(notice, lambda x: bool(re.match(r"\d+ *error\(s\):", x))):
        address = re.search(r"<([^ @]+@[^ @]+)>", e) or re.search(r"errors: *([^ ]+@[^ ]+)", e)
        if address:
            found.start(s3s4(address.group(1))).diagnosis = e
    for r in found.items:
        command = re.search(r"\b(HELO|EHLO|MAIL|RCPT|DATA)\b", r.diagnosis)
        r.command = command.group(1) if command else r.command
        r.diagnosis = sweep(r.diagnosis)
    return found.done()
