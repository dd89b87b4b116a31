"""Complaints: RFC 5965 ARF reports, and Microsoft's Junk Mail Reporting Program reports, which are not ARF but a
multipart/mixed from staff@hotmail.com, "complaint about message from <IP>", with the reported message attached
and its recipient in X-HmXmrOriginalRecipient (Sisimai::ARF ``is_arf`` and ``make``, 4.25.15, recognise both)."""

from __future__ import annotations

import re
from email.message import Message

from . import mime
from .verdict import Kind, Recipient, Verdict

MAX_RECIPIENTS = 1000
REPORTERS = re.compile(r"(?:staff@hotmail\.com|complaints@email-abuse\.amazonses\.com)$")
NAMED = ("original-rcpt-to", "removal-recipient")


def verdict(msg: Message, leaves: list[Message]) -> Verdict | None:
    """A complaint naming the complaining recipients, or None when the message is not a feedback report. The
    recipient is the one the report names (Original-Rcpt-To, Removal-Recipient), else the one Microsoft's report
    names in the attached message, else the To: of the attached message."""
    reports = [p for p in leaves if p.get_content_type() == "message/feedback-report"]
    if not reports and not _is_arf(msg):
        return None
    fields = [f for block in (mime.fields(reports[0]) if reports else []) for f in block]
    kind = mime.first(fields, "feedback-type") or ("abuse" if not reports else "unspecified")
    named = [v.rpartition(";")[2] for n, v in fields if n in NAMED]
    addresses = (mime.addresses(named) or mime.addresses(mime.original_headers(leaves, "x-hmxmroriginalrecipient"))
                 or mime.addresses(mime.original_headers(leaves, "to")))
    unique = {a.lower(): a for a in reversed(addresses[:MAX_RECIPIENTS])}
    recipients = tuple(Recipient(a, True, None, f"Feedback-Type: {kind}", "feedback")
                       for a in reversed(unique.values()))
    reason = f"ARF feedback report ({kind})" if reports or mime.param(msg, "report-type") else \
        f"Microsoft JMRP complaint report ({kind})"
    return Verdict(Kind.COMPLAINT, recipients, reason + ("" if recipients else ", no recipient named"))


def _is_arf(msg: Message) -> bool:
    if msg.get_content_type() == "multipart/report" and mime.param(msg, "report-type") == "feedback-report":
        return True
    if msg.get_content_type() != "multipart/mixed":
        return False
    sender = mime.addresses([mime.header(msg, "from")])
    return bool(sender and REPORTERS.search(sender[0].lower())
                and "complaint about message from " in mime.header(msg, "subject"))
