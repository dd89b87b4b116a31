"""The one transactional email the web pages send: the double opt-in confirmation link.

A single message, so the stdlib's EmailMessage is fine here (the weekly issue uses the prepared
byte assembly in message.py instead). Every header value from user input goes through
``header_safe``, and the name is encoded as RFC 2047 words, never pasted raw.
"""

from __future__ import annotations

import email.policy
import email.utils
from email.headerregistry import Address
from email.message import EmailMessage

from ..config import Config
from ..deliver import envelope_sender
from ..message import header_safe, message_id, sender_for
from ..smtp import Connection, Outcome, Result


def confirmation(config: Config, to_email: str, to_name: str, url: str) -> tuple[EmailMessage, str]:
    """The message and its envelope sender."""
    nl = config.newsletter
    sender = sender_for(nl.name, nl.sender, nl.reply_to)
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender.from_header
    if sender.reply_to:
        msg["Reply-To"] = sender.reply_to
    msg["To"] = Address(header_safe(to_name)[:200], addr_spec=header_safe(to_email))
    msg["Subject"] = f"Confirm your subscription to {header_safe(nl.name)}"
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = message_id(sender.domain)
    msg["Auto-Submitted"] = "auto-generated"
    hours = f"{config.web.confirm_hours:g}"
    msg.set_content(
        f"Hi {header_safe(to_name) or 'there'},\n\n"
        f"Someone, hopefully you, asked to receive {nl.name} at this address.\n"
        f"To confirm, open this link within {hours} hours and press the button:\n\n{url}\n\n"
        "If it was not you, ignore this email: nothing will be sent to you.\n\n"
        f"{nl.identity}\n")
    return msg, envelope_sender(config, sender)


def send(config: Config, msg: EmailMessage, envelope_from: str) -> Result:
    """Deliver over the configured relay; ``Connection.deliver`` wants dot-stuffed CRLF bytes."""
    rcpt = msg["To"].addresses[0].addr_spec
    data = msg.as_bytes(policy=email.policy.SMTP if rcpt.isascii() else email.policy.SMTPUTF8)
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    stuffed = b"." + stuffed if stuffed.startswith(b".") else stuffed
    smtp = Connection(config.smtp)
    try:
        return smtp.deliver(envelope_from, rcpt, stuffed, smtputf8=not rcpt.isascii())
    finally:
        smtp.close()


def sent(result: Result) -> bool:
    return result.outcome is Outcome.SENT
