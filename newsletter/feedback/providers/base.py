"""What a provider module makes of a notification it has verified, and the helpers the modules share.

Every module checks the notification's signature (or credentials) before it reads anything else, then turns it
into ``Event``s in the feedback path's own terms: a ``Verdict`` (bounce hard or soft with its status, diagnostic
and Sisimai's reason; complaint) and the proofs the provider echoed back (``proof.Quoted``: the Message-ID the
engine gave the copy, a VERP address, a signed link). ``ingest.Feedback.apply_proofs`` applies them by the same
rule as a mailed notice: a recipient counts only where a proof names that very address.

A failed recipient's reason (``failed``) is read the way a mailed notice's is: the status and diagnostic the
provider passes on from the remote server go through the classifier's own rules (``reasons.reason_of``, with the
recipient domain's ``rhost`` rule), and hard or soft follows the reason (only userunknown, hostunknown, hasmoved
and a 5xx notaccept are hard). Where those words tell nothing (Sisimai's undefined, onhold), the provider's own
type says it, from each module's table (``Said``): SES's bounceSubType, Mailgun's reason, Postmark's Type,
SendGrid's bounce_classification. A complaint's reason is Sisimai's ``feedback``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import proof, reasons, rhost
from ..classify import Recipient, Verdict

MAX_ADDRESS = 320
MAX_DIAGNOSTIC = 1000
SKEW = 300.0  # seconds a signed time may run ahead of this server's clock (Mailgun's and Stripe's tolerance)
_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SPEC = re.compile(r"([A-Za-z][A-Za-z-]{0,15});\s*")  # "smtp; 550 …", "X-Postfix; …": a diagnostic's type
UNTOLD = frozenset({"undefined", "onhold", "delivered", "vacation"})  # the words say nothing of why it failed
FEEDBACK = "feedback"  # Sisimai's reason for a complaint


class Refused(Exception):
    """The notification does not verify (signature, credentials, age, replay, topic): nothing in it is acted on."""


class Unreadable(Exception):
    """Verified, but not in the provider's documented shape: nothing done, a line for a person."""


class Unavailable(Exception):
    """What verifies it could not be had just now (the signing certificate's fetch failed): the provider retries."""


class WouldBlock(Exception):
    """Verifying needs the network (a certificate not fetched yet, a confirmation): ask again where it may block."""


@dataclass(frozen=True)
class Event:
    """One notification about one message: its verdict, the proofs echoed back, and its text (kept as a notice's)."""

    verdict: Verdict
    found: proof.Quoted
    raw: bytes


@dataclass(frozen=True)
class Said:
    """What a provider's own type of failure says, for when the words it passes on tell nothing: Sisimai's reason
    (None: none of its own, the classifier's undefined or onhold stands) and whether the address is gone for good.
    ``firm``: the provider decided it itself (its suppression list), so its words are its own, not a remote
    server's, and the type stands whatever they say."""

    reason: str | None
    hard: bool
    firm: bool = False


# The address is on the provider's own suppression list (it bounced or complained before, or was unsubscribed there):
# the provider will not send to it again, so it is hard here. The reason's name is Sisimai 5's (4.25 has none).
SUPPRESSED = Said("suppressed", True, firm=True)


@dataclass(frozen=True)
class Received:
    """What a verified request carried: the events to apply, how many were about something else (a delivery, an
    open: nothing to do) and, for a handshake, one line saying what was done."""

    events: list[Event] = field(default_factory=list)
    skipped: int = 0
    note: str = ""


class Provider(Protocol):
    """A provider's endpoint: ``receive`` verifies a request first and raises ``Refused`` if it does not verify.

    With ``may_block`` False it does no network I/O (the event loop calls it so, saving a thread hop that cost
    more than an HMAC or a cached RSA verification) and raises ``WouldBlock`` where it would need some."""

    name: str

    def receive(self, body: bytes, headers: Mapping[str, str], may_block: bool = True) -> Received: ...


