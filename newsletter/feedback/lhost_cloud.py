"""The big providers' notices (Google's Gmail, Workspace and Groups, Microsoft's Outlook.com, Office 365 and
Exchange, Amazon SES and WorkMail), each ported from the Sisimai 4.25.15 module named in its decorator
(lib/Sisimai/Lhost/<Name>.pm, BSD-2-Clause): its header test, the line that starts its report, where the
recipient and the words about it are, and its own phrases for a reason (copied from the module's tables)."""

from __future__ import annotations

import json
import re

from . import mime
from .lhost import (
    MAX_BODY,
    Mail,
    Record,
    Records,
    after,
    dsn_records,
    is_address,
    parser,
    phrase_reason,
    read_dsn,
    s3s4,
    sweep,
)
from .reasons import find_status, status_name

RFC822 = r"^Content-Type: message/rfc822"
HEADERS = r"^Content-Type: text/rfc822-headers"


def _dsn(mail: Mail, backbone: str, start: str, table: dict[str, tuple[str, ...]] | None = None,
         contains: bool = False) -> list[Record] | None:
    """The shape most DSN-layout modules share: fields after ``start`` (a line beginning so, or containing it),
    diagnoses swept, then the module's phrases for a reason."""
    notice, _ = mail.fillet(backbone)
    found, _ = dsn_records(notice, (lambda x: start in x) if contains else (lambda x: x.startswith(start)))
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.reason = phrase_reason(r.diagnosis, table or {}) or r.reason
    return found.done()


def _code_status(e: Record) -> None:
    """Amazon's modules: an x.0.0 or x.1.0 status gives way to the code quoted in the diagnosis."""
    if re.fullmatch(r"[45]\.[01]\.0", e.status):
        quoted = re.search(r"[\"'](\d\.\d\.\d.+)['\"]", e.diagnosis)
        e.status = find_status(quoted.group(1) if quoted else e.diagnosis) or e.status


# --- Google ------------------------------------------------------------------------------------------------------


@parser("GSuite")
def gsuite(mail: Mail) -> list[Record] | None:
    if "<mailer-daemon@googlemail.com>" not in mail.sender or "Delivery Status Notification" not in mail.subject \
            or not mail.h("x-gm-message-state"):
        return None
    notice, _ = mail.fillet(HEADERS)
    other = ""
    ended = False

    def line(found: Records, e: str, _: str) -> None:
        nonlocal other, ended
        v = found.v
        if not ended and v.diagnosis:
            ended = ended or e == ""
            if not ended:
                v.diagnosis += e
        elif re.match(r"The response( from the remote server)? was:$", e):
            other += e
        elif other and not e.startswith("Content-Type:"):
            other += " " + e
        elif re.fullmatch(r"\*\* .+ \*\*", e):
            other = e

    found, _ = dsn_records(notice, lambda x: bool(re.fullmatch(r"\*\* .+ \*\*", x)), line, inclusive=True,
                           blanks=True)
    table = {"userunknown": ("because the address couldn't be found. Check for typos or unnecessary spaces and try "
                             "again.",), "notaccept": ("Null MX",),
             "networkerror": (" had no relevant answers.", " responded with code NXDOMAIN")}
    for r in found.items:
        _prefer(r, other, ("", "5.0.0", "4.0.0"))
        r.diagnosis = sweep(r.diagnosis)
        r.reason = phrase_reason(r.diagnosis, table) or r.reason
    return found.done()


def _prefer(e: Record, other: str, weak: tuple[str, ...]) -> None:
    """The Postfix/GSuite rule: the notice's own words about the failure replace a DSN diagnostic that says less."""
    if not other:
        return
    e.diagnosis = e.diagnosis or other
    if e.diagnosis.isdigit():
        e.diagnosis = other
        return
    status = find_status(other) if e.status in weak or e.status.endswith(".0.0") else ""
    if status and not status.endswith(".0.0"):
        e.status = status
    if status:
        e.diagnosis = other


@parser("GoogleGroups")
def google_groups(mail: Mail) -> list[Record] | None:
    if "<mailer-daemon@googlemail.com>" not in mail.sender or "Delivery Status Notification" not in mail.subject \
            or "x-failed-recipients" not in mail.head or "x-google-smtp-source" not in mail.head:
        return None
    notice, _ = mail.fillet(r"^----- Original message -----$")
    reason = "rejected" if len(re.findall(r"^ ?\* ?", notice, re.MULTILINE)) == 4 else "onhold"
    diagnosis = sweep(" ".join(notice.split("\n\n", 4)[:4]).replace("\n", " "))
    found = Records()
    for address in mail.h("x-failed-recipients").split(","):
        if is_address(address.strip()):
            found.start(s3s4(address)).__dict__.update(reason=reason, diagnosis=diagnosis)
    return found.done()


