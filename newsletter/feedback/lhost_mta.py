"""Mail servers' own notices (Postfix, Sendmail v8 and v5, Exim, qmail and its look-alikes, Courier, OpenSMTPD),
each ported from the Sisimai 4.25.15 module named in its decorator (lib/Sisimai/Lhost/<Name>.pm, BSD-2-Clause):
its header test, where its report starts, where the recipient and the words about it are, the SMTP command it
names, and its own phrases for a reason (copied from the module's tables)."""

from __future__ import annotations

import re

from .lhost import Mail, Record, Records, after, dsn_field, dsn_records, parser, phrase_reason, s3s4, sweep
from .lhost_webmail import EXIM_TABLE, exim_reason, exim_rhost
from .reasons import find_reply, find_status

ORIGINAL = r"^Content-Type: (?:message/rfc822|text/rfc822-headers)"
POSTFIX_START = re.compile(r" +The (?:Postfix (?:program$|on .+ program$)|\w+ Postfix program$|mail[ \t]system$"
                           r"|\w+[ \t]program$)|This is the (?:Postfix program|\w+ Postfix program|\w+ program"
                           r"|mail system at host)")


@parser("Postfix")
def postfix(mail: Mail) -> list[Record] | None:
    """Its DSN, and above it the "<addr>: host … said: … (in reply to RCPT TO command)" paragraph, whose words
    replace a DSN diagnostic that says less; the commands are handed out in order."""
    if mail.subject != "Undelivered Mail Returned to Sender" or mail.h("x-aol-ip"):
        return None
    notice, original = mail.fillet(ORIGINAL)
    commands: list[str] = []
    other: dict[str, str] = {}
    unavailable = False

    def line(found: Records, e: str, _: str) -> None:
        nonlocal unavailable
        command = re.search(r"[ \t]\(in reply to (?:end of )?([A-Z]{4}).*", e) \
            or re.search(r"([A-Z]{4})[ \t]*.*command\)$", e)
        expanded = re.fullmatch(r"<([^ <>]+@[^ <>]+)> \(expanded from <(.+)>\):[ \t]*(.+)", e)
        address = re.fullmatch(r"<([^ <>]+@[^ <>]+)>:(.*)", e)
        if command:
            commands.append(command.group(1))
            if other.get("diagnosis"):
                other["diagnosis"] += " " + e
        elif expanded:
            other.update(recipient=expanded.group(1), alias=expanded.group(2), diagnosis=expanded.group(3))
        elif address:
            other.update(recipient=address.group(1), diagnosis=address.group(2))
        elif "--- Delivery report unavailable ---" in e:
            unavailable = True
        elif other.get("diagnosis") and e.startswith("    "):
            other["diagnosis"] += " " + e

    found, _ = dsn_records(notice, lambda x: bool(POSTFIX_START.match(x)), line)
    if not found.count:
        to = re.search(r"^To:[ ]*(.+)", original, re.MULTILINE)
        if other.get("recipient"):
            found.start(other["recipient"])
        elif unavailable and to:
            found.start(s3s4(to.group(1)))
    for r in found.items:
        _postfix_prefer(r, other.get("diagnosis", ""))
        r.diagnosis = sweep(r.diagnosis)
        r.command = commands.pop(0) if commands else ""
        r.command = r.command or ("HELO" if "refused to talk to me:" in r.diagnosis else "")
        r.spec = "SMTP" if r.spec == "X-POSTFIX" else r.spec or ("SMTP" if re.search(r"host .+ said:", r.diagnosis)
                                                                  else "")
    return found.done()


def _postfix_prefer(e: Record, other: str) -> None:
    if not other:
        return
    e.diagnosis = e.diagnosis or other
    if e.diagnosis.isdigit():
        e.diagnosis = other
        return
    status = find_status(other) if not e.status or e.status.endswith(".0.0") else ""
    if status and not status.endswith(".0.0"):
        e.status = status
    reply = find_reply(other) if not e.replycode or e.replycode.endswith("00") else ""
    if reply and not reply.endswith("00"):
        e.replycode = reply
    if status or reply and len(other) > len(e.diagnosis):
        e.diagnosis = other