def fresh(signed_at: float, now: float, max_age: float) -> None:
    """``Refused`` unless the time a provider signed (seconds since the epoch) is at most ``max_age`` seconds
    ([bounces] hook_max_age_seconds) before ``now`` and at most SKEW after it: a signature proves who sent a
    notification, not that it is not a captured one sent again."""
    age = now - signed_at
    if not age <= max_age:  # (NaN too)
        raise Refused(f"signed {age:.0f} s ago, over hook_max_age_seconds ({max_age:.0f}): a replay, or held up")
    if age < -SKEW:
        raise Refused(f"signed {-age:.0f} s ahead of this server's clock (more than {SKEW:.0f} s)")


def json_of(data: bytes | str, refuse: bool = False) -> Any:
    """The JSON document ``data``; before verification a body that is not JSON is refused, after it unreadable."""
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise (Refused if refuse else Unreadable)("the body is not JSON") from None


def obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Unreadable(f"{what} is not a JSON object")
    return value


def part(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """The object at ``key``, or an empty one: an optional part a provider may leave out."""
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def text(value: object) -> str:
    """A JSON value as one line of text: strings and numbers only, control characters dropped."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    found = str(value)
    return (found if found.isprintable() else _CONTROL.sub(" ", found)).strip()


def status_in(*texts: str) -> str | None:
    """The first RFC 3463 status (``5.1.1``) in the texts, if any: providers put it in a field or in their words."""
    for value in texts:
        if found := _STATUS.search(value):
            return found.group(1)
    return None


def recipient(address: object, hard: bool, status: str | None, diagnostic: str,
              reason: str | None = None) -> Recipient | None:
    """A failed or complaining recipient as the feedback path keeps one (address and diagnostic bounded)."""
    addr = text(address).strip("<>")
    if not addr or "@" not in addr or len(addr) > MAX_ADDRESS:
        return None
    return Recipient(addr, hard, status, diagnostic[:MAX_DIAGNOSTIC] or None, reason)


def failed(address: object, status: str | None, diagnostic: str, said: Said, *, otherwise: str = "",
           host: str = "") -> Recipient | None:
    """A failed recipient with Sisimai's reason, read from the remote server's words as a mailed notice's are, and
    hard or soft from that reason; where the words tell nothing, the provider's type (``said``) says both. The
    diagnostic kept is the words, or ``otherwise`` without them; ``host`` is the remote server, when the provider
    names it (its rhost rule is asked first)."""
    addr = text(address).strip("<>")
    reason, hard = said.reason or "undefined", said.hard
    if not said.firm:
        reason, hard = _read(addr, status or "", diagnostic, host, said)
    return recipient(addr, hard, status, diagnostic or otherwise, reason)


def _read(address: str, status: str, diagnostic: str, host: str, said: Said) -> tuple[str, bool]:
    """The classifier's reason and class for the words (``smtp; 550 …`` read as a DSN's Diagnostic-Code), else
    the provider's."""
    spec = _SPEC.match(diagnostic)
    words = diagnostic[spec.end():] if spec else diagnostic
    failure = reasons.Failure(status, words[:MAX_DIAGNOSTIC], spec=spec.group(1) if spec else "")
    reason = reasons.reason_of(failure, rhost.rule_for(host) or rhost.rule_for(address.rpartition("@")[2]))
    if reason in UNTOLD:
        return said.reason or ("onhold" if words.strip() else "undefined"), said.hard
    return reason, reasons.is_hard(reason, f"{status} {words}")


def complained(address: object, diagnostic: str) -> Recipient | None:
    """A complaining recipient: hard (mail to it stops at once), Sisimai's reason ``feedback``."""
    return recipient(address, True, None, diagnostic, FEEDBACK)


def message_id(value: object) -> str:
    """A Message-ID as the engine wrote it, ``<…@…>``: Mailgun and others echo it without its angle brackets."""
    found = text(value)
    return found if not found or found.startswith("<") else f"<{found}>"


def quotes(headers: Iterable[tuple[str, object]], verp_base: str, dump: str = "") -> proof.Quoted:
    """The proofs among the header values a provider echoes back (and in a returned ``dump`` of the notice, when it
    sends one), found by the rule a mailed notice's are found by (``proof.quoted``): each value is written as a
    header line and scanned the same way."""
    lines = []
    for name, value in headers:
        shown = message_id(value) if name.casefold() == "message-id" else text(value)
        if shown:
            lines.append(f"{text(name)}: {shown}\r\n")
    return proof.quoted(("".join(lines) + "\r\n" + dump).encode("utf-8", "replace"), verp_base)
