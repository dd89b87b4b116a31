"""What each provider's notification says of a failure, in the feedback path's terms (#24): Sisimai's reason read
from the remote server's words by the classifier's own rules, else from the provider's type; hard or soft from the
reason as for a mailed notice; and what verifying keeps in memory (Mailgun's tokens), bounded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from newsletter.config import BouncesSection
from newsletter.feedback.classify import Kind, Verdict
from newsletter.feedback.providers import Refused, mailgun, postmark, sendgrid, ses

from . import hookkit
from .conftest import ManualClock


def _ses(kind: str, sub: str, diagnostic: str = "", status: str = "") -> Verdict | None:
    return ses._bounce({"bounceType": kind, "bounceSubType": sub, "bouncedRecipients": [
        {"emailAddress": "a@example.org", "status": status, "diagnosticCode": diagnostic}]})


def _mailgun(severity: str, reason: str, code: int | None = None, message: str = "") -> Verdict | None:
    return mailgun._verdict({"event": "failed", "recipient": "a@example.org", "severity": severity, "reason": reason,
                             "delivery-status": {"code": code, "message": message, "description": ""}})


def _postmark(kind: str, details: str = "") -> Verdict | None:
    return postmark._verdict({"RecordType": "Bounce", "Type": kind, "Email": "a@example.org", "Details": details,
                              "Description": "Postmark's words for the type"})


def _sendgrid(event: str, kind: str = "bounce", reason: str = "", status: str = "",
              classification: str = "") -> Verdict | None:
    item = {"event": event, "type": kind, "reason": reason, "status": status, "email": "a@example.org"}
    return sendgrid._verdict(item | ({"bounce_classification": classification} if classification else {}))


@pytest.mark.parametrize("verdict, reason, klass", [
    (_ses("Permanent", "General", "smtp; 550 5.1.1 user unknown", "5.1.1"), "userunknown", "hard"),
    (_ses("Permanent", "General", "smtp; 550 5.7.1 Service unavailable; client host [192.0.2.1] blocked using "
          "zen.spamhaus.org", "5.7.1"), "blocked", "soft"),
    (_ses("Permanent", "General"), "undefined", "hard"),
    (_ses("Permanent", "NoEmail"), "userunknown", "hard"),
    (_ses("Permanent", "OnAccountSuppressionList", "Amazon SES did not send the message to this address because it "
          "is on the suppression list for your account.", "5.1.1"), "suppressed", "hard"),
    (_ses("Transient", "MailboxFull", "smtp; 552 5.2.2 Mailbox full", "5.2.2"), "mailboxfull", "soft"),
    (_ses("Transient", "MessageTooLarge"), "mesgtoobig", "soft"),
    (_ses("Transient", "General"), "undefined", "soft"),
    (_mailgun("permanent", "bounce", 550, "5.1.1 The email account that you tried to reach does not exist"),
     "userunknown", "hard"),
    (_mailgun("permanent", "suppress-bounce", 605, "Not delivering to previously bounced address"), "suppressed",
     "hard"),
    (_mailgun("temporary", "generic", 452, "4.2.2 Mailbox full"), "mailboxfull", "soft"),
    (_mailgun("temporary", "old"), "expired", "soft"),
    (_mailgun("permanent", "espblock"), "blocked", "soft"),
    (_postmark("HardBounce", "smtp;550 5.1.1 The email account that you tried to reach does not exist."),
     "userunknown", "hard"),
    (_postmark("HardBounce"), "undefined", "hard"),
    (_postmark("SoftBounce", "smtp;452 4.2.2 The email account that you tried to reach is over quota."),
     "mailboxfull", "soft"),
    (_postmark("BadEmailAddress"), "userunknown", "hard"),
    (_postmark("DnsError"), "networkerror", "soft"),
    (_postmark("SpamNotification"), "spamdetected", "soft"),
    (_postmark("Blocked"), "blocked", "soft"),
    (_postmark("AddressChange"), "hasmoved", "hard"),
    (_postmark("ManuallyDeactivated"), "suppressed", "hard"),
    (_sendgrid("bounce", "bounce", "550 5.1.1 user unknown", "5.1.1"), "userunknown", "hard"),
    (_sendgrid("bounce", "blocked", "421 4.7.1 try again later", "4.7.1"), "blocked", "soft"),
    (_sendgrid("bounce", "blocked", classification="Reputation"), "blocked", "soft"),
    (_sendgrid("bounce", "bounce", classification="Invalid Address"), "userunknown", "hard"),
    (_sendgrid("dropped", reason="Bounced Address"), "suppressed", "hard"),
    (_sendgrid("dropped", reason="Invalid"), "userunknown", "hard"),
], ids=lambda v: "" if not isinstance(v, Verdict) else v.reason.replace(" ", "-"))
def test_a_providers_bounce_types_get_sisimais_reason_and_class(verdict, reason, klass):
    """Each provider's failure gets Sisimai's reason: read from the remote server's words by the classifier's own
    rules where the provider passes them on (so SES's Permanent block is soft, as a mailed notice's), else from the
    provider's own type; a provider's own suppression is hard whatever its words say."""
    assert verdict is not None and verdict.kind is Kind.BOUNCE
    assert [(r.reason, r.klass) for r in verdict.recipients] == [(reason, klass)]


def test_what_is_not_about_the_reader_is_not_a_bounce():
    """A SendGrid drop for the sender's own fault and a deferral change nothing; Postmark's Unsubscribe request and
    ChallengeVerification are kept for a person; each provider's complaint has the reason feedback."""
    assert _sendgrid("dropped", reason="Invalid SMTPAPI header") is None and _sendgrid("deferred") is None
    assert {v.kind for v in (_postmark("Unsubscribe"), _postmark("ChallengeVerification"))} == {Kind.UNKNOWN}
    complaints = [ses._complaint({"complainedRecipients": [{"emailAddress": "a@example.org"}]}),
                  mailgun._verdict({"event": "complained", "recipient": "a@example.org"}),
                  postmark._verdict({"RecordType": "SpamComplaint", "Email": "a@example.org"}),
                  sendgrid._verdict({"event": "spamreport", "email": "a@example.org"})]
    assert {(v.kind, r.reason, r.klass) for v in complaints if v for r in v.recipients} == {
        (Kind.COMPLAINT, "feedback", "hard")}