@parser("Sendmail")
def sendmail(mail: Mail) -> list[Record] | None:
    """Its DSN, the transcript's last ">>> COMMAND" and its "<<<" replies (which replace a shorter diagnostic),
    and the "<addr>... reason" line above them."""
    if not re.search(r"see transcript for details$|^Warning: ", mail.subject) or mail.h("x-aol-ip"):
        return None
    notice, _ = mail.fillet(ORIGINAL)
    session = {"command": "", "error": ""}
    replies: list[str] = []
    other: dict[str, str] = {}

    def line(found: Records, e: str, _: str) -> None:
        if e.startswith(" "):
            return
        sent, reply = re.match(r">{3}[ ]+([A-Z]{4}) ?", e), re.fullmatch(r"<{3}[ ]+(.+)", e)
        if sent:
            session["command"] = sent.group(1)
        elif reply:
            replies.append(reply.group(1)) if reply.group(1) not in replies else None
        elif not session["error"]:
            address = re.fullmatch(r"<(.+)>\.+ (.+)", e)
            code = re.match(r"[45]\d\d[ \t]([45]\.\d\.\d)[ \t].+", e)
            if e.startswith("... while talking to "):
                session["error"] = "1"
            elif address:
                other.update(recipient=address.group(1), diagnosis=address.group(2))
            elif code:
                other["status"] = code.group(1)
                other["diagnosis"] = other.get("diagnosis", "") + " " + e
            elif e.startswith(("Message: ", "Warning: ")):
                other["diagnosis"] = other.get("diagnosis", "") + " " + e

    found, _ = dsn_records(notice, lambda x: x.startswith("   ----- Transcript of session follows -----"), line)
    for r in found.items:
        r.command = r.command or session["command"] or ("EHLO" if replies else "")
        if other.get("diagnosis"):
            blank_or_number = not r.diagnosis.strip() or r.diagnosis.strip().isdigit()
            r.diagnosis = other["diagnosis"] if blank_or_number else r.diagnosis
        joined = " ".join(replies)
        r.diagnosis = sweep(joined if len(joined) > len(r.diagnosis) else r.diagnosis)
        if other.get("status") and not re.fullmatch(r"[45]\.\d\.\d{1,3}", r.status):
            r.status = other["status"]
        if not re.fullmatch(r"[^ ]+@[^ ]+", r.recipient):
            inside = re.search(r"<([^ <>]+@[^ <>]+)>", r.diagnosis)
            r.recipient = inside.group(1) if inside else r.recipient
    return found.done()


@parser("V5sendmail")
def v5sendmail(mail: Mail) -> list[Record] | None:
    """Sendmail 5's transcript: "550 <addr>... reason" lines, each after its ">>> COMMAND" and "<<< reply"."""
    if not re.match(r"Returned mail: [A-Z]", mail.subject):
        return None
    notice, original = mail.fillet(r"^ +----- (?:Unsent message follows|No message was collected) -----")
    if not original:
        return None
    found, commands, replies, other, stopped = Records(), dict[int, str](), dict[int, str](), "", False
    for e in after(notice, lambda x: "----- Transcript of session follows -----" in x):
        failed = re.fullmatch(r"\d{3}[ \t]+<([^ <>]+@[^ <>]+)>\.{3}[ \t]*(.+)", e)
        sent, reply = re.match(r">{3}[ \t]*([A-Z]{4})[ \t]*", e), re.fullmatch(r"<{3}[ ]+(.+)", e)
        if not e:
            continue
        if failed:
            found.start(failed.group(1)).diagnosis = failed.group(2) + (
                f": {replies[found.count - 1]}" if replies.get(found.count - 1) else "")
        elif sent:
            commands[found.count] = sent.group(1)
        elif reply:
            replies[found.count] = reply.group(1)
        elif not stopped:
            stopped = bool(re.fullmatch(r"\.+ while talking to .+:", e))
            other_words = re.fullmatch(r"\d{3}[ \t]+.+\.{3}[ \t]*(.+)", e)
            other = other_words.group(1) if other_words and not stopped else other
    if not found.count:
        to = re.search(r"^To:[ ]*(.+)", original, re.MULTILINE)
        if to:
            found.start(s3s4(to.group(1)))
    for i, r in enumerate(found.items):
        r.command = commands.get(i, "")
        r.diagnosis = sweep(r.diagnosis or (other if other else replies.get(i, "")))
        if not re.fullmatch(r"[^ ]+@[^ ]+", r.recipient):
            inside = re.search(r"<([^ <>]+@[^ <>]+)>", r.diagnosis)
            r.recipient = inside.group(1) if inside else r.recipient
    return found.done()


