"""Provider webhooks written by a stranger: POST /hooks/<provider> is open to the internet, so a notification acts
only once its signature (or credentials) verifies, and then only for an address the engine sent the quoted
Message-ID to. A refusal changes nothing, answers 403 and is one log line, without a secret in it."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from tests import hookkit
from tests.conftest import invoke
from tests.test_feedback import PEOPLE, status_of
from tests.test_hooks import Site, keys, site  # noqa: F401  (fixtures: the signing keys, the sent issue's app)

VICTIM = "hard@example.org"


def nobody_changed(app: Site) -> bool:
    return all(status_of(app.config, e)[:2] == ("active", None) for e in PEOPLE) and app.logged() == []


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "newsletter.hooks" and "refused" in r.getMessage()]


@pytest.mark.attack(edge="feedback", attack="SES notification signed with another key than SNS's certificate",
                    held="403, one log line, nobody changed")
def test_a_forged_sns_signature_changes_nobody(site, caplog):  # noqa: F811
    """A notification quoting a real Message-ID but signed with the attacker's key under SNS's URL: 403, one line."""
    forger = hookkit.Sns()
    body = forger.notification(hookkit.ses_bounce(VICTIM, site.mid(VICTIM)))
    answer = site.post("ses", body)
    assert answer.status_code == 403 and answer.json() == {"ok": False, "error": "refused"}
    assert nobody_changed(site)
    assert len(refusals(caplog)) == 1 and "the signature does not verify" in refusals(caplog)[0]


@pytest.mark.parametrize("url", [
    "https://evil.example/x.pem",
    "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-" + "0" * 32 + ".pem",
    "https://sns.us-east-1.amazonaws.com@evil.example/SimpleNotificationService-" + "0" * 32 + ".pem",
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-" + "0" * 32 + ".pem",
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-" + "0" * 32 + ".pem",
    "https://sns.us-east-1.amazonaws.com/evil.pem",
], ids=["other-host", "suffix-host", "userinfo", "plain-http", "other-region", "other-path"])
@pytest.mark.attack(edge="feedback", attack="SES notification whose SigningCertURL is on another host "
                    "(evil.example, sns.us-east-1.amazonaws.com.evil.example, http, another region)",
                    held="refused before any fetch: nothing fetched, nobody changed")
def test_a_signing_certificate_off_sns_is_never_fetched(site, url):  # noqa: F811
    """A certificate URL off sns.<topic's region>.amazonaws.com (look-alike, http, path) is refused, nothing fetched."""
    forger = hookkit.Sns()
    answer = site.post("ses", forger.notification(hookkit.ses_bounce(VICTIM, site.mid(VICTIM)), cert_url=url))
    assert answer.status_code == 403 and site.sns.fetched == [] and forger.fetched == []
    assert nobody_changed(site)


@pytest.mark.parametrize("host", ["evil.example", "sns.us-east-1.amazonaws.com.evil.example"])
@pytest.mark.attack(edge="feedback", attack="SNS SubscriptionConfirmation whose SubscribeURL is off amazonaws.com",
                    held="not confirmed: the URL is never fetched, 403 and a log line")
def test_a_subscribe_url_off_amazonaws_is_never_fetched(site, host, caplog):  # noqa: F811
    """A signed confirmation whose SubscribeURL is on another host is not confirmed and that URL is never fetched."""
    url = hookkit.subscribe_url(host=host)
    answer = site.post("ses", site.sns.confirmation(url))
    assert answer.status_code == 403 and url not in site.sns.fetched
    assert "a URL off sns.<region>.amazonaws.com" in refusals(caplog)[0]


@pytest.mark.attack(edge="feedback", attack="correctly signed SNS notification from the attacker's own topic",
                    held="a topic not in ses_topic_arns is refused: nothing fetched, nobody changed")
def test_a_notification_of_another_topic_is_refused(site):  # noqa: F811
    """SNS signs anyone's topic genuinely: a topic not in ses_topic_arns is refused, its subscription too."""
    other = "arn:aws:sns:us-east-1:999999999999:attacker"
    bounce = site.post("ses", site.sns.notification(hookkit.ses_bounce(VICTIM, site.mid(VICTIM)), topic=other))
    confirm = site.post("ses", site.sns.confirmation(hookkit.subscribe_url(other), topic=other))
    assert (bounce.status_code, confirm.status_code) == (403, 403) and site.sns.fetched == []
    assert nobody_changed(site)


