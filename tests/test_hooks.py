"""Provider notifications (#24) through POST /hooks/<provider>: SES via SNS, Mailgun, Postmark and SendGrid, each
verified, then applied by the feedback path's proof rule to an issue really sent to a local aiosmtpd."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from starlette.testclient import TestClient

from newsletter import store
from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.feedback.classify import Kind, Recipient, Verdict
from newsletter.feedback.ingest import Feedback
from newsletter.feedback.proof import Quoted
from newsletter.feedback.providers import Event, sns
from newsletter.links import UNSUBSCRIBE, links_for
from newsletter.store import tables as t
from newsletter.web import create_app
from newsletter.web import writer as writer_module
from newsletter.web.writer import GroupCommit

from . import hookkit
from .conftest import REPO, ManualClock, invoke
from .notices import arf, dsn
from .test_feedback import BOUNCES, ISSUE, PEOPLE, sent, status_of  # noqa: F401  (sent: the fixture)

HOST = "https://news.example.org"
PEER = ("203.0.113.7", 50000)
NAMES = ("ses", "mailgun", "postmark", "sendgrid", "other")


@pytest.fixture(scope="module")
def keys() -> tuple[hookkit.Sns, hookkit.Sendgrid]:
    """The SNS certificate and SendGrid key pair, made once for the module (an RSA key takes a moment)."""
    return hookkit.Sns(), hookkit.Sendgrid()


@dataclass
class Site:
    config: Path
    rows: dict[str, Any]
    client: TestClient
    sns: hookkit.Sns
    sendgrid: hookkit.Sendgrid
    clock: ManualClock  # the app's; it starts at the wall clock's now (the SNS certificate is dated by that)

    def post(self, provider: str, body: bytes, headers: dict[str, str] | None = None) -> httpx2.Response:
        return self.client.post(f"/hooks/{provider}", content=body, headers=headers or {})

    def mid(self, email: str) -> str:
        return str(self.rows[email].message_id)

    def logged(self) -> list[sa.Row[Any]]:
        engine = store.engine_for(load_config(self.config).database_url)
        with engine.connect() as conn:
            b = t.bounce_log.c
            found = conn.execute(sa.select(b.source, b.kind, b.proof, b.recipient, b["class"].label("klass"), b.status,
                                           b.reason, b.issue_id, b.subscriber_id, b.action).order_by(b.id)).all()
        engine.dispose()
        return found


@pytest.fixture
def site(sent, keys, monkeypatch) -> Iterator[Site]:  # noqa: F811
    """The sent issue's app with every provider switched on (keys from the environment, as in production), on a
    clock the test may move."""
    config, _, rows = sent
    sns_signer, grid = keys
    sns_signer.fetched.clear()
    for name, value in hookkit.environment(grid.public).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sns, "https_get", sns_signer.fetcher)
    cfg = load_config(config)
    engine = store.engine_for(cfg.database_url)
    clock = ManualClock(datetime.now(UTC))
    with TestClient(create_app(cfg, engine, now=clock), base_url=HOST, client=PEER) as client:
        yield Site(config, rows, client, sns_signer, grid, clock)
    engine.dispose()


def counted(runner, site: Site) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return json.loads(invoke(runner, site.config, "bounces", "report", "--issue", ISSUE, "--json").output)


def test_ses_bounce_and_complaint_quoting_a_sent_message_id_suppress_and_unsubscribe(site, runner):
    """SES bounce and complaint quoting a sent Message-ID suppress and unsubscribe, and count against the issue."""
    hard = site.post("ses", site.sns.notification(hookkit.ses_bounce("hard@example.org", site.mid("hard@example.org"))))
    angry = site.post("ses", site.sns.notification(
        hookkit.ses_complaint("angry@example.org", site.mid("angry@example.org")), version="2"))
    assert (hard.status_code, hard.json()) == (200, {"ok": True, "applied": 1, "skipped": 0}), hard.text
    assert angry.status_code == 200
    assert status_of(site.config, "hard@example.org")[:2] == ("bounced", "5.1.1 smtp; 550 5.1.1 user unknown")
    assert status_of(site.config, "angry@example.org")[0] == "unsubscribed"
    assert all(status_of(site.config, e)[0] == "active" for e in PEOPLE if e not in ("hard@example.org",
                                                                                     "angry@example.org"))
    assert [(r.source, r.kind, r.proof, r.klass) for r in site.logged()] == [
        ("ses", "bounce", "message-id", "hard"), ("ses", "complaint", "message-id", None)]
    assert all(r.issue_id is not None for r in site.logged())
    assert counted(runner, site)["by_kind"] == {"bounce": 1, "complaint": 1}
    assert site.sns.fetched == [hookkit.CERT_URL]


def test_an_ses_delivery_notification_is_verified_and_changes_nothing(site):
    """A Delivery notification is about no bounce: answered 200 as skipped, nothing logged or changed."""
    delivery = {"notificationType": "Delivery", "mail": {"messageId": "x"}, "delivery": {"recipients": []}}
    answer = site.post("ses", site.sns.notification(delivery))
    assert answer.json() == {"ok": True, "applied": 0, "skipped": 1} and site.logged() == []


def test_ses_subscription_confirmation_is_confirmed_once_verified(site, caplog):
    """A signed SubscriptionConfirmation is confirmed by fetching its SubscribeURL, and logged in one line."""
    url = hookkit.subscribe_url()
    with caplog.at_level(logging.INFO, logger="newsletter.hooks"):
        answer = site.post("ses", site.sns.confirmation(url))
    assert answer.status_code == 200 and site.sns.fetched == [hookkit.CERT_URL, url]
    assert any("subscription of this endpoint to " + hookkit.TOPIC in r.getMessage() for r in caplog.records)


def test_mailgun_failed_and_complained_quoting_a_sent_message_id_apply(site, runner):
    """Mailgun failures (permanent, temporary) and a complaint, proven by message-id, suppress, score, unsubscribe."""
    for data in (hookkit.mailgun_failed("hard@example.org", site.mid("hard@example.org")),
                 hookkit.mailgun_failed("soft@example.org", site.mid("soft@example.org"), permanent=False),
                 hookkit.mailgun_complained("angry@example.org", site.mid("angry@example.org"))):
        answer = site.post("mailgun", hookkit.mailgun(data))
        assert answer.json() == {"ok": True, "applied": 1, "skipped": 0}, answer.text
    assert status_of(site.config, "hard@example.org")[0] == "bounced"
    assert status_of(site.config, "soft@example.org") == ("active", None, 1)
    assert status_of(site.config, "angry@example.org")[0] == "unsubscribed"
    assert [(r.source, r.proof, r.klass, r.status) for r in site.logged()] == [
        ("mailgun", "message-id", "hard", "5.1.1"), ("mailgun", "message-id", "soft", "4.2.2"),
        ("mailgun", "message-id", None, None)]
    assert counted(runner, site)["by_class"] == {"hard": 1, "soft": 1}


def test_postmark_bounce_and_complaint_with_their_dumps_apply(site, runner):
    """Postmark's HardBounce and SpamComplaint, proven by the DSN and ARF report in Content, apply and count."""
    mid = site.mid("hard@example.org")
    bounce = dsn(BOUNCES, "hard@example.org", "5.1.1", "550 5.1.1 User unknown", message_id=mid)
    report = arf(BOUNCES, "angry@example.org", site.mid("angry@example.org"))
    for body in (hookkit.postmark_bounce("hard@example.org", bounce.decode()),
                 hookkit.postmark_complaint("angry@example.org", report.decode())):
        answer = site.post("postmark", body, hookkit.basic())
        assert answer.json() == {"ok": True, "applied": 1, "skipped": 0}, answer.text
    assert status_of(site.config, "hard@example.org")[0] == "bounced"
    assert status_of(site.config, "angry@example.org")[0] == "unsubscribed"
    assert counted(runner, site)["by_kind"] == {"bounce": 1, "complaint": 1}


