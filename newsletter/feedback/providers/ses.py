"""Amazon SES bounce and complaint notifications, delivered by SNS to POST /hooks/ses (``sns.py`` verifies them).

What SES sends (its "Amazon SNS notification contents"): ``notificationType`` (``eventType`` when published by a
configuration set) Bounce or Complaint; ``bounce.bounceType`` Permanent, Transient or Undetermined with
``bounceSubType`` and ``bouncedRecipients`` (emailAddress, status, diagnosticCode); ``complaint.complainedRecipients``.
A recipient's reason is read from its status and diagnosticCode (the remote server's reply); where that tells
nothing, from TYPES (the subtypes Sisimai's SES module names, and SES's suppression lists), else Permanent is hard
and the others soft. The proof:
``mail.messageId`` is SES's own id and proves nothing here, but with "include original headers" switched on for
the identity, ``mail.headers`` and ``mail.commonHeaders.messageId`` carry the copy's own Message-ID (and its
List-Unsubscribe with the signed link): without them a notification is logged unproven and changes nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from ...config import BouncesSection
from .. import proof
from ..classify import Kind, Recipient, Verdict
from .base import (
    SUPPRESSED,
    Event,
    Received,
    Said,
    Unreadable,
    WouldBlock,
    complained,
    failed,
    json_of,
    obj,
    quotes,
    status_in,
    text,
)
from .sns import Fetch, Sns

HARD = "Permanent"
# (bounceType, bounceSubType) as SES's "Bounce types" lists them, for a bounce whose diagnosticCode tells nothing
TYPES = {("Permanent", "NoEmail"): Said("userunknown", True), ("Permanent", "Suppressed"): SUPPRESSED,
         ("Permanent", "OnAccountSuppressionList"): SUPPRESSED,
         ("Permanent", "UnsubscribedRecipient"): SUPPRESSED,
         ("Transient", "MailboxFull"): Said("mailboxfull", False),
         ("Transient", "MessageTooLarge"): Said("mesgtoobig", False),
         ("Transient", "ContentRejected"): Said("contenterror", False),
         ("Transient", "AttachmentRejected"): Said("contenterror", False)}


class Ses:
    """POST /hooks/ses: SNS deliveries of SES notifications for [bounces] ses_topic_arns."""

    name = "ses"

    def __init__(self, cfg: BouncesSection, fetch: Fetch | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        self.sns = Sns(cfg.ses_topic_arns, fetch, now, cfg.hook_max_age_seconds)
        self.verp = cfg.address

    def receive(self, body: bytes, headers: Mapping[str, str], may_block: bool = True) -> Received:
        envelope = self.sns.verify(body, may_block)
        if envelope["Type"] == "SubscriptionConfirmation":
            if not may_block:
                raise WouldBlock("a confirmation is a fetch")
            return Received(note=self.sns.confirm(envelope))
        if envelope["Type"] == "UnsubscribeConfirmation":
            return Received(note=f"{envelope['TopicArn']} stopped delivering here (not re-subscribed)")
        raw = envelope["Message"].encode("utf-8")
        event = self.event(obj(json_of(raw), "the SNS Message"), raw)
        return Received([event]) if event else Received(skipped=1)

    def event(self, message: dict[str, Any], raw: bytes) -> Event | None:
        """The event of one SES notification; None for one that is not about a bounce or complaint (a delivery)."""
        kind = message.get("notificationType") or message.get("eventType")
        if kind == "Bounce":
            verdict = _bounce(obj(message.get("bounce"), "bounce"))
        elif kind == "Complaint":
            verdict = _complaint(obj(message.get("complaint"), "complaint"))
        else:
            return None
        return Event(verdict, self.found(message.get("mail")), raw)

    def found(self, mail: object) -> proof.Quoted:
        """The copy's own headers as SES echoes them: ``mail.headers`` and ``mail.commonHeaders.messageId``."""
        return quotes(_headers(mail if isinstance(mail, dict) else {}), self.verp)


def _headers(mail: dict[str, Any]) -> Iterator[tuple[str, object]]:
    common = mail.get("commonHeaders")
    if isinstance(common, dict):
        yield "Message-ID", common.get("messageId")
    for header in mail.get("headers") or ():
        if isinstance(header, dict):
            yield text(header.get("name")), header.get("value")


def _bounce(bounce: dict[str, Any]) -> Verdict:
    kind = text(bounce.get("bounceType")) or "Undetermined"
    sub = text(bounce.get("bounceSubType"))
    said = TYPES.get((kind, sub), Said(None, kind == HARD))
    found = [_failed(r, said, f"{kind}/{sub}") for r in _list(bounce.get("bouncedRecipients"))]
    return Verdict(Kind.BOUNCE, tuple(r for r in found if r), f"SES bounce {kind}/{sub}")


def _failed(item: object, said: Said, kind: str) -> Recipient | None:
    if not isinstance(item, dict):
        return None
    diagnostic = text(item.get("diagnosticCode"))
    status = status_in(text(item.get("status")), diagnostic)
    return failed(item.get("emailAddress"), status, diagnostic, said, otherwise=f"SES {kind}")


def _complaint(complaint: dict[str, Any]) -> Verdict:
    what = text(complaint.get("complaintFeedbackType")) or "complaint"
    who = [complained(r.get("emailAddress"), f"SES complaint: {what}")
           for r in _list(complaint.get("complainedRecipients")) if isinstance(r, dict)]
    return Verdict(Kind.COMPLAINT, tuple(r for r in who if r), f"SES complaint ({what})")


def _list(value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Unreadable("a recipients field that is not a list")
    return value[:1000]
