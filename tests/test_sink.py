"""`newsletter sink` keeps each message with its envelope sender as the first line (Return-Path), safely."""

from __future__ import annotations

import smtplib
from pathlib import Path

from aiosmtpd.smtp import Envelope

from newsletter.mailsink import EmlHandler, start

MSG = b"From: digest@example.org\r\nTo: ada@example.org\r\nSubject: t\r\n\r\nhello\r\n"


def test_each_eml_begins_with_the_envelope_senders_return_path(tmp_path: Path) -> None:
    """A message sent over SMTP lands as an .eml whose first line is Return-Path: <the VERP sender>, then the
    message as sent."""
    handler = EmlHandler(tmp_path / "mail")
    controller = start(handler)
    try:
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=5) as smtp:
            smtp.sendmail("bounces+r.AbC-12@bounces.example.org", ["ada@example.org"], MSG)
    finally:
        controller.stop()
    (eml,) = (tmp_path / "mail").glob("*.eml")
    assert eml.read_bytes() == b"Return-Path: <bounces+r.AbC-12@bounces.example.org>\r\n" + MSG
    assert handler.messages == [("ada@example.org", MSG)]  # what tests compare stays the message as sent


def test_nothing_from_the_envelope_can_end_the_return_path_line(tmp_path: Path) -> None:
    """CR, LF, other control characters and angle brackets in the envelope sender never reach the header."""
    handler = EmlHandler(tmp_path / "mail")
    envelope = Envelope()
    envelope.mail_from = "eve@example.org>\r\nBcc: victim@example.com\n\x00\x85\u2028<x"
    envelope.rcpt_tos = ["ada@example.org"]
    envelope.original_content = MSG
    handler.store(envelope)
    (eml,) = (tmp_path / "mail").glob("*.eml")
    first, rest = eml.read_bytes().split(b"\r\n", 1)
    assert first == b"Return-Path: <eve@example.orgBcc: victim@example.comx>" and rest == MSG
