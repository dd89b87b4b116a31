"""Mailgun's webhooks (``failed``, ``complained``) at POST /hooks/mailgun, verified with the webhook signing key.

Mailgun signs each request: ``signature.signature`` is the hex HMAC-SHA256 of ``timestamp + token`` under the
signing key ([bounces] mailgun_signing_key, from NEWSLETTER_BOUNCES__MAILGUN_SIGNING_KEY). A signature that does
not verify, a timestamp older than [bounces] hook_max_age_seconds (15 minutes) or over 5 minutes ahead, and a
token seen while its timestamp is in that window (a replay of a captured request) are refused. Mailgun advises
refusing a timestamp over 5 minutes old and retries 10 minutes and more apart, so each attempt is signed anew.

The tokens seen are kept in memory, in this process, up to MAX_TOKENS (about 110 a second for 15 minutes; the
oldest go first past that): a second web process, or this one after a restart, has not seen them. Behind it
either way stands the proof rule's own replay check: a bounce or complaint already counted for a copy is not
counted again (``proof.py``).

``event-data`` then says: ``failed`` with ``severity`` permanent or temporary, ``reason`` and ``delivery-status``
(code, enhanced-code, message, description, mx-host), or ``complained``. A failure's Sisimai reason is read from
delivery-status (the remote server's reply); where it tells nothing, from REASONS (Mailgun's own suppressions,
ESP blocks, expiry), else permanent is hard and temporary soft. The proof: Mailgun's own ``id`` proves nothing
here, but ``message.headers.message-id`` is the copy's own Message-ID (without angle brackets) and
``envelope.sender`` the VERP address it was sent from.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from ...clock import SYSTEM, Clock
from ...config import BouncesSection
from ..classify import Kind, Verdict
from .base import (
    SUPPRESSED,
    Event,
    Received,
    Refused,
    Said,
    complained,
    failed,
    fresh,
    json_of,
    obj,
    part,
    quotes,
    status_in,
    text,
)

MAX_TOKENS = 100_000  # tokens remembered at most (about 7 MB); past that the oldest is forgotten first
# ``reason`` of a failure (Mailgun's "Event structure"), for one whose delivery-status tells nothing
REASONS = {"suppress-bounce": SUPPRESSED, "suppress-unsubscribe": SUPPRESSED, "suppress-complaint": SUPPRESSED,
           "espblock": Said("blocked", False), "old": Said("expired", False)}


class Mailgun:
    """POST /hooks/mailgun: one event per request, HMAC-signed with the webhook signing key."""

    name = "mailgun"

    def __init__(self, cfg: BouncesSection, clock: Clock = SYSTEM) -> None:
        self.key = cfg.mailgun_signing_key.get_secret_value().encode()
        self.verp, self.clock, self.max_age = cfg.address, clock, cfg.hook_max_age_seconds
        self._seen: OrderedDict[str, float] = OrderedDict()  # token -> until when it could verify, oldest first
        self._lock = threading.Lock()

    def receive(self, body: bytes, headers: Mapping[str, str], may_block: bool = True) -> Received:
        doc = json_of(body, refuse=True)
        self.verify(doc.get("signature") if isinstance(doc, dict) else None)
        data = obj(doc.get("event-data"), "event-data")
        verdict = _verdict(data)
        if verdict is None:
            return Received(skipped=1)
        return Received([Event(verdict, quotes(_echoed(data), self.verp), _raw(data))])

    def verify(self, signed: object) -> None:
        """The HMAC first, then the age, then the replay: ``Refused`` saying which failed."""
        fields = signed if isinstance(signed, dict) else {}
        values = [fields.get(k) for k in ("timestamp", "token", "signature")]
        if not all(isinstance(v, str) and 0 < len(v) <= 200 for v in values):
            raise Refused("no signature")
        timestamp, token, signature = (str(v) for v in values)
        mac = hmac.new(self.key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, signature.casefold()):
            raise Refused("the signature does not verify")
        if not timestamp.isdigit():
            raise Refused("a timestamp that is not a number")
        now = self.clock.now().timestamp()
        fresh(int(timestamp), now, self.max_age)
        self._once(token, int(timestamp) + self.max_age, now)

    def _once(self, token: str, until: float, now: float) -> None:
        """Remember ``token`` until its timestamp leaves the window (then the age refuses it); forgetting walks the
        tokens in the order seen and stops at the first still in the window, or drops the oldest past MAX_TOKENS."""
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now or len(self._seen) >= MAX_TOKENS):
                self._seen.popitem(last=False)
            if token in self._seen:
                raise Refused("a token seen already (a replay)")
            self._seen[token] = until


def _verdict(data: dict[str, Any]) -> Verdict | None:
    event = text(data.get("event"))
    if event == "complained":
        who = complained(data.get("recipient"), "Mailgun complaint")
        return Verdict(Kind.COMPLAINT, (who,) if who else (), "Mailgun complaint")
    if event != "failed":
        return None
    severity = "permanent" if text(data.get("severity")) == "permanent" else "temporary"
    status = part(data, "delivery-status")
    words = " ".join(text(status.get(k)) for k in ("code", "message", "description") if text(status.get(k)))
    reason = text(data.get("reason")) or "failed"
    who = failed(data.get("recipient"), status_in(text(status.get("enhanced-code")), words), words,
                 REASONS.get(reason, Said(None, severity == "permanent")), otherwise=f"Mailgun {reason}",
                 host=text(status.get("mx-host")))
    return Verdict(Kind.BOUNCE, (who,) if who else (), f"Mailgun failed ({severity}, {reason})")


def _echoed(data: dict[str, Any]) -> Iterator[tuple[str, object]]:
    yield "Message-ID", part(part(data, "message"), "headers").get("message-id")
    yield "Return-Path", part(data, "envelope").get("sender")


def _raw(data: dict[str, Any]) -> bytes:
    """The event without its signature: the text kept for a person."""
    return json.dumps(data, ensure_ascii=False).encode()
