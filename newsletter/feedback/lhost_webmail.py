"""Webmail providers' and senders' notices (Yahoo, AOL, Mail.ru, Yandex, GMX, 1&1, Zoho, Facebook, SendGrid), each
ported from the Sisimai 4.25.15 module named in its decorator (lib/Sisimai/Lhost/<Name>.pm, BSD-2-Clause): its
header test, the line that starts its report, where the recipient and the words about it are, and its own phrases
for a reason (copied from the module's ``$messagesof`` tables)."""

from __future__ import annotations

import re

from .lhost import MAX_WORDS, Mail, Record, Records, after, dsn_records, parser, phrase_reason, received_hosts, sweep
from .lhost_cloud import RFC822, _dsn
from .reasons import find_status

# --- Yahoo, AOL, GMX, 1&1, Mail.ru, Yandex, Zoho, Facebook, SendGrid ------------------------------------------------


@parser("Yahoo")
def yahoo(mail: Mail) -> list[Record] | None:
    if not mail.h("x-ymailisg"):
        return None
    notice, _ = mail.fillet(r"^--- Below this line is a copy of the message\.")
    found = Records()
    for e in after(notice, lambda x: x.startswith("Sorry, we were unable to deliver your message")):
        address = re.fullmatch(r"<([^<>]+@[^<>]+)>:[ \t]*", e)
        command = re.search(r"\[([A-Z]{4}).*\]$", e)
        if address:
            found.start(address.group(1))
        elif e.startswith("Remote host said:"):
            found.v.diagnosis = e
            found.v.command = command.group(1) if command else found.v.command
        elif found.v.diagnosis == "Remote host said:" and command:
            found.v.command, found.v.diagnosis = command.group(1), e
        elif e:
            found.v.diagnosis += " " + e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.command = r.command or ("RCPT" if re.search(r"<[^<>]*@[^<>]*>", r.diagnosis) else "")
    return found.done()


@parser("Aol")
def aol(mail: Mail) -> list[Record] | None:
    if not mail.h("x-aol-ip"):
        return None
    return _dsn(mail, RFC822, "Content-Type: message/delivery-status",
                {"hostunknown": ("Host or domain name not found",),
                 "notaccept": ("type=MX: Malformed or unexpected name server reply",)})


EXIM_TABLE = {
    "userunknown": ("user not found",),
    "hostunknown": ("all host address lookups failed permanently", "all relevant MX records point to non-existent "
                    "hosts", "Unrouteable address"),
    "mailboxfull": ("mailbox is full", "error: quota exceed"),
    "notaccept": ("an MX or SRV record indicated no SMTP service", "no host found for existing SMTP connection"),
    "syntaxerror": ("angle-brackets nested too deep", 'expected word or "<"', "domain missing in source-routed "
                    "address", "malformed address:"),
    "systemerror": ("delivery to file forbidden", "delivery to pipe forbidden", "local delivery failed",
                    "LMTP error after "),
    "contenterror": ('Too many "Received" headers',)}
EXIM_DELAYED = ("retry timeout exceeded", "No action is required on your part", "retry time not reached for any host "
                "after a long failure period", "all hosts have been failing for a long time and were last tried",
                "Delay reason: ", "has been frozen", "was frozen on arrival by ")
EXIM_COMMAND = re.compile(r"SMTP error from remote (?:mail server|mailer) after (?:end of )?([A-Za-z]{4})"
                          r"|LMTP error after (?:end of )?([A-Za-z]{4})")


def exim_reason(e: Record, table: dict[str, tuple[str, ...]], mail_is: str = "onhold") -> None:
    """Exim's (and its clones') rule: a refusal at HELO is blocked, at MAIL FROM ``mail_is``, else its phrases."""
    if not e.command:
        found = EXIM_COMMAND.search(e.diagnosis)
        e.command = (found.group(1) or found.group(2)).upper() if found else ""
        if e.command in ("HELO", "EHLO"):
            e.reason = "blocked"
        elif e.command == "MAIL":
            e.reason = mail_is
        else:
            e.reason = phrase_reason(e.diagnosis, table) or e.reason
            if not e.reason and table is EXIM_TABLE and any(p in e.diagnosis for p in EXIM_DELAYED):
                e.reason = "expired"


def exim_rhost(mail: Mail, e: Record) -> None:
    if not e.rhost:
        host = re.search(r"host[ \t]+([^ \t]+)[ \t]\[.+\]:[ \t]", e.diagnosis)
        e.rhost = host.group(1) if host else (received_hosts(mail.received[-1]) or [""])[-1] if mail.received else ""


