"""Provider notifications, one module per provider, all into the one feedback path (``ingest.Feedback``).

    POST /hooks/<name> ─► providers[name].receive: verify first (refused: 403, nothing read further, one log line)
                       ─► Events: a Verdict for its recipients + the proofs the provider echoed (Message-ID, VERP, link)
                       ─► Feedback.apply_proofs: the proof rule of a mailed notice ─► bounce_log (source: the name)

    name       verified by                                          echoes back the engine's
    ses        SNS's RSA signature, certificate from sns.<region>.amazonaws.com    Message-ID (with headers on)
    mailgun    HMAC-SHA256 of timestamp+token, a token once                       Message-ID, VERP sender
    postmark   basic auth, compared in constant time                              signed link (Message-ID with KeepID)
    sendgrid   ECDSA P-256 over timestamp+body                                    Message-ID (smtp-id)

Each signed time (SNS's Timestamp, Mailgun's timestamp, SendGrid's timestamp header) must be within [bounces]
hook_max_age_seconds (900) before this server's clock and at most 5 minutes after it (``base.fresh``): a captured
notification sent again later is refused like a forged one. Postmark signs nothing and sends no time, so a
replayed Postmark request is stopped only by its credentials and by the proof rule's count-once check.
"""

from __future__ import annotations

from collections.abc import Callable

from ...clock import SYSTEM, Clock
from ...config import Config
from . import mailgun, postmark, sendgrid, ses
from .base import Event, Provider, Received, Refused, Unavailable, Unreadable, WouldBlock
from .sns import Fetch

__all__ = ["Event", "Provider", "Received", "Refused", "Unavailable", "Unreadable", "WouldBlock", "configured",
           "NAMES"]

NAMES = ("ses", "mailgun", "postmark", "sendgrid")


def configured(config: Config, clock: Clock = SYSTEM, fetch: Fetch | None = None) -> dict[str, Provider]:
    """The providers [bounces] providers switches on, by name; the rest have no endpoint (404)."""
    cfg = config.bounces
    makers: dict[str, Callable[[], Provider]] = {
        "ses": lambda: ses.Ses(cfg, fetch, clock.now),
        "mailgun": lambda: mailgun.Mailgun(cfg, clock),
        "postmark": lambda: postmark.Postmark(cfg),
        "sendgrid": lambda: sendgrid.Sendgrid(cfg, clock),
    }
    return {name: makers[name]() for name in dict.fromkeys(cfg.providers)}