GMAIL_STATES = {"6": ("MAIL", "systemerror"), "8": ("AUTH", "systemerror"), "9": ("AUTH", "systemerror"),
                "12": ("AUTH", "relayingdenied"), "13": ("EHLO", "blocked"), "14": ("RCPT", "userunknown"),
                "15": ("DATA", "filtered"), "17": ("DATA", "filtered"), "18": ("DATA", "filtered")}


@parser("Gmail")
def gmail(mail: Mail) -> list[Record] | None:
    if "<mailer-daemon@googlemail.com>" not in mail.sender or "Delivery Status Notification" not in mail.subject:
        return None
    notice, _ = mail.fillet(r"^ *----- (?:Original message|Message header follows) -----")
    found = Records()
    for e in after(notice, lambda x: x.startswith("Delivery to the following recipient"), inclusive=True):
        address = re.fullmatch(r"[ \t]+([^ ]+@[^ ]+)", e)
        if address and is_address(s3s4(address.group(1))):
            found.start(s3s4(address.group(1)))
        elif e:
            found.v.diagnosis += e + " "
    table = {"expired": ("DNS Error: Could not contact DNS servers", "Delivery to the following recipient has been "
                         "delayed", "The recipient server did not accept our requests to connect"),
             "hostunknown": ("DNS Error: Domain name not found", "DNS Error: DNS server returned answer with no data")}
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        state = re.search(r"\(state (\d+)\)\.", r.diagnosis)
        if state and state.group(1) in GMAIL_STATES:
            r.command, r.reason = GMAIL_STATES[state.group(1)]
        else:
            r.reason = phrase_reason(r.diagnosis, table)
        if r.reason:
            r.status = find_status(r.diagnosis)
            if re.fullmatch(r"[45]\.[1-7]\.[1-9]", r.status):
                r.reason = status_name(r.status)
    return found.done()


# --- Microsoft ---------------------------------------------------------------------------------------------------


@parser("Outlook")
def outlook(mail: Mail) -> list[Record] | None:
    score = ("Delivery Status Notification" in mail.subject) + bool(mail.h("x-message-delivery")) \
        + bool(mail.h("x-message-info")) + any(".hotmail.com" in r for r in mail.received)
    if score < 2:
        return None
    found = _dsn(mail, RFC822, "This is an automatically generated Delivery Status Notification")
    table = {"hostunknown": ("The mail could not be delivered to the recipient because the domain is not reachable",),
             "userunknown": ("Requested action not taken: mailbox unavailable",)}
    for r in found or ():
        if not r.diagnosis:
            r.diagnosis = ("Delivery to the following recipients has been delayed." if r.action == "delayed" else
                           "Unable to deliver message to the following recipients, due to being unable to connect "
                           "successfully to the destination mail server.")
        r.reason = phrase_reason(r.diagnosis, table) or r.reason
    return found


OFFICE365_STATUS = (
    (r"4\.4\.7", "expired"), (r"4\.4\.312", "networkerror"), (r"4\.4\.316", "expired"), (r"4\.7\.26", "securityerror"),
    (r"4\.7\.[56]\d\d", "blocked"), (r"4\.7\.8[5-9]\d", "blocked"), (r"5\.0\.350", "contenterror"),
    (r"5\.1\.10", "userunknown"), (r"5\.4\.1", "norelaying"), (r"5\.4\.6", "networkerror"),
    (r"5\.4\.312", "networkerror"), (r"5\.4\.316", "expired"), (r"5\.6\.11", "contenterror"), (r"5\.7\.1", "rejected"),
    (r"5\.7\.1[23]", "rejected"), (r"5\.7\.124", "rejected"), (r"5\.7\.13[3-6]", "rejected"), (r"5\.7\.23", "blocked"),
    (r"5\.7\.25", "networkerror"), (r"5\.7\.50[1-3]", "spamdetected"), (r"5\.7\.50[4-5]", "filtered"),
    (r"5\.7\.50[6-7]", "blocked"), (r"5\.7\.508", "toomanyconn"), (r"5\.7\.509", "securityerror"),
    (r"5\.7\.510", "notaccept"), (r"5\.7\.511", "rejected"), (r"5\.7\.512", "securityerror"),
    (r"5\.7\.57", "securityerror"), (r"5\.7\.60[6-9]", "blocked"), (r"5\.7\.6[1-4]\d", "blocked"),
    (r"5\.7\.7[0-4]\d", "toomanyconn"))