@pytest.mark.attack(edge="feedback", attack="Mailgun webhook replayed with its token within the window, and ones "
                    "signed past hook_max_age_seconds or ahead of the clock",
                    held="each refused (403, one log line); the first counted once, nobody else changed")
def test_a_mailgun_replay_and_a_stale_or_future_timestamp_are_refused(site, caplog):  # noqa: F811
    """A Mailgun request sent again (its token seen while in the window), one signed 901 s ago and one 301 s ahead of
    the app's clock are refused; one signed 899 s ago is taken."""
    now = int(site.clock.now().timestamp())
    soft = hookkit.mailgun_failed("soft@example.org", site.mid("soft@example.org"), permanent=False)
    body = hookkit.mailgun(soft, timestamp=now)
    assert [site.post("mailgun", body).status_code for _ in range(2)] == [200, 403]
    victim = hookkit.mailgun_failed(VICTIM, site.mid(VICTIM))
    answers = [site.post("mailgun", hookkit.mailgun(victim, timestamp=now + shift)).status_code
               for shift in (-901, 301, -899)]
    assert answers == [403, 403, 200]
    assert status_of(site.config, "soft@example.org") == ("active", None, 1)
    assert status_of(site.config, VICTIM)[0] == "bounced" and len(site.logged()) == 2
    said = refusals(caplog)
    assert len(said) == 3 and "seen already" in said[0] and "over hook_max_age_seconds (900)" in said[1]
    assert "ahead of this server's clock" in said[2]


@pytest.mark.attack(edge="feedback", attack="a genuine SNS notification captured and sent again after "
                    "hook_max_age_seconds, and one whose signed Timestamp is ahead of the clock",
                    held="refused by its signed Timestamp (403, one log line); nobody changed")
def test_an_sns_notification_replayed_after_the_window_is_refused(site, caplog):  # noqa: F811
    """A correctly signed SES bounce published 5 minutes and a second ahead of the app's clock, or 15 minutes and a
    second before it, is refused and changes nobody; the same taken at 899 s."""
    at = site.clock.now()
    captured = site.sns.notification(hookkit.ses_bounce(VICTIM, site.mid(VICTIM)), at=at)
    ahead = site.sns.notification(hookkit.ses_bounce(VICTIM, site.mid(VICTIM)), at=at + timedelta(seconds=301))
    assert site.post("ses", ahead).status_code == 403
    site.clock.at = at + timedelta(seconds=901)
    assert site.post("ses", captured).status_code == 403
    assert nobody_changed(site)
    said = refusals(caplog)
    assert len(said) == 2 and "ahead of this server's clock" in said[0] and "over hook_max_age_seconds" in said[1]
    site.clock.at = at + timedelta(seconds=899)
    assert site.post("ses", captured).status_code == 200 and status_of(site.config, VICTIM)[0] == "bounced"


@pytest.mark.attack(edge="feedback", attack="a genuine SendGrid batch captured and sent again after "
                    "hook_max_age_seconds, and one signed with a timestamp ahead of the clock",
                    held="refused by the signed timestamp header (403, one log line); nobody changed")
def test_a_sendgrid_batch_replayed_after_the_window_is_refused(site, caplog):  # noqa: F811
    """A batch signed 901 s before the app's clock, or 301 s after it, is refused; signed 899 s before, taken."""
    now = int(site.clock.now().timestamp())
    body = json.dumps([hookkit.sendgrid_event(VICTIM, site.mid(VICTIM))]).encode()
    stale, ahead, late = (site.sendgrid.headers(body, str(now + shift)) for shift in (-901, 301, -899))
    assert [site.post("sendgrid", body, h).status_code for h in (stale, ahead)] == [403, 403]
    assert nobody_changed(site) and len(refusals(caplog)) == 2
    assert site.post("sendgrid", body, late).status_code == 200 and status_of(site.config, VICTIM)[0] == "bounced"


@pytest.mark.attack(edge="feedback", attack="Postmark webhook with a wrong password",
                    held="403; the log names neither the password tried nor the real one")