EXIM_SUBJECT = re.compile(r"Mail delivery failed(: returning message to sender)?|Warning: message [^ ]+ delayed +"
                          r"|Delivery Status Notification|Mail failure|Message frozen"
                          r"|error\(s\) in forwarding or filtering")
EXIM_START = re.compile(r"This message was created automatically by mail delivery software\."
                        r"|A message that you sent was rejected by the local scannning code"
                        r"|A message that you sent contained one or more recipient addresses "
                        r"|A message that you sent could not be delivered to all of its recipients"
                        r"|Message [^ ]+ (?:has been frozen|was frozen on arrival)"
                        r"|The [^ ]+ router encountered the following error\(s\):")
FROZEN = re.compile(r"Message [^ ]+ (?:has been frozen|was frozen on arrival)")


@parser("Exim")
def exim(mail: Mail) -> list[Record] | None:
    """Exim's "  addr" lines (two spaces in) with the words under them, or X-Failed-Recipients; Exim's phrases for
    hostunknown, mailboxfull, notaccept and its delays."""
    if re.search(r"@.+\.mail\.ru>?", mail.sender):
        return None
    score = mail.sender.startswith("Mail Delivery System") \
        + bool(re.match(r"<\w{7}-\w{6}-\w{2}@", mail.h("message-id"))) + bool(EXIM_SUBJECT.search(mail.subject))
    if score < 2:
        return None
    notice, _ = mail.fillet(r"^(?:-+ This is a copy of (?:the|your) message, including all the headers\. -+"
                            r"|Content-Type: *message/rfc822\n)")
    found = Records()
    boundary = "boundary" in mail.h("content-type").lower()
    for e in after(notice, lambda x: bool(EXIM_START.match(x)), inclusive=True):
        address = re.fullmatch(r"[ \t]{2}([^ \t]+@[^ \t]+\.?[a-zA-Z]+)(:.+)?", e) \
            or re.fullmatch(r"[ \t]{2}[^ \t]+@[^ \t]+\.[a-zA-Z]+ <(.+?@.+?)>:.+", e)
        if not e or EXIM_START.match(e) and not FROZEN.match(e):
            continue
        if address or re.fullmatch(r"( +an undisclosed address)", e):
            found.start(address.group(1) if address else e.strip())
            found.v.diagnosis = e if address and address.re.groups == 1 else found.v.diagnosis
        elif re.fullmatch(r" +\(generated from (.+)\)", e) or re.match(r" +generated by ([^ \t]+@[^ \t]+)", e):
            found.v.alias = re.sub(r"^ +\(?generated (?:from|by) ", "", e).rstrip(")")
        elif FROZEN.match(e):
            found.v.add("alterrors", e)
        elif boundary:
            _exim_dsn_line(found, e)
        elif len(found.items) == found.count:
            found.v.diagnosis += e + " "
        elif re.match(r" +pipe to \|/[^ ]+", e):
            found.v.diagnosis = e
        elif e.startswith("    "):
            found.v.add("alterrors", e)
    if not found.count:
        for each in filter(None, (a.strip() for a in mail.h("x-failed-recipients").split(","))):
            found.start(each)
    for r in found.items:
        _exim_finish(mail, r, found.items[0], boundary)
    return found.done()


def _exim_dsn_line(found: Records, e: str) -> None:
    parsed = dsn_field(e)
    if parsed is None:
        if e.startswith(" "):
            found.v.add("alterrors", e)
        return
    name, kind, value = parsed
    if name == "final-recipient":
        found.v.spec = found.v.spec or ("SMTP" if "@" in value else "X-UNIX")
    elif name == "diagnostic-code":
        found.v.spec, found.v.diagnosis = kind, value
    elif name in ("action", "status"):
        setattr(found.v, name, value)
    elif name == "remote-mta":
        found.v.rhost = value


