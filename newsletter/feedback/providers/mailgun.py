"""Mailgun's webhooks (``failed``, ``complained``) at POST /hooks/mailgun, verified with the webhook signing key.

Mailgun signs each request: ``signature.signature`` is the hex HMAC-SHA256 of ``timestamp + token`` under the
signing key ([bounces] mailgun_signing_key, from NEWSLETTER_BOUNCES__MAILGUN_SIGNING_KEY). A signature that does
not verify, a timestamp more than 5 minutes from now and a token seen within that window (a replay of a captured
request) are refused. ``event-data`` then says: ``failed`` with ``severity`` permanent (hard) or temporary (soft)
and ``delivery-status`` (code, message, description), or ``complained``. The proof: Mailgun's own ``id`` proves
nothing here, but ``message.headers.message-id`` is the copy's own Message-ID (without angle brackets) and
``envelope.sender`` the VERP address it was sent from.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from ...clock import SYSTEM, Clock
from ...config import BouncesSection
from ..classify import Kind, Verdict
from .base import Event, Received, Refused, json_of, obj, part, quotes, recipient, status_in, text

WINDOW = 300.0  # seconds: Mailgun's own advice for the timestamp, and how long a token is remembered


class Mailgun:
    """POST /hooks/mailgun: one event per request, HMAC-signed with the webhook signing key."""

    name = "mailgun"

    def __init__(self, cfg: BouncesSection, clock: Clock = SYSTEM) -> None:
        self.key = cfg.mailgun_signing_key.get_secret_value().encode()
        self.verp, self.clock = cfg.address, clock
        self._seen: dict[str, float] = {}  # token -> its timestamp, for WINDOW
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
        now = self.clock.now().timestamp()
        if not timestamp.isdigit() or abs(now - int(timestamp)) > WINDOW:
            raise Refused("signed more than 5 minutes from now")
        self._once(token, now)

    def _once(self, token: str, now: float) -> None:
        """Remember ``token`` for WINDOW; kept in the order seen, forgetting stops at the first young one."""
        with self._lock:
            while self._seen and next(iter(self._seen.values())) < now - WINDOW:
                del self._seen[next(iter(self._seen))]
            if token in self._seen:
                raise Refused("a token seen already (a replay)")
            self._seen[token] = now


def _verdict(data: dict[str, Any]) -> Verdict | None:
    event = text(data.get("event"))
    if event == "complained":
        who = recipient(data.get("recipient"), True, None, "Mailgun complaint")
        return Verdict(Kind.COMPLAINT, (who,) if who else (), "Mailgun complaint")
    if event != "failed":
        return None
    hard = text(data.get("severity")) == "permanent"
    status = part(data, "delivery-status")
    words = " ".join(text(status.get(k)) for k in ("code", "message", "description") if text(status.get(k)))
    reason = text(data.get("reason")) or "failed"
    who = recipient(data.get("recipient"), hard, status_in(text(status.get("enhanced-code")), words),
                    words or f"Mailgun {reason}")
    return Verdict(Kind.BOUNCE, (who,) if who else (), f"Mailgun failed ({'permanent' if hard else 'temporary'}, "
                                                       f"{reason})")


def _echoed(data: dict[str, Any]) -> Iterator[tuple[str, object]]:
    yield "Message-ID", part(part(data, "message"), "headers").get("message-id")
    yield "Return-Path", part(data, "envelope").get("sender")


def _raw(data: dict[str, Any]) -> bytes:
    """The event without its signature: the text kept for a person."""
    return json.dumps(data, ensure_ascii=False).encode()
