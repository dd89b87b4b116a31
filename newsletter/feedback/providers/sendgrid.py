"""SendGrid's signed Event Webhook at POST /hooks/sendgrid: ECDSA P-256 over the timestamp and the body.

SendGrid signs each POST with its key pair's private half: ``X-Twilio-Email-Event-Webhook-Signature`` is the
base64 DER ECDSA signature, SHA-256, of ``X-Twilio-Email-Event-Webhook-Timestamp`` followed by the raw body; the
public half is [bounces] sendgrid_public_key (base64 DER, as SendGrid's settings page shows it, or PEM). The body
is a JSON array of events, batched: ``bounce`` with ``type`` bounce or blocked, ``status``, ``reason`` (the
remote server's reply) and ``bounce_classification``; ``dropped`` with a ``reason``; ``spamreport``; the others
(processed, delivered, deferred, open, click…) change nothing. A bounce's Sisimai reason is read from its status and
reason; where they tell nothing, from its bounce_classification (CLASSES), else a bounce is hard and a block soft.
A drop is a failure only for the reasons in DROPS (the address is on one of SendGrid's suppression lists, or
invalid); a drop for the sender's own fault (an SMTPAPI header, a quota, spam content) is none of the reader's.
The proof: ``sg_message_id`` is SendGrid's own id and proves nothing here; ``smtp-id`` is the Message-ID of the
copy as it was handed over by SMTP, the engine's own.

The signature covers the timestamp, so a captured request replayed later is refused by its age: older than
[bounces] hook_max_age_seconds (15 minutes) or over 5 minutes ahead. SendGrid signs each attempt anew, its retries
(for up to 24 hours) included, so the window loses none of them. Within the window a replay changes nothing twice:
a bounce or complaint already counted for a copy is not counted again (``proof.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ...clock import SYSTEM, Clock
from ...config import BouncesSection
from ...errors import ConfigError
from ..classify import Kind, Verdict
from .base import (
    SUPPRESSED,
    Event,
    Received,
    Refused,
    Said,
    Unreadable,
    complained,
    failed,
    fresh,
    json_of,
    quotes,
    status_in,
    text,
)

SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"
MAX_EVENTS = 10_000
# bounce_classification (SendGrid's "Bounce classifications"), for a bounce whose words tell nothing
CLASSES = {"Invalid Address": Said("userunknown", True), "Mailbox Unavailable": Said("suspend", False),
           "Reputation": Said("blocked", False), "Content": Said("spamdetected", False),
           "Frequency or Volume": Said("toomanyconn", False), "Technical": Said("systemerror", False)}
# a dropped event's ``reason`` when it is about the address (the others are about the sender's own message)
DROPS = {"Bounced Address": SUPPRESSED, "Unsubscribed Address": SUPPRESSED,
         "Spam Reporting Address": SUPPRESSED, "Invalid": Said("userunknown", True)}


class Sendgrid:
    """POST /hooks/sendgrid: a batch of events, signed with SendGrid's ECDSA key."""

    name = "sendgrid"

    def __init__(self, cfg: BouncesSection, clock: Clock = SYSTEM) -> None:
        self.key = public_key(cfg.sendgrid_public_key)
        self.verp, self.clock, self.max_age = cfg.address, clock, cfg.hook_max_age_seconds

    def receive(self, body: bytes, headers: Mapping[str, str], may_block: bool = True) -> Received:
        self.verify(body, headers.get(SIGNATURE, ""), headers.get(TIMESTAMP, ""))
        events = json_of(body)
        if not isinstance(events, list) or len(events) > MAX_EVENTS:
            raise Unreadable("the body is not a JSON array of events")
        found = [self.event(e) for e in events if isinstance(e, dict)]
        kept = [e for e in found if e is not None]
        return Received(kept, skipped=len(events) - len(kept))

    def verify(self, body: bytes, signature: str, timestamp: str) -> None:
        """The signature over timestamp and body first, then the timestamp's age: ``Refused`` saying which failed."""
        if not signature or not timestamp or len(timestamp) > 32:
            raise Refused("no signature")
        try:
            self.key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body,
                            ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            raise Refused("the signature does not verify") from None
        if not timestamp.isdigit():
            raise Refused("a timestamp that is not a number")
        fresh(int(timestamp), self.clock.now().timestamp(), self.max_age)

    def event(self, item: dict[str, Any]) -> Event | None:
        verdict = _verdict(item)
        if verdict is None:
            return None
        return Event(verdict, quotes([("Message-ID", item.get("smtp-id"))], self.verp),
                     json.dumps(item, ensure_ascii=False).encode())


def _verdict(item: dict[str, Any]) -> Verdict | None:
    event = text(item.get("event"))
    if event == "spamreport":
        who = complained(item.get("email"), "SendGrid spam report")
        return Verdict(Kind.COMPLAINT, (who,) if who else (), "SendGrid spam report")
    reason = text(item.get("reason"))
    if event == "dropped" and reason in DROPS:
        who = failed(item.get("email"), None, "", DROPS[reason], otherwise=f"SendGrid dropped: {reason}")
        return Verdict(Kind.BOUNCE, (who,) if who else (), f"SendGrid dropped ({reason})")
    if event != "bounce":
        return None
    kind = text(item.get("type")) or "bounce"
    said = CLASSES.get(text(item.get("bounce_classification")), Said(None, kind == "bounce"))
    who = failed(item.get("email"), status_in(text(item.get("status")), reason), reason, said,
                 otherwise=f"SendGrid {kind}")
    return Verdict(Kind.BOUNCE, (who,) if who else (), f"SendGrid {kind}")


def public_key(value: str) -> ec.EllipticCurvePublicKey:
    """[bounces] sendgrid_public_key as a P-256 key; ``ConfigError`` in one line if it is not one."""
    try:
        data = value.strip().encode()
        key = (serialization.load_pem_public_key(data) if data.startswith(b"-----BEGIN")
               else serialization.load_der_public_key(base64.b64decode(data, validate=True)))
    except (ValueError, binascii.Error, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ConfigError("[bounces] sendgrid_public_key: not an ECDSA P-256 public key (base64 DER or PEM)")
    return key