def _exim_finish(mail: Mail, e: Record, first: Record, boundary: bool) -> None:
    if not e.diagnosis and boundary:
        e.diagnosis, e.spec = first.diagnosis, e.spec or first.spec
        if first.notes.get("alterrors"):
            e.notes["alterrors"] = first.notes["alterrors"]
    alter = e.notes.get("alterrors", "")
    if alter:
        e.diagnosis = e.diagnosis or alter
        if e.diagnosis.startswith("-") or e.diagnosis.endswith("__"):
            e.diagnosis = alter
        elif len(e.diagnosis) < len(alter) and e.diagnosis.lower() in alter.lower():
            e.diagnosis = alter
    e.diagnosis = re.sub(r"\b__.+$", "", sweep(e.diagnosis))
    exim_rhost(mail, e)
    exim_reason(e, EXIM_TABLE)
    if not e.status:
        e.status = find_status(e.diagnosis)


QMAIL_COMMANDS = (("CONN", r"(?:Error:)?Connected to [^ ]+ but greeting failed\."),
                  ("EHLO", r"(?:Error:)?Connected to [^ ]+ but my name was rejected\."),
                  ("MAIL", r"(?:Error:)?Connected to [^ ]+ but sender was rejected\."),
                  ("RCPT", r"(?:Error:)?[^ ]+ does not like recipient\."),
                  ("DATA", r"(?:Error:)?[^ ]+ failed on DATA command\.|(?:Error:)?[^ ]+ failed after I sent the "
                           r"message\."))
QMAIL_HOST = re.compile(r"Giving up on ([^ ]+[0-9a-zA-Z])\.?$|Connected to ([-0-9a-zA-Z.]+[0-9a-zA-Z]) "
                        r"|remote host ([-0-9a-zA-Z.]+[0-9a-zA-Z]) said:")
QMAIL_LDAP = {
    "suspend": ("Mailaddress is administrative?le?y disabled",),
    "userunknown": ("Sorry, no mailbox here by that name",),
    "exceedlimit": ("The message exeeded the maximum size the user accepts",),
    "systemerror": ("Automatic homedir creator crashed", "Illegal value in LDAP attribute", "LDAP attribute is not "
                    "given but mandatory", "Timeout while performing search on LDAP server", "Too many results "
                    "returned but needs to be unique", "Permanent error while executing qmail-forward", "Temporary "
                    "error in automatic homedir creation", "Temporary error while executing qmail-forward",
                    "Temporary failure in LDAP lookup", "Unable to contact LDAP server", "Unable to login into LDAP "
                    "server, bad credentials")}
QMAIL = {
    "userunknown": ("no mailbox here by that name", "does not like recipient."),
    "mailboxfull": ("disk quota exceeded",),
    "mesgtoobig": ("Message size exceeds fixed maximum message size:",),
    "hostunknown": ("Sorry, I couldn't find any host ",),
    "systemfull": ("Requested action not taken: mailbox unavailable (not enough free space)",),
    "systemerror": ("bad interpreter: No such file or directory", "system error", "Unable to"),
    "networkerror": ("Sorry, I wasn't able to establish an SMTP connection", "Sorry, I couldn't find a mail exchanger "
                     "or IP address", "Sorry. Although I'm listed as a best-preference MX or A for that host")}
X4_START = re.compile(r"He/Her is not .+ user|Hi\. .+ unable to deliver your message to the following addresses"
                      r"|Su mensaje no pudo ser entregado|This is the (?:machine generated message from mail service"
                      r"|mail delivery agent at)|Unable to deliver message to the following address"
                      r"|Unfortunately, your mail was not delivered to the following address:"
                      r"|Your (?:mail message to the following address|message to the following addresses)"
                      r"|We're sorry\.")


@parser("qmail")
def qmail(mail: Mail) -> list[Record] | None:
    invoked = re.compile(r"\(qmail +\d+ +invoked +(?:for +bounce|from +network)\)")
    if mail.subject != "failure notice" and not any(invoked.match(r) for r in mail.received):
        return None
    return _qmail(mail, r"^--- Below this line is a copy of the message\.", lambda x: x.startswith(
        "Hi. This is the qmail"), status=True)


@parser("X4")
def x4(mail: Mail) -> list[Record] | None:
    """qmail look-alikes (vpopmail and others) with their own opening words."""
    invoked = re.compile(r"\(qmail +\d+ +invoked +for +bounce\)")
    if not mail.subject.startswith(("failure notice", "Permanent Delivery Failure")) \
            and not any(invoked.match(r) for r in mail.received):
        return None
    return _qmail(mail, r"^--- (?:Below this line is a copy of the message|Original message follows)\.",
                  lambda x: bool(X4_START.match(x)))