def test_postmark_bounce_proven_by_the_signed_link_it_quotes(site):
    """A Postmark bounce whose returned headers quote only the signed unsubscribe link still proves its subscriber."""
    engine = store.engine_for(load_config(site.config).database_url)
    link = links_for(load_config(site.config), engine).url(UNSUBSCRIBE, site.rows["hard@example.org"].subscriber_id)
    engine.dispose()
    content = f"Final-Recipient: rfc822; hard@example.org\r\nStatus: 5.1.1\r\n\r\nList-Unsubscribe: <{link}>\r\n"
    answer = site.post("postmark", hookkit.postmark_bounce("hard@example.org", content), hookkit.basic())
    assert answer.status_code == 200
    assert status_of(site.config, "hard@example.org")[0] == "bounced"
    assert [r.proof for r in site.logged()] == ["signed-link"]


def test_sendgrid_batch_applies_its_bounces_and_spam_report_and_skips_the_rest(site, runner):
    """A signed SendGrid batch: bounce, blocked and spamreport apply by smtp-id; the delivery is skipped."""
    events = [hookkit.sendgrid_event("hard@example.org", site.mid("hard@example.org")),
              hookkit.sendgrid_event("soft@example.org", site.mid("soft@example.org"), kind="blocked"),
              hookkit.sendgrid_event("angry@example.org", site.mid("angry@example.org"), event="spamreport"),
              hookkit.sendgrid_event("away@example.org", site.mid("away@example.org"), event="delivered")]
    body = json.dumps(events).encode()
    answer = site.post("sendgrid", body, site.sendgrid.headers(body))
    assert answer.json() == {"ok": True, "applied": 3, "skipped": 1}, answer.text
    assert [status_of(site.config, e)[0] for e in ("hard@example.org", "soft@example.org", "angry@example.org",
                                                   "away@example.org")] == ["bounced", "active", "unsubscribed",
                                                                            "active"]
    assert counted(runner, site)["by_class"] == {"hard": 1, "soft": 1}