def test_postmark_with_a_wrong_password_changes_nobody_and_logs_no_secret(site, caplog):  # noqa: F811
    """A wrong or missing Postmark password is refused, nobody changed, and no password is in the log."""
    body = hookkit.postmark_bounce(VICTIM, f"Message-ID: {site.mid(VICTIM)}\r\n")
    tried = "guess-0123456789"
    with caplog.at_level(logging.DEBUG):
        answers = [site.post("postmark", body, hookkit.basic(password=tried)).status_code,
                   site.post("postmark", body).status_code]
    assert answers == [403, 403] and nobody_changed(site)
    text = caplog.text
    assert len(refusals(caplog)) == 2 and tried not in text and hookkit.POSTMARK_PASSWORD not in text


@pytest.mark.attack(edge="feedback", attack="SendGrid signature taken from one batch and sent with another body",
                    held="the signature covers timestamp and body: 403, nobody changed")
def test_a_sendgrid_signature_over_another_body_is_refused(site):  # noqa: F811
    """A genuine signature of a harmless batch (a delivery) sent with a batch bouncing the victim is refused."""
    harmless = json.dumps([hookkit.sendgrid_event(VICTIM, site.mid(VICTIM), event="delivered")]).encode()
    headers = site.sendgrid.headers(harmless)
    evil = json.dumps([hookkit.sendgrid_event(VICTIM, site.mid(VICTIM))]).encode()
    assert site.post("sendgrid", evil, headers).status_code == 403
    assert site.post("sendgrid", harmless, headers).status_code == 200
    assert nobody_changed(site)


@pytest.mark.attack(edge="feedback", attack="correctly signed provider notification naming a subscriber without "
                    "a Message-ID the engine sent to that address",
                    held="logged unproven (proof none, source the provider), nobody changed")
def test_a_signed_notification_without_proof_is_unproven_and_changes_nobody(site, runner, caplog):  # noqa: F811
    """Signed but unproven (no headers, another's Message-ID, a made-up smtp-id): logged unproven, nobody changed."""
    other = site.mid("away@example.org")
    grid = json.dumps([hookkit.sendgrid_event(VICTIM, "<0123456789abcdef0123456789abcdef@news.example.org>",
                                              event="spamreport")]).encode()
    answers = [site.post("ses", site.sns.notification(hookkit.ses_bounce(VICTIM, None))),
               site.post("mailgun", hookkit.mailgun(hookkit.mailgun_failed(VICTIM, other))),
               site.post("sendgrid", grid, site.sendgrid.headers(grid))]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(status_of(site.config, e)[:2] == ("active", None) for e in PEOPLE)
    assert [(r.source, r.proof, r.recipient, r.subscriber_id) for r in site.logged()] == [
        ("ses", "none", VICTIM, None), ("mailgun", "none", VICTIM, None), ("sendgrid", "none", VICTIM, None)]
    assert sum("unproven" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records) == 3
    assert json.loads(invoke(runner, site.config, "bounces", "report", "--json").output)["unproven"] == 3


@pytest.mark.attack(edge="feedback", attack="thousands of forged webhook requests to fill the log",
                    held="60 refusal lines a minute per endpoint; the rest are counted in the next line")
def test_forged_requests_cannot_flood_the_log(site, caplog):  # noqa: F811
    """200 forged Mailgun requests in a row: every one refused, at most 60 of them logged."""
    forged = hookkit.mailgun(hookkit.mailgun_failed(VICTIM, site.mid(VICTIM)), key="not-the-key")
    assert {site.post("mailgun", forged).status_code for _ in range(200)} == {403}
    assert len(refusals(caplog)) == 60 and nobody_changed(site)


@pytest.mark.attack(edge="feedback", attack="a webhook body of many megabytes", held="413 past hook_max_bytes, read no "
                    "further; nobody changed")
def test_a_body_over_hook_max_bytes_is_refused_413(site):  # noqa: F811
    """A 2 MiB body (over hook_max_bytes, 1 MiB) is refused with 413 before it is verified or parsed."""
    answer = site.post("sendgrid", b"[" + b" " * (2 << 20) + b"]", site.sendgrid.headers(b"[]"))
    assert (answer.status_code, answer.json()) == (413, {"ok": False, "error": "too large"})
    assert nobody_changed(site)