@parser("MailRu")
def mailru(mail: Mail) -> list[Record] | None:
    if not re.search(r"<?mailer-daemon@.*mail\.ru>?", mail.sender.lower()) \
            or not re.search(r"\.(?:mail\.ru|smailru\.net)>$", mail.h("message-id")) \
            or not re.search(r"Mail delivery failed|Warning: message .+ delayed|Delivery Status Notification"
                             r"|Mail failure|Message frozen|error\(s\) in forwarding or filtering", mail.subject):
        return None
    notice, _ = mail.fillet(r"^------ This is a copy of the message, including all the headers\. ------")
    found = Records()
    for e in after(notice, lambda x: x.startswith("This message was created automatically by mail delivery"),
                   inclusive=True):
        address = re.fullmatch(r"[ \t]+([^ \t]+@[^ \t]+\.[a-zA-Z]+)", e)
        if address:
            found.start(address.group(1))
        elif e and len(found.items) == found.count:
            found.v.diagnosis += e + " "
        elif e.startswith("    "):
            found.v.add("alterrors", e)
    if not found.count:
        for each in filter(None, (a.replace(" ", "") for a in mail.h("x-failed-recipients").split(","))):
            found.start(each)
    table = {"expired": ("retry timeout exceeded", "No action is required on your part"), **EXIM_TABLE}
    for r in found.items:
        _alterrors(r)
        r.diagnosis = re.sub(r"\b__.+$", "", sweep(r.diagnosis))
        exim_rhost(mail, r)
        exim_reason(r, {k: v for k, v in table.items() if k != "syntaxerror"}, "rejected")
    return found.done()


def _alterrors(e: Record) -> None:
    alter = e.notes.get("alterrors", "")
    if alter:
        e.diagnosis = e.diagnosis or alter
        if e.diagnosis.startswith("-") or e.diagnosis.endswith("__"):
            e.diagnosis = alter


@parser("Yandex")
def yandex(mail: Mail) -> list[Record] | None:
    if not mail.h("x-yandex-uniq") or mail.sender != "mailer-daemon@yandex.ru":
        return None
    notice, _ = mail.fillet(RFC822)
    commands: list[str] = []

    def line(found: Records, e: str, _: str) -> None:
        command = re.search(r"[ \t]\(in reply to .*([A-Z]{4})", e) or re.search(r"([A-Z]{4})[ \t]*.*command\)$", e)
        if command:
            commands.append(command.group(1))

    found, _ = dsn_records(notice, lambda x: x.startswith("This is the mail system at host yandex.ru."), line)
    for r in found.items:
        r.command = commands.pop(0) if commands else ""
        r.diagnosis = sweep(r.diagnosis)
    return found.done()


@parser("GMX")
def gmx(mail: Mail) -> list[Record] | None:
    if "x-gmx-antispam" not in mail.head:
        return None
    notice, _ = mail.fillet(r"^--- The header of the original message is following\. ---")
    found = Records()
    for e in after(notice, lambda x: x.startswith("This message was created automatically by mail delivery software")):
        address = re.fullmatch(r'"([^ ]+@[^ ]+)":', e) or re.fullmatch(r"<([^ <>]+@[^ <>]+)>", e)
        command, host = re.fullmatch(r"SMTP error .+ ([A-Z]{4}) command:", e), re.fullmatch(r"host:[ \t]*(.+)", e)
        v = found.v
        if address:
            found.start(address.group(1))
        elif command:
            v.command = command.group(1)
        elif host:
            v.rhost = host.group(1)
        elif re.search(r"\b[45]\.\d\.\d\b|<[^ <>]+@[^ <>]+>|\b[45]\d{2}\b", e):
            v.diagnosis = v.diagnosis or e
        elif e == "Reason:" or e and v.diagnosis == "Reason:":
            v.diagnosis = e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.reason = phrase_reason(r.diagnosis, {"expired": ("delivery retry timeout exceeded",)}) or r.reason
    return found.done()


@parser("EinsUndEins")
def eins_und_eins(mail: Mail) -> list[Record] | None:
    if not mail.sender.startswith('"Mail Delivery System"') \
            or mail.subject != "Mail delivery failed: returning message to sender":
        return None
    notice, _ = mail.fillet(r"^--- The header of the original message is following\. ---")
    found = Records()
    for e in after(notice, lambda x: x.startswith("This message was created automatically by mail delivery software")):
        address = re.fullmatch(r"([^ ]+@[^ ]+?):?", e)
        if not e:
            continue
        if address:
            found.start(address.group(1))
        elif e.startswith("For the following reason:"):
            found.v.diagnosis = e
        elif found.v.diagnosis:
            found.v.diagnosis += " " + e
        else:
            found.v.add("alterrors", e)
    for r in found.items:
        r.diagnosis = r.diagnosis or r.notes.get("alterrors", "")
        host = re.search(r"host: +(\S+) +.*? +reason:.", r.diagnosis[:MAX_WORDS])
        if host:
            r.rhost = host.group(1)
            r.command = "DATA" if "for TEXT command" in r.diagnosis else r.command
            r.spec = "SMTP" if "SMTP error" in r.diagnosis else r.spec
            r.status = find_status(r.diagnosis)
            r.diagnosis = r.diagnosis.replace("For the following reason:", "")
        r.diagnosis = sweep(r.diagnosis)
        r.reason = phrase_reason(r.diagnosis, {"mesgtoobig": ("Mail size limit exceeded",)}) or r.reason
    return found.done()