def test_an_endpoint_whose_provider_is_off_answers_404(sent, make_config):  # noqa: F811
    """With [bounces] providers unset every hook answers 404 (JSON); with only mailgun on, /hooks/ses still does."""
    config, _, _ = sent
    cfg = load_config(config)
    engine = store.engine_for(cfg.database_url)
    with TestClient(create_app(cfg, engine), base_url=HOST, client=PEER) as client:
        assert {client.post(f"/hooks/{p}", content=b"{}").status_code for p in NAMES} == {404}
    cfg.bounces.providers, cfg.bounces.mailgun_signing_key = ["mailgun"], SecretStr(hookkit.MAILGUN_KEY)
    with TestClient(create_app(cfg, engine), base_url=HOST, client=PEER) as client:
        off = client.post("/hooks/ses", content=b"{}")
        assert (off.status_code, off.json()) == (404, {"ok": False, "error": "no such endpoint"})
        assert client.post("/hooks/mailgun", content=b"{}").status_code == 403
    engine.dispose()


def test_a_provider_on_without_its_key_is_refused_at_start(make_config, monkeypatch):
    """providers = ["mailgun"] without the signing key, or a SendGrid key that is no P-256 key: one line at start."""
    path = make_config('[bounces]\nproviders = ["mailgun"]\n')
    with pytest.raises(ConfigError, match="mailgun_signing_key: required when providers has 'mailgun'"):
        load_config(path)
    monkeypatch.setenv("NEWSLETTER_BOUNCES__SENDGRID_PUBLIC_KEY", "bm90IGEga2V5")
    cfg = load_config(make_config('[bounces]\nproviders = ["sendgrid"]\n'))
    with pytest.raises(ConfigError, match="sendgrid_public_key: not an ECDSA P-256 public key"):
        create_app(cfg)


def test_a_batch_the_database_refuses_is_redone_one_request_at_a_time(site, monkeypatch):
    """Of three requests stored together, one the database refuses fails alone; the other two are stored."""
    cfg = load_config(site.config)
    engine = store.engine_for(cfg.database_url)
    real = Feedback.apply_proofs

    def refusing(self, conn, notice, verdict, found):  # type: ignore[no-untyped-def]
        if verdict.recipients[0].address == "soft@example.org":
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))
        return real(self, conn, notice, verdict, found)

    monkeypatch.setattr(Feedback, "apply_proofs", refusing)
    writer = GroupCommit(lambda: Feedback(cfg, engine))

    def event(email: str) -> Event:
        verdict = Verdict(Kind.BOUNCE, (Recipient(email, True, "5.1.1", "550 user unknown"),), "test")
        return Event(verdict, Quoted((site.mid(email),), (), ()), b"{}")

    async def three() -> list[Any]:
        return await asyncio.gather(*(writer.put("test", [event(e)]) for e in
                                      ("hard@example.org", "soft@example.org", "away@example.org")),
                                    return_exceptions=True)

    # in a thread of its own: a session's browser tests leave Playwright's event loop running in this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        done = pool.submit(asyncio.run, three()).result()
    engine.dispose()
    assert [type(d).__name__ for d in done] == ["list", "OperationalError", "list"]
    assert [status_of(site.config, e)[0] for e in ("hard@example.org", "soft@example.org", "away@example.org")] \
        == ["bounced", "active", "bounced"]
    assert [r.recipient for r in site.logged()] == ["hard@example.org", "away@example.org"]


