"""SendGrid's signed Event Webhook at POST /hooks/sendgrid: ECDSA P-256 over the timestamp and the body.

SendGrid signs each POST with its key pair's private half: ``X-Twilio-Email-Event-Webhook-Signature`` is the
base64 DER ECDSA signature, SHA-256, of ``X-Twilio-Email-Event-Webhook-Timestamp`` followed by the raw body; the
public half is [bounces] sendgrid_public_key (base64 DER, as SendGrid's settings page shows it, or PEM). The body
is a JSON array of events, batched: ``bounce`` with ``type`` bounce (hard) or blocked (soft), ``status`` and
``reason``; ``spamreport``; the others (processed, delivered, deferred, dropped, open, click…) change nothing.
The proof: ``sg_message_id`` is SendGrid's own id and proves nothing here; ``smtp-id`` is the Message-ID of the
copy as it was handed over by SMTP, the engine's own.

A captured request replayed later verifies again (SendGrid's retries are signed anew, so no age is enforced);
it changes nothing twice: a bounce or complaint already counted for a copy is not counted again (``proof.py``).
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

from ...config import BouncesSection
from ...errors import ConfigError
from ..classify import Kind, Verdict
from .base import Event, Received, Refused, Unreadable, json_of, quotes, recipient, status_in, text

SIGNATURE = "x-twilio-email-event-webhook-signature"
TIMESTAMP = "x-twilio-email-event-webhook-timestamp"
MAX_EVENTS = 10_000


class Sendgrid:
    """POST /hooks/sendgrid: a batch of events, signed with SendGrid's ECDSA key."""

    name = "sendgrid"

    def __init__(self, cfg: BouncesSection) -> None:
        self.key = public_key(cfg.sendgrid_public_key)
        self.verp = cfg.address

    def receive(self, body: bytes, headers: Mapping[str, str], may_block: bool = True) -> Received:
        self.verify(body, headers.get(SIGNATURE, ""), headers.get(TIMESTAMP, ""))
        events = json_of(body)
        if not isinstance(events, list) or len(events) > MAX_EVENTS:
            raise Unreadable("the body is not a JSON array of events")
        found = [self.event(e) for e in events if isinstance(e, dict)]
        kept = [e for e in found if e is not None]
        return Received(kept, skipped=len(events) - len(kept))

    def verify(self, body: bytes, signature: str, timestamp: str) -> None:
        if not signature or not timestamp or len(timestamp) > 32:
            raise Refused("no signature")
        try:
            self.key.verify(base64.b64decode(signature, validate=True), timestamp.encode() + body,
                            ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError):
            raise Refused("the signature does not verify") from None

    def event(self, item: dict[str, Any]) -> Event | None:
        verdict = _verdict(item)
        if verdict is None:
            return None
        return Event(verdict, quotes([("Message-ID", item.get("smtp-id"))], self.verp),
                     json.dumps(item, ensure_ascii=False).encode())


def _verdict(item: dict[str, Any]) -> Verdict | None:
    event = text(item.get("event"))
    if event == "spamreport":
        who = recipient(item.get("email"), True, None, "SendGrid spam report")
        return Verdict(Kind.COMPLAINT, (who,) if who else (), "SendGrid spam report")
    if event != "bounce":
        return None
    kind = text(item.get("type")) or "bounce"
    reason = text(item.get("reason"))
    who = recipient(item.get("email"), kind == "bounce", status_in(text(item.get("status")), reason),
                    reason or f"SendGrid {kind}")
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