def _qmail(mail: Mail, backbone: str, start: object, status: bool = False) -> list[Record] | None:
    notice, _ = mail.fillet(backbone)
    found = Records()
    for e in after(notice, start):  # type: ignore[arg-type]
        address = re.fullmatch(r"(?:To *:)?<([^<>]+@[^<>]+)>:[ \t]*", e)
        if address:
            found.start(address.group(1))
        elif e and len(found.items) == found.count:
            found.v.diagnosis += e + " "
            if e.startswith("Remote host said:"):
                found.v.notes["alterrors"] = e
            host = None if found.v.rhost else QMAIL_HOST.search(e)
            found.v.rhost = next(g for g in host.groups() if g) if host else found.v.rhost
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        _qmail_reason(r)
        if status:
            r.status = find_status(r.diagnosis)
    return found.done()


def _qmail_reason(e: Record) -> None:
    command = next((c for c, p in QMAIL_COMMANDS if re.search(p, e.diagnosis)), "")
    progress = re.search(r"Sorry, no SMTP connection got far enough; most progress was ([A-Z]{4}) ", e.diagnosis)
    e.command = e.command or command or (progress.group(1) if progress else "")
    if e.command == "MAIL":
        e.reason = "rejected"
    elif e.command in ("HELO", "EHLO"):
        e.reason = "blocked"
    elif re.fullmatch(r"[^ ]+ does not like recipient\.[ \t]+.+this message has been in the queue too long\.",
                      e.diagnosis):
        e.reason = "onhold"
    else:
        alter = e.notes.get("alterrors", "")
        e.reason = phrase_reason(alter, QMAIL) if alter else phrase_reason(e.diagnosis, QMAIL)
        e.reason = e.reason or phrase_reason(e.diagnosis, QMAIL_LDAP)
        if not e.reason and "this message has been in the queue too long." in e.diagnosis:
            e.reason = "expired"


@parser("Courier")
def courier(mail: Mail) -> list[Record] | None:
    if not ("Courier mail server at " in mail.sender
            or re.search(r"NOTICE: mail delivery status\.|WARNING: delayed mail\.", mail.subject)
            or re.match(r"<courier\.[0-9A-F]+\.", mail.h("message-id"))):
        return None
    notice, _ = mail.fillet(ORIGINAL)
    commands: list[str] = []

    def line(found: Records, e: str, _: str) -> None:
        sent = re.match(r">{3}[ ]+([A-Z]{4}) ?", e)
        if sent:
            commands.append(sent.group(1))

    found, _ = dsn_records(notice, lambda x: "DELAYS IN DELIVERING YOUR MESSAGE" in x or "UNDELIVERABLE MAIL" in x,
                           line)
    table = {"hostunknown": ("No such domain.",), "systemerror": ("This domain's DNS violates RFC 1035.",),
             "networkerror": ("DNS lookup failed.",)}
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.reason = phrase_reason(r.diagnosis, table) or r.reason
        r.command = r.command or (commands[0] if commands else "")
    return found.done()


OPENSMTPD = {
    "expired": ("Envelope expired",), "hostunknown": ("Invalid domain name", "Domain does not exist"),
    "notaccept": ("Destination seem to reject all mails",),
    "networkerror": ("Address family mismatch on destination MXs", "All routes to destination blocked",
                     "bad DNS lookup error code", "Could not retrieve source address", "Loop detected",
                     "Network error on destination MXs", "No MX found for domain", "No MX found for destination",
                     "No valid route to remote MX", "No valid route to destination", "Temporary failure in MX lookup"),
    "securityerror": ("Could not retrieve credentials",)}


@parser("OpenSMTPD")
def opensmtpd(mail: Mail) -> list[Record] | None:
    if "Delivery status notification" not in mail.subject or "Mailer Daemon <" not in mail.sender \
            or not any(" (OpenSMTPD) with " in r for r in mail.received):
        return None
    notice, _ = mail.fillet(r"^ +Below is a copy of the original message:")
    found = Records()
    for e in after(notice, lambda x: x.startswith("    This is the MAILER-DAEMON, please DO NOT REPLY to this")):
        address = re.fullmatch(r"([^ @]+@[^ ]+?):? (.+)", e)
        if address:
            found.start(address.group(1)).diagnosis = address.group(2)
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.reason = phrase_reason(r.diagnosis, OPENSMTPD)
    return found.done()
