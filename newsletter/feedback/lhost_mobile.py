"""Mobile carriers' and Japanese providers' notices (KDDI/au, EZweb, Biglobe, Verizon), each ported from the
Sisimai 4.25.15 module named in its decorator (lib/Sisimai/Lhost/<Name>.pm, BSD-2-Clause), its phrase tables
copied from the module."""

from __future__ import annotations

import re

from .lhost import Mail, Record, Records, after, dsn_field, is_address, parser, phrase_reason, s3s4, sweep
from .lhost_cloud import RFC822


@parser("KDDI")
def kddi(mail: Mail) -> list[Record] | None:
    if not (re.search(r"no-reply@.+\.dion\.ne\.jp", mail.sender) or mail.h("reply-to") == "no-reply@app.auone-net.jp"
            or any("ezweb.ne.jp (" in r or ".au.com (" in r for r in mail.received)):
        return None
    notice, _ = mail.fillet(RFC822)
    start = re.compile(r"Your mail (?:sent on:? [A-Z][a-z]{2},|attempted to be delivered on:? [A-Z][a-z]{2},)")
    found = Records()
    for e in after(notice, lambda x: bool(start.match(x)), inclusive=True):
        address = re.match(r"[ \t]+Could not be delivered to: <([^ <>]+@[^ <>]+)>", e)
        if address and is_address(s3s4(address.group(1))):
            found.start(s3s4(address.group(1)))
        elif re.match(r"[ \t]+", e) and not re.search(r"Your mail sent on: (.+)$", e):
            found.v.diagnosis += e + " "
    table = {"mailboxfull": ("As their mailbox is full",), "norelaying": ("Due to the following SMTP relay error",),
             "hostunknown": ("As the remote domain doesnt exist",)}
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        if mail.h("x-spasign") == "NG":
            r.reason = "filtered"
        else:
            r.reason = "userunknown" if r.command == "RCPT" else phrase_reason(r.diagnosis, table)
    return found.done()


EZWEB = {"mailboxfull": (re.compile(r"The user\(s\) account is temporarily over quota"),),
         "suspend": (re.compile(r"The user\(s\) account is disabled\."),
                     re.compile(r"The user\(s\) account is temporarily limited\.")),
         "expired": (re.compile(r"Your message was not delivered within "),),
         "onhold": (re.compile(r"Each of the following recipients was rejected by a remote mail server"),)}


@parser("EZweb")
def ezweb(mail: Mail) -> list[Record] | None:
    message_id = mail.h("message-id")
    score = sum(("Postmaster@ezweb.ne.jp" in mail.sender, "Postmaster@au.com" in mail.sender,
                 mail.subject == "Mail System Error - Returned Mail",
                 any("ezweb.ne.jp (EZweb Mail) with" in r for r in mail.received),
                 any(".au.com (" in r for r in mail.received), message_id.endswith(".ezweb.ne.jp>"),
                 message_id.endswith(".au.com>")))
    if score < 2:
        return None
    notice, _ = mail.fillet(r"^(?:-{50}|Content-Type: *message/rfc822)")
    start = re.compile(r"The user\(s\) |Your message |Each of the following|<[^ <>]+@[^ <>]+>$")
    found = Records()
    for e in after(notice, lambda x: bool(start.match(x)), inclusive=True):
        address = re.fullmatch(r"<([^ <>]+@[^ <>]+)>:?(.*)", e) or re.match(r"[ \t]+Recipient: <([^ <>]+@[^ <>]+)>", e)
        field = dsn_field(e)
        if not e:
            continue
        if address:
            found.start(s3s4(address.group(1)))
        elif field and field[0] in ("action", "status", "remote-mta", "reporting-mta"):
            setattr(found.v, {"remote-mta": "rhost", "reporting-mta": "rhost"}.get(field[0], field[0]), field[2])
        elif not re.search(r"[\x80-\uffff]", e):
            command = re.match(r"[ \t]+>{3}[ \t]+([A-Z]{4})", e)
            if command:
                found.v.command = command.group(1)
            elif any(p.search(e) for patterns in EZWEB.values() for p in patterns):
                found.v.diagnosis += " " + e
            else:
                found.v.add("alterrors", e)
    for r in found.items:
        alter = r.notes.get("alterrors", "")
        r.diagnosis = (alter if r.diagnosis.startswith("-") or r.diagnosis.endswith("__") else r.diagnosis) or alter
        r.diagnosis = sweep(r.diagnosis)
        if mail.h("x-spasign") == "NG":
            r.reason = "filtered"
        elif r.command == "RCPT":
            r.reason = "userunknown"
        else:
            r.reason = next((why for why, ps in EZWEB.items() if any(p.search(r.diagnosis) for p in ps)), "")
        if not r.reason and not re.search(r"@(?:ezweb\.ne\.jp|au\.com)$", r.recipient):
            r.reason = "userunknown"
    return found.done()


@parser("Biglobe")
def biglobe(mail: Mail) -> list[Record] | None:
    if not re.search(r"postmaster@(?:biglobe|inacatv|tmtv|ttv)\.ne\.jp", mail.sender) \
            or not mail.subject.startswith("Returned mail:"):
        return None
    notice, _ = mail.fillet(RFC822)
    found = Records()
    for e in after(notice, lambda x: x.startswith("   ----- The following addresses had delivery problems -----")):
        address = re.fullmatch(r"([^ ]+@[^ ]+)", e)
        if address and is_address(s3s4(address.group(1))):
            found.start(s3s4(address.group(1)))
        elif e and not re.match(r"[^\w]", e):
            found.v.diagnosis += e + " "
    table = {"filtered": ("Mail Delivery Failed... User unknown",),
             "mailboxfull": ("The number of messages in recipient's mailbox exceeded the local limit.",)}
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.reason = phrase_reason(r.diagnosis, table)
    return found.done()


@parser("Verizon")
def verizon(mail: Mail) -> list[Record] | None:
    if not any(".vtext.com (" in r for r in mail.received):
        return None
    if mail.sender == "post_master@vtext.com":
        start, rcpt, error = r"Error:[ \t]", r"[ \t]+RCPT TO: (.*)", r"(\d{3})[ \t]-[ \t](.*)"
        table = {"userunknown": ("550 - Requested action not taken: no such user here",)}
    elif re.search(r"<?sysadmin@.+\.vzwpix\.com>?$", mail.sender):
        start, rcpt, error = r"Message could not be delivered to mobile", r"To:[ \t]+(.*)", r"Error:[ \t]+(.+)"
        table = {"userunknown": ("No valid recipients for this MM",)}
    else:
        return None
    boundary = re.search(r'boundary="?([^";]+)', mail.h("content-type"))
    notice, _ = mail.fillet(rf"^--{re.escape(boundary.group(1))}" if boundary else "__BOUNDARY_STRING_HERE__")
    found = Records()
    for e in after(notice, lambda x: bool(re.match(start, x))):
        address = re.fullmatch(rcpt, e)
        if address:
            found.start(s3s4(address.group(1)))
        elif re.fullmatch(error, e):
            found.v.diagnosis = e
    for r in found.items:
        r.diagnosis = sweep(r.diagnosis)
        r.reason = phrase_reason(r.diagnosis, table)
    return found.done()
