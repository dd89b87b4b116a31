"""What a delivery attempt's outcome means for its row: a pure function, tested without a database.

Sent is final. A deferral (4xx, a dropped line, a time-out) is tried again after an exponential
backoff (``retry_seconds`` · 2^(attempts − 1)) until ``max_attempts`` attempts have been made, then
the row fails with the last answer. A permanent refusal (5xx) fails at once; a hard bounce
(``Outcome.BOUNCED``) fails and also stops the address from being mailed again. No usable answer
after the final dot (``Outcome.UNKNOWN``) leaves the row ``unknown``: the relay may have the message,
so only an operator sends it again (``send --resend-unknown``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..config import SmtpSection
from ..lifecycle import RowState
from .transport import Outcome


@dataclass(frozen=True)
class Verdict:
    state: RowState
    retry_in: timedelta | None = None   # for a deferred row: when to try again
    bounced: bool = False               # the address does not exist: stop mailing it


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    retry_seconds: float

    @classmethod
    def from_config(cls, smtp: SmtpSection) -> RetryPolicy:
        return cls(smtp.max_attempts, smtp.retry_seconds)

    def after(self, outcome: Outcome, attempts: int) -> Verdict:
        """The row's next state after its ``attempts``-th attempt ended in ``outcome``."""
        if outcome is Outcome.SENT:
            return Verdict(RowState.SENT)
        if outcome is Outcome.UNKNOWN:
            return Verdict(RowState.UNKNOWN)
        if outcome is Outcome.DEFERRED and attempts < self.max_attempts:
            return Verdict(RowState.DEFERRED, timedelta(seconds=self.retry_seconds * 2 ** (attempts - 1)))
        return Verdict(RowState.FAILED, bounced=outcome is Outcome.BOUNCED)
