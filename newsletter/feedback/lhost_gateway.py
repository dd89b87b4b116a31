"""Mail gateways' and filters' notices (PowerMTA, McAfee, MessageLabs, Trend Micro InterScan, Barracuda, Bigfoot,
MXLogic, MailFoundry, MailMarshal, SurfControl, amavis, ActiveHunter), each ported from the Sisimai 4.25.15 module
named in its decorator (lib/Sisimai/Lhost/<Name>.pm, BSD-2-Clause), its phrase tables copied from the module."""

from __future__ import annotations

import re

from .lhost import Mail, Record, Records, after, dsn_records, parser, pattern_reason, phrase_reason, read_dsn, sweep
from .lhost_cloud import HEADERS, RFC822, _dsn
from .lhost_webmail import EXIM_TABLE, exim_reason, exim_rhost

POWERMTA = {"bad-domain": "hostunknown", "bad-mailbox": "userunknown", "inactive-mailbox": "disabled",
            "message-expired": "expired", "no-answer-from-host": "networkerror", "policy-related": "policyviolation",
            "quota-issues": "mailboxfull", "routing-errors": "systemerror", "spam-related": "spamdetected"}


@parser("PowerMTA")
def powermta(mail: Mail) -> list[Record] | None:
    if "Delivery report" not in mail.subject:
        return None
    notice, _ = mail.fillet(HEADERS)

    def line(found: Records, e: str, _: str) -> None:
        category = re.fullmatch(r"X-PowerMTA-BounceCategory:[ ]*(.+)", e)
        if category:
            found.v.notes["category"] = category.group(1)

    found, _ = dsn_records(notice, lambda x: "Hello, this is the mail server on " in x, line)
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.reason = POWERMTA.get(r.notes.get("category", ""), "")
    return found.done()


MCAFEE = {"userunknown": re.compile(r" User \([^()]+@[^()]+\) unknown\. |550 Unknown user [^ ]+@[^ ]+"
                                    r"|550 <[^<>]+@[^<>]+>\.+ User not exist|No such user")}


@parser("McAfee")
def mcafee(mail: Mail) -> list[Record] | None:
    if "Modified by McAfee" not in mail.h("x-nai-header") or mail.subject != "Delivery Status":
        return None
    notice, _ = mail.fillet(RFC822)
    found, per_message, diagnostic, previous = Records(), dict[str, str](), "", ""
    for e in after(notice, lambda x: "--- The following addresses had delivery problems ---" in x):
        address = re.fullmatch(r"<([^ <>]+@[^ <>]+)>[ \t]+\((.+)\)", e)
        if not e:
            continue
        if address:
            found.start(address.group(1))
            diagnostic = address.group(2)
        elif e.lower().startswith(("original-recipient", "final-recipient")):
            found.v.alias = found.v.alias or e.partition(";")[2].strip()
        elif not read_dsn(found, e, per_message) and previous.startswith("Diagnostic-Code:") \
                and e[:1] in (" ", "\t"):
            found.v.diagnosis += " " + e.strip()
        previous = e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis or diagnostic)
        r.reason = pattern_reason(r.diagnosis, MCAFEE) or r.reason
    return found.done()


@parser("MessageLabs")
def messagelabs(mail: Mail) -> list[Record] | None:
    if "x-msg-ref" not in mail.head or "MAILER-DAEMON@messagelabs.com" not in mail.sender \
            or not mail.subject.startswith("Mail Delivery Failure"):
        return None
    found = _dsn(mail, HEADERS, "Content-Type: message/delivery-status")
    table = {"userunknown": re.compile(r"542 .+ Rejected|No such user"),
             "securityerror": re.compile(r"Please turn on SMTP Authentication in your mail client")}
    for r in found or ():
        r.reason = pattern_reason(r.diagnosis, table) or r.reason
    return found


