"""Postmark's bounce and spam-complaint webhooks at POST /hooks/postmark, behind HTTP basic auth.

Postmark signs nothing; its webhook URL carries a user and password (``https://user:password@host/hooks/postmark``),
sent as basic auth and compared here in constant time with [bounces] postmark_user and postmark_password (the
password from NEWSLETTER_BOUNCES__POSTMARK_PASSWORD). What Postmark sends: ``RecordType`` Bounce with ``Type``,
``Email`` and ``Details`` (the remote server's reply, when there was one), or SpamComplaint. The types in TYPES
are bounces: the reason is read from Details as a mailed notice's is, and where Details tells nothing the type
says it (HardBounce hard, BadEmailAddress userunknown, DnsError networkerror, SpamNotification spamdetected,
Blocked blocked, AddressChange hasmoved, ManuallyDeactivated suppressed, …); AutoResponder is an auto-reply; the
rest (Unsubscribe and Subscribe requests, ChallengeVerification, Unknown, SMTPApiError, …) are kept for a person.
The proof: ``MessageID`` is Postmark's own id and proves nothing here. Postmark echoes ``Metadata`` (what the copy
carried as ``X-PM-Metadata-*`` headers) and, with "include bounce content" on, ``Content``: the returned DSN or
ARF report, whose quoted headers carry the copy's List-Unsubscribe signed link and, when the copy kept its own
Message-ID (``X-PM-KeepID: true``; Postmark sets its own otherwise), that Message-ID.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

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
    json_of,
    obj,
    part,
    quotes,
    recipient,
    status_in,
    text,
)

# Postmark's bounce types (its "Bounce types" list) that are a failure to deliver, and what each says of it
TYPES = {"HardBounce": Said(None, True), "BadEmailAddress": Said("userunknown", True),
         "SoftBounce": Said(None, False), "Transient": Said(None, False), "DnsError": Said("networkerror", False),
         "SpamNotification": Said("spamdetected", False), "VirusNotification": Said("virusdetected", False),
         "Blocked": Said("blocked", False), "DMARCPolicy": Said("policyviolation", False),
         "AddressChange": Said("hasmoved", True), "ManuallyDeactivated": SUPPRESSED}
COMPLAINT = "SpamComplaint"


class Postmark:
    """POST /hooks/postmark: one bounce or complaint per request, with the webhook's basic-auth credentials."""

    name = "postmark"

    def __init__(self, cfg: BouncesSection) -> None:
        self.expected = f"{cfg.postmark_user}:{cfg.postmark_password.get_secret_value()}".encode()
        self.verp = cfg.address

    def receive(self, body: bytes, headers: Mapping[str, str], may_block: bool = True) -> Received:
        self.verify(headers.get("authorization", ""))
        record = obj(json_of(body), "the body")
        verdict = _verdict(record)
        if verdict is None:
            return Received(skipped=1)
        dump = record.get("Content")
        found = quotes(part(record, "Metadata").items(), self.verp, dump if isinstance(dump, str) else "")
        return Received([Event(verdict, found, body)])

    def verify(self, authorization: str) -> None:
        """Basic auth with the configured user and password, compared in constant time."""
        scheme, _, encoded = authorization.partition(" ")
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = b""
        if scheme.casefold() != "basic" or not hmac.compare_digest(given, self.expected):
            raise Refused("wrong or missing basic-auth credentials")


def _verdict(record: dict[str, Any]) -> Verdict | None:
    kind = text(record.get("Type"))
    details = " ".join(text(record.get(k)) for k in ("Details", "Description") if text(record.get(k)))
    if text(record.get("RecordType")) == COMPLAINT or kind == COMPLAINT:
        who = complained(record.get("Email"), f"Postmark spam complaint {details}".strip())
        return Verdict(Kind.COMPLAINT, (who,) if who else (), "Postmark spam complaint")
    if text(record.get("RecordType")) not in ("Bounce", ""):
        return None  # a delivery, an open, a click, a subscription change: nothing to do here
    if kind in TYPES:
        said = text(record.get("Details"))  # Description is Postmark's words for the type, not the server's
        found = failed(record.get("Email"), status_in(said), said, TYPES[kind], otherwise=details or f"Postmark {kind}")
        return Verdict(Kind.BOUNCE, (found,) if found else (), f"Postmark bounce {kind}")
    if kind == "AutoResponder":
        return Verdict(Kind.AUTO_REPLY, (), "Postmark AutoResponder")
    who = recipient(record.get("Email"), False, status_in(details), details or f"Postmark {kind}")
    return Verdict(Kind.UNKNOWN, (who,) if who else (), f"Postmark bounce type {kind or '?'}: for a person")