OFFICE365 = re.compile(r".+\.(?:outbound\.protection|prod)\.outlook\.com\b")


@parser("Office365")
def office365(mail: Mail) -> list[Record] | None:
    marks = ("x-ms-exchange-message-is-ndr", "x-microsoft-antispam-prvs", "x-exchange-antispam-report-test",
             "x-exchange-antispam-report-cfa-test", "x-ms-exchange-crosstenant-originalarrivaltime",
             "x-ms-exchange-crosstenant-fromentityheader", "x-ms-exchange-transport-crosstenantheadersstamped")
    score = ("Undeliverable:" in mail.subject) + sum(bool(mail.h(m)) for m in marks) \
        + sum(bool(OFFICE365.search(r)) for r in mail.received) + bool(OFFICE365.search(mail.h("message-id")))
    if score < 2:
        return None
    notice, _ = mail.fillet(RFC822)
    found, per_message, ended = Records(), dict[str, str](), False
    start = re.compile(r"Delivery has failed to these recipients or groups:|Original Message Details"
                       r"|.+ rejected your message to the following e-?mail addresses:")
    for e in after(notice, lambda x: bool(start.match(x))):
        address = re.match(r".+@[^<]*<mailto:([^<>]+@[^<>]+)>$", e) or re.match(r"Recipient Address:\s+(.+)$", e)
        if not e:
            continue
        if address:
            found.start(address.group(1))
        elif ended:
            if not e.lower().startswith(("diagnostic-code", "final-recipient")):
                read_dsn(found, e, per_message)
        elif re.match(r"Diagnostic information for administrators:|Error Details", e):
            found.v.diagnosis = e
        elif found.v.diagnosis:
            ended = bool(re.match(r"Original [Mm]essage [Hh]eaders:?|Message Hops", e))
            if not ended:
                found.v.diagnosis += " " + e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        if not r.status or r.status.endswith(".0.0"):
            r.status = find_status(r.diagnosis) or r.status
        if re.search(r"unknown recipient or mailbox unavailable ->.*?@[^ ]*\.[a-zA-Z]", r.diagnosis):
            r.command = "RCPT"
        r.reason = next((why for p, why in OFFICE365_STATUS if r.status and re.fullmatch(p, r.status)), r.reason)
    return found.done()


EXCHANGE2007 = {
    "SMTPSEND.DNS.NonExistentDomain": "hostunknown", "SMTPSEND.DNS.MxLoopback": "networkerror",
    "RESOLVER.ADR.BadPrimary": "systemerror", "RESOLVER.ADR.RecipNotFound": "userunknown",
    "RESOLVER.ADR.ExRecipNotFound": "userunknown", "RESOLVER.ADR.RecipLimit": "toomanyconn",
    "RESOLVER.ADR.InvalidInSmtp": "systemerror", "RESOLVER.ADR.Ambiguous": "systemerror",
    "RESOLVER.RST.AuthRequired": "securityerror", "RESOLVER.RST.NotAuthorized": "rejected",
    "RESOLVER.RST.RecipSizeLimit": "mesgtoobig", "QUEUE.Expired": "expired"}


@parser("Exchange2007")
def exchange2007(mail: Mail) -> list[Record] | None:
    if not re.match(r"(?:Undeliverable|Non_remis_|Non recapitabile):", mail.subject) \
            or not re.fullmatch(r"[a-z]{2}(?:-[A-Z]{2})?", mail.h("content-language")) \
            or mail.h("x-ms-exchange-crosstenant-originalarrivaltime") \
            or mail.h("x-ms-exchange-crosstenant-fromentityheader"):
        return None
    notice, _ = mail.fillet(r"^(?:Original message headers:|En-t.tes de message d'origine :"
                            r"|Intestazioni originali del messaggio:)")
    start = re.compile(r"Diagnostic information for administrators:|Informations de diagnostic pour les "
                       r"administrateurs|Informazioni di diagnostica per gli amministratori")
    found, rhost = Records(), ""
    for e in after(notice, lambda x: bool(start.match(x))):
        if rhost:
            code = re.search(r"([45]\d{2}) ([45]\.\d\.\d+) .+$", e)
            if re.fullmatch(r"[^ @]+@[^ @]+", e):
                found.start(e)
            elif code:
                found.v.replycode, found.v.status, found.v.diagnosis = code.group(1), code.group(2), e
            elif found.v.diagnosis.endswith("="):
                found.v.diagnosis = found.v.diagnosis[:-1] + e
        else:
            host = re.match(r"(?:Generating server|Serveur de g[^ ]+ration |Server di generazione): ?(.*)", e)
            rhost = host.group(1) or "-" if host else ""
    for r in found.items:
        error = re.search(r" ((?:RESOLVER|QUEUE)\.[A-Za-z]+(?:\.\w+)?);", r.diagnosis)
        r.reason = EXCHANGE2007.get(error.group(1), "") if error else ""
        r.diagnosis = sweep(r.diagnosis)
    return found.done()