@parser("InterScanMSS")
def interscan(mail: Mail) -> list[Record] | None:
    subjects = ("Mail could not be delivered", "メッセージを配信できません。", "メール配信に失敗しました")
    if not (mail.sender.startswith(('"InterScan MSS"', '"InterScan Notification"')) or mail.subject in subjects):
        return None
    notice, _ = mail.fillet(r"(?i)^Content-type: message/rfc822")
    found = Records()
    for e in notice.split("\n"):
        address = re.match(r".+[<>]{3}[ \t]+.+<([^ <>]+@[^ <>]+)>", e) \
            or re.match(r"(?:Reason: +)?Unable to deliver message to <(.+)>", e)
        if not e:
            continue
        if address:
            if not found.v.recipient or address.group(1) != found.v.recipient:
                found.start(address.group(1))
            found.v.diagnosis = e if "Unable to deliver " in e else found.v.diagnosis
        sent, received = re.match(r"Sent[ \t]+<<<[ \t]+([A-Z]{4})[ \t]", e), re.fullmatch(r"Received[ \t]+>>>[ \t]+"
                                                                                         r"(\d{3}[ \t]+.+)", e)
        if sent:
            found.v.command = sent.group(1)
        elif received:
            found.v.diagnosis = received.group(1)
        elif re.search(r" [<>]{3} ", e):
            command, reply = re.search(r" >>> ([A-Z]{4})", e), re.search(r" <<< (.+)", e)
            found.v.command = command.group(1) if command else found.v.command
            found.v.diagnosis = reply.group(1) if reply else found.v.diagnosis
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.reason = "userunknown" if "Unable to deliver" in r.diagnosis else r.reason
    return found.done()


@parser("Barracuda")
def barracuda(mail: Mail) -> list[Record] | None:
    if mail.subject.find("our bulk email filter") <= 0:
        return None
    return _dsn(mail, HEADERS, "Your message to:")


@parser("Bigfoot")
def bigfoot(mail: Mail) -> list[Record] | None:
    if "@bigfoot.com>" not in mail.sender and not any(".bigfoot.com " in r for r in mail.received):
        return None
    notice, _ = mail.fillet(r"^Content-Type: message/partial")
    session = {"command": "", "reply": ""}

    def line(found: Records, e: str, _: str) -> None:
        sent, reply = re.match(r">>> +([A-Z]{4}) ?", e), re.fullmatch(r"<<< +(.+)", e)
        if sent:
            session["command"] = sent.group(1)
        elif reply:
            session["reply"] = reply.group(1)

    found, _ = dsn_records(notice, lambda x: bool(re.match(r"[ \t]+-+[ \t]*Transcript of session follows", x)), line)
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.command = r.command or session["command"] or ("EHLO" if session["reply"] else "")
    return found.done()


@parser("MXLogic")
def mxlogic(mail: Mail) -> list[Record] | None:
    subject = re.search(r"Mail delivery failed(: returning message to sender)?|Warning: message [^ ]+ delayed +"
                        r"|Delivery Status Notification", mail.subject)
    if not (any(h in mail.head for h in ("x-mx-bounce", "x-mxl-hash", "x-mxl-notehash"))
            or mail.sender.startswith("Mail Delivery System") or subject):
        return None
    notice, _ = mail.fillet(r"^Included is a copy of the message header:")
    found = Records()
    for e in after(notice, lambda x: x.startswith("This message was created automatically by mail delivery software.")):
        address = re.fullmatch(r"[ \t]*<([^ <>]+@[^ <>]+)>:(.+)", e)
        if address:
            found.start(address.group(1)).diagnosis = address.group(2)
        elif e and len(found.items) == found.count:
            found.v.diagnosis += e + " "
    for r in found.items:
        r.diagnosis = sweep(re.sub(r"-{2}.*$", "", r.diagnosis))
        exim_rhost(mail, r)
        exim_reason(r, EXIM_TABLE, "rejected")
    return found.done()


