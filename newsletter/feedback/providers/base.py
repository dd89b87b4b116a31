"""What a provider module makes of a notification it has verified, and the helpers the modules share.

Every module checks the notification's signature (or credentials) before it reads anything else, then turns it
into ``Event``s in the feedback path's own terms: a ``Verdict`` (bounce hard or soft with its status and
diagnostic, complaint) and the proofs the provider echoed back (``proof.Quoted``: the Message-ID the engine gave
the copy, a VERP address, a signed link). ``ingest.Feedback.apply_proofs`` applies them by the same rule as a
mailed notice: a recipient counts only where a proof names that very address.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import proof
from ..classify import Recipient, Verdict

MAX_ADDRESS = 320
MAX_DIAGNOSTIC = 1000
_STATUS = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


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


def recipient(address: object, hard: bool, status: str | None, diagnostic: str) -> Recipient | None:
    """A failed or complaining recipient as the feedback path keeps one (address and diagnostic bounded)."""
    addr = text(address).strip("<>")
    if not addr or "@" not in addr or len(addr) > MAX_ADDRESS:
        return None
    return Recipient(addr, hard, status, diagnostic[:MAX_DIAGNOSTIC] or None)


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