def test_requests_together_are_one_transaction_and_the_idle_writer_gives_its_connection_back(site, monkeypatch):
    """Five requests put together are stored in one batch, each answered only once it is committed; the writer
    thread then ends after IDLE, closing its connection, and the next request starts a new one."""
    cfg = load_config(site.config)
    engine = store.engine_for(cfg.database_url)
    monkeypatch.setattr(writer_module, "IDLE", 0.2)
    group = GroupCommit(lambda: Feedback(cfg, engine))
    batches: list[int] = []
    real = writer_module.Writer.store
    monkeypatch.setattr(writer_module.Writer, "store", lambda self, items: batches.append(len(items)) or real(
        self, items))

    def event(email: str) -> Event:
        verdict = Verdict(Kind.BOUNCE, (Recipient(email, True, "5.1.1", "550 user unknown", "userunknown"),), "test")
        return Event(verdict, Quoted((site.mid(email),), (), ()), b"{}")

    async def together() -> list[Any]:
        return await asyncio.gather(*(group.put("test", [event(e)]) for e in PEOPLE))

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        done = pool.submit(asyncio.run, together()).result()
        assert [len(d) for d in done] == [1] * len(PEOPLE) and batches == [len(PEOPLE)]
        assert len(site.logged()) == len(PEOPLE)  # committed before any answer came back
        first = group.writer._thread
        assert first is not None and first.is_alive()
        first.join(timeout=5)
        assert not first.is_alive() and group.writer._conn is None and group.writer._thread is None
        pool.submit(asyncio.run, group.put("test", [event(PEOPLE[0])])).result()
    assert batches == [len(PEOPLE), 1] and group.writer._thread is not first
    engine.dispose()


def test_bench_hooks_runs_and_applies_every_notification():
    """bench/hooks.py on 60 notifications prints its figures and applies every one (the rate is judged at 5,000)."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "hooks.py"), "--notifications", "60"],
                          capture_output=True, text=True, timeout=300)
    figures = dict(line.split(None, 1) for line in done.stdout.splitlines() if line[:1].islower())
    assert figures["applied"].strip() == "60" and figures["suppressed"].strip() == "60", done.stdout + done.stderr
    assert "in flight 16" in done.stdout


def test_webhook_rows_carry_their_reason_into_the_log_and_the_report(site, runner):
    """Rows written from provider webhooks carry Sisimai's reason, and `bounces report` counts them by it."""
    site.post("ses", site.sns.notification(hookkit.ses_bounce("hard@example.org", site.mid("hard@example.org"))))
    site.post("mailgun", hookkit.mailgun(hookkit.mailgun_failed("soft@example.org", site.mid("soft@example.org"),
                                                                permanent=False)))
    body = json.dumps([hookkit.sendgrid_event("angry@example.org", site.mid("angry@example.org"),
                                              event="spamreport")]).encode()
    site.post("sendgrid", body, site.sendgrid.headers(body))
    assert [(r.source, r.klass, r.reason) for r in site.logged()] == [
        ("ses", "hard", "userunknown"), ("mailgun", "soft", "mailboxfull"), ("sendgrid", None, "feedback")]
    assert counted(runner, site)["by_reason"] == [
        {"reason": r, "hard": h, "soft": s, "complaints": c} for r, h, s, c in
        (("feedback", 0, 0, 1), ("mailboxfull", 0, 1, 0), ("userunknown", 1, 0, 0))]