@parser("MailFoundry")
def mailfoundry(mail: Mail) -> list[Record] | None:
    if mail.subject != "Message delivery has failed" or not any("(MAILFOUNDRY) id" in r for r in mail.received):
        return None
    notice, _ = mail.fillet(RFC822)
    found = Records()
    for e in after(notice, lambda x: x.startswith("Unable to deliver message to:"), inclusive=True):
        address = re.fullmatch(r"Unable to deliver message to: <([^ <>]+@[^ <>]+)>", e)
        if address:
            found.start(address.group(1))
        elif e == "Delivery failed for the following reason:":
            found.v.diagnosis = e
        elif e and found.v.diagnosis and not e.startswith("-"):
            found.v.diagnosis += " " + e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
    return found.done()


@parser("MailMarshalSMTP")
def mailmarshal(mail: Mail) -> list[Record] | None:
    if not mail.subject.startswith('Undeliverable Mail: "'):
        return None
    boundary = re.search(r'boundary="?([^";]+)', mail.h("content-type"))
    notice, _ = mail.fillet(rf"^{re.escape(boundary.group(1))}" if boundary else r"^[ \t]*\++[ \t]*")
    found, ended = Records(), False
    for e in after(notice, lambda x: x.startswith("Your message:")):
        address = re.fullmatch(r"[ \t]{4}([^ ]+@[^ ]+)", e)
        if not e:
            continue
        if address:
            found.start(address.group(1))
        elif e == "Could not be delivered because of":
            found.v.diagnosis = e
        elif found.v.diagnosis and not ended:
            ended = e.startswith("The following recipients were affected:")
            found.v.diagnosis += "" if ended else " " + e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
    return found.done()


@parser("SurfControl")
def surfcontrol(mail: Mail) -> list[Record] | None:
    if not mail.h("x-sef-processed") or mail.h("x-mailer") != "SurfControl E-mail Filter":
        return None
    notice, _ = mail.fillet(RFC822)
    found, per_message = Records(), dict[str, str]()
    for e in after(notice, lambda x: x.startswith("Your message could not be sent.")):
        address = re.fullmatch(r"Addressed To:[ \t]*([^ @]+@[^ ]+?)", e)
        host = re.fullmatch(r"[^ ]+@[^ ]+:[ \t]*\[(\d+\.\d+\.\d+\.\d)\],[ \t]*(.+)", e)
        if address:
            found.start(address.group(1))
        elif host:
            found.v.rhost, found.v.diagnosis = host.group(1), host.group(2)
        elif not e.lower().startswith("final-recipient"):
            read_dsn(found, e, per_message)
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
    return found.done()


AMAVIS = {"spamdetected": (" - spam",), "virusdetected": (" - infected",), "contenterror": (" - bad header:",),
          "exceedlimit": (" - message size exceeds recipient",),
          "systemerror": (" - temporary mta failure on relaying", " - rejected by next-hop mta on relaying",
                          " - unable to relay message back to mta")}


@parser("Amavis")
def amavis(mail: Mail) -> list[Record] | None:
    if not mail.sender.startswith('"Content-filter at '):
        return None
    found = _dsn(mail, HEADERS, "The message ")
    for r in found or ():
        r.spec = "SMTP" if r.spec == "X-POSTFIX" else r.spec
        r.reason = phrase_reason(r.diagnosis.lower(), AMAVIS) or r.reason
    return found


@parser("Activehunter")
def activehunter(mail: Mail) -> list[Record] | None:
    if "x-ahmailid" not in mail.head:
        return None
    notice, _ = mail.fillet(RFC822)
    found = Records()
    for e in after(notice, lambda x: x.startswith("  ----- The following addresses had permanent fatal errors -----")):
        address = re.fullmatch(r">{3}[ \t]+.*<([^ <>]+@[^ <>]+)>", e)
        if address:
            found.start(address.group(1))
        elif re.match(r"[0-9A-Za-z]+", e) and not found.v.diagnosis:
            found.v.diagnosis = e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
    return found.done()