def test_mailgun_remembers_tokens_only_while_they_could_verify_and_at_most_max_tokens(monkeypatch):
    """A token is forgotten once its timestamp has left the window (the age refuses it then), and past MAX_TOKENS
    the oldest goes first: memory stays bounded however many genuine requests come."""
    clock = ManualClock(datetime(2026, 5, 28, 9, 0, tzinfo=UTC))
    cfg = BouncesSection(providers=["mailgun"], mailgun_signing_key=SecretStr(hookkit.MAILGUN_KEY))
    hook = mailgun.Mailgun(cfg, clock)
    now = int(clock.now().timestamp())

    def signed(token: str, at: int = now) -> dict[str, Any]:
        return json.loads(hookkit.mailgun({}, timestamp=at, token=token))["signature"]

    hook.verify(signed("first"))
    clock.at += timedelta(seconds=901)
    hook.verify(signed("second", now + 901))
    assert list(hook._seen) == ["second"]
    monkeypatch.setattr(mailgun, "MAX_TOKENS", 3)
    for token in ("t1", "t2", "t3"):
        hook.verify(signed(token, now + 901))
    assert list(hook._seen) == ["t1", "t2", "t3"]  # "second" went first
    with pytest.raises(Refused, match="seen already"):
        hook.verify(signed("t3", now + 901))


def test_hook_max_age_seconds_sets_the_window_for_every_signed_time():
    """With hook_max_age_seconds = 120, a Mailgun signature and a SendGrid batch signed 121 s ago are refused and
    ones signed 119 s ago taken; 301 s ahead of the clock is refused whatever the window."""
    clock = ManualClock(datetime(2026, 5, 28, 9, 0, tzinfo=UTC))
    grid = hookkit.Sendgrid()
    cfg = BouncesSection(providers=["mailgun", "sendgrid"], mailgun_signing_key=SecretStr(hookkit.MAILGUN_KEY),
                         sendgrid_public_key=grid.public, hook_max_age_seconds=120)
    gun, send = mailgun.Mailgun(cfg, clock), sendgrid.Sendgrid(cfg, clock)
    now = int(clock.now().timestamp())
    body = b"[]"

    def taken(shift: int) -> tuple[bool, bool]:
        results = []
        for check in (lambda: gun.verify(json.loads(hookkit.mailgun({}, timestamp=now + shift))["signature"]),
                      lambda: send.verify(body, *(grid.headers(body, str(now + shift))[h] for h in (
                          "X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp")))):
            try:
                check()
                results.append(True)
            except Refused:
                results.append(False)
        return results[0], results[1]

    assert [taken(s) for s in (-121, -119, 299, 301)] == [(False, False), (True, True), (True, True), (False, False)]
