"""Notices as MTAs and mailbox providers write them, for the feedback tests and bench/ingest.py."""

from __future__ import annotations

from email.message import EmailMessage


def dsn(to: str, rcpt: str, status: str, diagnostic: str, action: str = "failed", message_id: str = "") -> bytes:
    """An RFC 3464 delivery status notification, laid out as Postfix writes one; with ``message_id``, the returned
    headers quote it (as a real DSN quotes the original's)."""
    quoted = f"Message-ID: {message_id}\n" if message_id else ""
    return f"""From: MAILER-DAEMON@mta.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not be delivered.

<{rcpt}>: host mx.example.net said: {diagnostic}

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mta.example.net

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822;{rcpt}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--B1
Content-Type: text/rfc822-headers

{quoted}Subject: Top-conf Paper Digest

--B1--
""".replace("\n", "\r\n").encode()


def arf(to: str, rcpt: str, message_id: str = "") -> bytes:
    """An RFC 5965 abuse (spam) report, as a mailbox provider's feedback loop sends one; with ``message_id``, the
    returned headers quote the original's."""
    quoted = f"Message-ID: {message_id}\n" if message_id else ""
    return f"""From: fbl@isp.example
To: {to}
Subject: FW: Top-conf Paper Digest
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="B2"

--B2
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for an email message received from IP 192.0.2.1.

--B2
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ISP-FBL/1.0
Version: 1
Original-Rcpt-To: {rcpt}
Arrival-Date: Thu, 28 May 2026 09:00:00 +0000

--B2
Content-Type: text/rfc822-headers

From: digest@example.org
To: {rcpt}
{quoted}Subject: Top-conf Paper Digest

--B2--
""".replace("\n", "\r\n").encode()


def plain(to: str, sender: str, subject: str, body: str, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()