# --- Amazon ------------------------------------------------------------------------------------------------------

SES_TYPES = {("Transient", "MailboxFull"): "mailboxfull", ("Transient", "MessageTooLarge"): "mesgtoobig"}


@parser("AmazonWorkMail")
def amazon_workmail(mail: Mail) -> list[Record] | None:
    if not mail.h("x-ses-outgoing") or (mail.h("x-original-mailer") or mail.h("x-mailer")) != "Amazon WorkMail":
        return None
    notice, _ = mail.fillet(r"(?i)^content-type: message/rfc822")
    found, _ = dsn_records(notice.split("<!DOCTYPE HTML><html>")[0], lambda x: x.startswith("Technical report:"))
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        _code_status(r)
        r.reason = r.reason or status_name(r.status)
    return found.done()


@parser("AmazonSES")
def amazon_ses(mail: Mail) -> list[Record] | None:
    """A bounce or complaint notification (JSON, from SNS), or an SES bounce in DSN layout."""
    if mail.h("x-amz-sns-message-id") and mail.body.startswith("{"):
        return _ses_json(mail)
    if "Amazon WorkMail" in mail.h("x-mailer") or not (mail.h("x-aws-outgoing") or mail.h("x-ses-outgoing")) \
            or mail.body.startswith("{"):
        return None
    notice, _ = mail.fillet(r"(?i)^content-type: message/rfc822")
    found, _ = dsn_records(notice, lambda x: x.startswith(("The following message to <", "An error occurred while "
                                                                                      "trying to deliver the mail ")))
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        _code_status(r)
        r.reason = phrase_reason(r.diagnosis, {"expired": ("Delivery expired",)}) or r.reason
    return found.done()


def _ses_json(mail: Mail) -> list[Record] | None:
    """The notification's JSON, read from the whole text (its lines are longer than a vendor line is cut to)."""
    text, folded = "", False
    whole = mime.text(mail.msg) if not mail.msg.is_multipart() else mail.body
    for e in whole[:MAX_BODY].split("\n"):
        if e == "--":
            break
        e = e[1:] if folded and e else e
        folded = e.endswith("!")
        text += e[:-1] if folded else e
    try:
        outer = json.loads(text)
        payload = json.loads(outer["Message"]) if isinstance(outer, dict) and "Message" in outer else outer
    except (ValueError, TypeError):
        return None
    kind = payload.get("notificationType") if isinstance(payload, dict) else None
    if kind not in ("Bounce", "Complaint"):
        return None
    body = payload.get(kind.lower()) or {}
    found = Records()
    for each in body.get("bouncedRecipients" if kind == "Bounce" else "complainedRecipients") or []:
        if not isinstance(each, dict) or not is_address(str(each.get("emailAddress", ""))):
            continue
        v = found.start(str(each["emailAddress"]))
        if kind == "Complaint":
            v.reason, v.feedbacktype = "feedback", str(body.get("complaintFeedbackType") or "")
            continue
        v.action, v.status = str(each.get("action") or ""), str(each.get("status") or "")
        spec, semi, words = str(each.get("diagnosticCode") or "").partition(";")
        v.spec, v.diagnosis = (spec.upper(), words.strip()) if semi else ("", spec)
        v.reason = SES_TYPES.get((str(body.get("bounceType")), str(body.get("bounceSubType"))), "")
    return found.done()


@parser("ReceivingSES")
def receiving_ses(mail: Mail) -> list[Record] | None:
    if not mail.h("x-ses-outgoing"):
        return None
    notice, _ = mail.fillet(r"(?i)^content-type: text/rfc822-headers")
    found, _ = dsn_records(notice, lambda x: x.startswith("This message could not be delivered."))
    table = {"filtered": ("Mailbox does not exist",), "mesgtoobig": ("Message too large",),
             "mailboxfull": ("Mailbox full",), "contenterror": ("Message content rejected",)}
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        _code_status(r)
        r.reason = phrase_reason(r.diagnosis, table) or r.reason or status_name(r.status)
    return found.done()
