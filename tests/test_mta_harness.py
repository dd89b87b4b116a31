"""The real-MTA harness (tests/mta.py) works: a private Postfix turns downstream 5xx/4xx answers into
RFC 3464 DSNs mailed to the bounce domain, and a private Dovecot serves delivered mail over IMAP."""

from __future__ import annotations

import imaplib
import smtplib
import time
from collections import deque
from collections.abc import Callable, Iterator
from email.message import EmailMessage, Message
from pathlib import Path
from typing import TypeVar

import pytest

from newsletter.mailsink import EmlHandler, start

from .conftest import parse
from .mta import HOST, dovecot_imap, flush, postfix_relay
from .smtpd import smtp_server

BOUNCE_DOMAIN = "bounces.test.example"
SENDER = f"bounces+abc@{BOUNCE_DOMAIN}"
T = TypeVar("T")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[EmlHandler, int]]:
    """The engine's side of the bounce loop: an SMTP server for the bounce domain, keeping what it gets."""
    handler = EmlHandler(tmp_path / "dsn")
    controller = start(handler)
    try:
        yield handler, controller.port
    finally:
        controller.stop()


def wait_for(check: Callable[[], T], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:g} s")
        time.sleep(0.1)
    return result


def newsletter_mail(*recipients: str) -> bytes:
    """An issue as the engine sends it, with the Message-ID a DSN must carry back."""
    msg = EmailMessage()
    msg["From"] = "Weekly Digest <digest@example.org>"
    msg["To"] = ", ".join(recipients)
    msg["Subject"] = "This week in ML"
    msg["Message-ID"] = "<issue-42.abc@example.org>"
    msg.set_content("Hello\n")
    return msg.as_bytes()


def send(port: int, recipients: list[str]) -> None:
    """Hand the issue to the relay on ``port`` with the VERP bounce address as envelope sender."""
    with smtplib.SMTP(HOST, port, timeout=10) as client:
        assert client.sendmail(SENDER, recipients, newsletter_mail(*recipients)) == {}


def reports(handler: EmlHandler) -> list[tuple[str, EmailMessage]]:
    """The DSNs the receiver got so far, as (envelope recipient, parsed message)."""
    return [(rcpt, parse(data)) for rcpt, data in list(handler.messages)]


def recipient_blocks(dsn: EmailMessage) -> list[Message]:
    """The per-recipient field blocks of an RFC 3464 report (Final-Recipient, Action, Status, ...)."""
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    [status] = [part for part in dsn.walk() if part.get_content_type() == "message/delivery-status"]
    blocks = status.get_payload()
    assert isinstance(blocks, list)
    return [block for block in blocks if isinstance(block, Message) and block.get("Final-Recipient")]


def test_postfix_relays_and_returns_a_dsn_for_a_5xx(tmp_path: Path, receiver: tuple[EmlHandler, int]) -> None:
    """Postfix relays the accepted recipient downstream and mails a "failed" DSN (5.1.1) for the 550 one."""
    dsns, receiver_port = receiver
    with smtp_server(tmp_path / "downstream") as (downstream, downstream_port):
        downstream.rcpt["gone@example.org"] = deque(["550 5.1.1 <gone@example.org>: user unknown"])
        with postfix_relay(tmp_path, downstream_port, BOUNCE_DOMAIN, receiver_port) as port:
            send(port, ["ok@example.org", "gone@example.org"])
            wait_for(lambda: downstream.received["ok@example.org"], 20, "delivery of ok@example.org")
            [(rcpt, dsn)] = wait_for(lambda: reports(dsns), 20, "DSN at the receiver")

    assert downstream.received["gone@example.org"] == 0
    assert rcpt == SENDER and dsn["To"] == SENDER
    [block] = recipient_blocks(dsn)
    assert block["Final-Recipient"] == "rfc822; gone@example.org"
    assert block["Action"] == "failed"
    assert block["Status"] == "5.1.1"
    assert "user unknown" in block["Diagnostic-Code"]
    assert "<issue-42.abc@example.org>" in dsn.as_string()  # the original's headers come back with it


@pytest.mark.timeout(60)
def test_postfix_sends_delayed_then_failed_dsn_for_a_4xx(tmp_path: Path,
                                                         receiver: tuple[EmlHandler, int]) -> None:
    """A recipient that gets 421 forever yields a "delayed" DSN, then a "failed" one once the queue lifetime ends."""
    dsns, receiver_port = receiver
    began = time.monotonic()
    with smtp_server() as (downstream, downstream_port):
        downstream.rcpt["busy@example.org"] = deque(["421 4.7.0 busy, try again later"] * 10_000)
        with postfix_relay(tmp_path, downstream_port, BOUNCE_DOMAIN, receiver_port, queue_lifetime="10s") as port:
            send(port, ["busy@example.org"])
            wait_for(lambda: dsns.messages, 10, "the delayed DSN")
            flush(tmp_path)  # a retry now: answered 421 again
            wait_for(lambda: len(dsns.messages) >= 2, 30, "the failed DSN")

    assert time.monotonic() - began < 40
    assert downstream.received["busy@example.org"] == 0
    actions = []
    for rcpt, dsn in reports(dsns):
        assert rcpt == SENDER
        [block] = recipient_blocks(dsn)
        assert block["Final-Recipient"] == "rfc822; busy@example.org"
        assert str(block["Status"]).startswith("4.")
        actions.append(block["Action"])
    assert actions == ["delayed", "failed"]


def test_dovecot_serves_delivered_mail_over_imap(tmp_path: Path) -> None:
    """Two delivered messages show in INBOX over IMAP; fetching one, deleting and expunging it leaves one."""
    with dovecot_imap(tmp_path) as imap:
        imap.deliver(newsletter_mail("reader@example.org"))
        imap.deliver(b"From: a@example.org\r\nSubject: second\r\n\r\nsecond body\r\n")
        client = imaplib.IMAP4(imap.host, imap.port)
        try:
            assert client.login(imap.user, imap.password)[0] == "OK"
            status, [count] = client.select("INBOX")
            assert (status, count) == ("OK", b"2")
            status, data = client.fetch("1", "(RFC822)")
            assert status == "OK"
            first = data[0]
            assert isinstance(first, tuple)
            assert parse(first[1])["Message-ID"] == "<issue-42.abc@example.org>"
            assert client.store("1", "+FLAGS", r"(\Deleted)")[0] == "OK"
            assert client.expunge()[0] == "OK"
            client.close()
            status, [count] = client.select("INBOX")
            assert (status, count) == ("OK", b"1")
            status, data = client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
            assert status == "OK" and isinstance(data[0], tuple)
            assert data[0][1] == b"Subject: second\r\n\r\n"
        finally:
            client.logout()