@parser("Zoho")
def zoho(mail: Mail) -> list[Record] | None:
    if not mail.h("x-zohomail"):
        return None
    notice, _ = mail.fillet(r"^Received: *from mail\.zoho\.com by mx\.zohomail\.com")
    found, folded = Records(), False
    for e in after(notice, lambda x: x.startswith("This message was created automatically by mail delivery")):
        address = re.fullmatch(r"([^ @]+@[^ ]+)[ \t]+(.+)", e) or re.match(r"\[Status: .+<([^ <>]+@[^ <>]+)>,", e)
        if not e:
            continue
        if address:
            found.start(address.group(1)).diagnosis = address.group(2) if address.re.groups == 2 else e
            folded = found.v.diagnosis.endswith("=")
            found.v.diagnosis = found.v.diagnosis[:-1] if folded else found.v.diagnosis
        elif folded:
            found.v.diagnosis += e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.reason = phrase_reason(r.diagnosis, {"expired": ("Host not reachable",)}) or r.reason
    return found.done()


FACEBOOK = {
    "userunknown": ("RCP-P1", "INT-P1", "INT-P3", "INT-P4"), "filtered": ("RCP-P2", "RCP-P3"),
    "blocked": ("POL-P1", "POL-P2"), "mesgtoobig": ("MSG-P1", "INT-P2"),
    "contenterror": ("MSG-P2", "MSG-P3", "POL-P6", "POL-P7"), "securityerror": ("POL-P7",),
    "notaccept": ("POL-P3", "POL-P4", "POL-T1", "POL-T2", "POL-T3"),
    "rejected": ("DNS-P1", "DNS-P2", "DNS-T1", "DNS-P3", "DNS-T2"), "systemerror": ("CON-T1", "RCP-T1"),
    "toomanyconn": ("CON-T2", "CON-T3"), "virusdetected": ("POL-P5",), "suspend": ("RCP-T4",),
    "undefined": ("MSG-T1", "CON-T4")}


@parser("Facebook")
def facebook(mail: Mail) -> list[Record] | None:
    if mail.sender != "Facebook <mailer-daemon@mx.facebook.com>" \
            or mail.subject != "Sorry, your message could not be delivered":
        return None
    notice, _ = mail.fillet(r"^Content-Disposition: inline")
    found, _ = dsn_records(notice, lambda x: x.startswith("This message was created automatically by Facebook."))
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        code = re.search(r"\b([A-Z]{3})-([A-Z])(\d)\b", r.diagnosis)
        response = f"{code.group(1)}-{code.group(2)}{code.group(3)}" if code else ""
        r.reason = next((r for r, codes in FACEBOOK.items() if response in codes), "")
        r.reason = r.reason or ("systemerror" if re.fullmatch(r"INT-T\d+", response) else "")
    return found.done()


@parser("SendGrid")
def sendgrid(mail: Mail) -> list[Record] | None:
    if mail.h("return-path") != "<apps@sendgrid.net>" or mail.subject != "Undelivered Mail Returned to Sender":
        return None
    notice, _ = mail.fillet(RFC822)
    command = ""

    def line(found: Records, e: str, _: str) -> None:
        nonlocal command
        if e.startswith("Diagnostic-Code:"):
            found.v.diagnosis = e.partition(":")[2].strip()
        elif re.search(r". in (?:End of )?([A-Z]{4})", e):
            command = re.findall(r". in (?:End of )?([A-Z]{4})", e)[-1]

    found, _ = dsn_records(notice, lambda x: x.startswith("This is an automatically generated message from "
                                                           "SendGrid."), line)
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        code = re.search(r"\b([45])\d\d[ \t]*", r.diagnosis)
        r.status = f"{code.group(1)}.0.0" if code else r.status
        if r.status in ("5.0.0", "4.0.0"):
            r.status = find_status(r.diagnosis) or r.status
        if r.action == "expired":
            r.reason = "expired"
        r.command = r.command or command
    return found.done()
