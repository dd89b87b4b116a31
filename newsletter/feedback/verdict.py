"""The classifier's answer: what a message is, and whom it concerns with why (``classify.py`` reaches it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

UNREADABLE = ("unreadable message", "classifier error")  # the reasons of a verdict on a message that raised


class Kind(enum.StrEnum):
    """What a message is; ``unknown`` looks like an MTA's notice but says nothing usable: a person reads it."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    AUTO_REPLY = "auto-reply"
    NOT_BOUNCE = "not-bounce"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Recipient:
    """A failed (or complaining) recipient. For a complaint ``hard`` is True: mail to it must stop at once.

    ``reason`` is Sisimai's name for why it failed (userunknown, hostunknown, hasmoved, notaccept, mailboxfull,
    filtered, blocked, policyviolation, securityerror, expired, …; "feedback" for a complaint), which decides
    ``hard`` (``reasons.py``); None where no reason was read (a provider's webhook sets ``hard`` itself)."""

    address: str
    hard: bool
    status: str | None
    diagnostic: str | None
    reason: str | None = None

    @property
    def klass(self) -> str:
        return "hard" if self.hard else "soft"


@dataclass(frozen=True)
class Verdict:
    """A message's kind, whom it concerns (the failed or complaining recipients; none for the other kinds) and
    one line on what decided it, for the log and for the person who reads the unknown ones."""

    kind: Kind
    recipients: tuple[Recipient, ...]
    reason: str

    @property
    def unreadable(self) -> bool:
        """No rule could read the message at all (it raised): ``bounces fetch`` moves such a message aside whole."""
        return self.kind is Kind.UNKNOWN and self.reason.startswith(UNREADABLE)
