"""Provider notifications as SES (through SNS), Mailgun, Postmark and SendGrid write them, signed with keys and a
certificate made here: for tests/test_hooks.py, tests/adversarial/test_hooks.py and bench/hooks.py. No network: the
SNS signing certificate is served by ``Sns.fetcher``, which stands in for ``providers.sns.https_get``.

The shapes follow each provider's documented format (SES "Amazon SNS notification contents", SNS "Verifying the
signatures of Amazon SNS messages", Mailgun's webhook payloads, Postmark's bounce and spam-complaint webhooks,
SendGrid's Event Webhook and its signature headers); only the fields the engine reads, and a few it ignores.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.feedback.providers import Unavailable
from newsletter.feedback.providers.sns import SIGNED

TOPIC = "arn:aws:sns:us-east-1:123456789012:newsletter-feedback"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-" + "0123456789abcdef" * 2 + ".pem"
MAILGUN_KEY = "key-mailgun-signing-0123456789abcdef"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "hook-password-0123456789"


class Sns:
    """An SNS stand-in: an RSA key with its certificate, served from CERT_URL by ``fetcher``, signing envelopes."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = datetime.now(UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=365))
                     .sign(self.key, hashes.SHA256()))
        self.served = {CERT_URL: self.cert.public_bytes(serialization.Encoding.PEM)}
        self.fetched: list[str] = []

    def fetcher(self, url: str) -> bytes:
        """What ``https_get`` would bring back: the certificate at CERT_URL, a confirmation's answer, else fails."""
        self.fetched.append(url)
        if url in self.served:
            return self.served[url]
        if "Action=ConfirmSubscription" in url:
            return b"<ConfirmSubscriptionResponse/>"
        raise Unavailable(f"nothing served at {url}")

    def sign(self, envelope: dict[str, Any], version: str = "1", cert_url: str = CERT_URL) -> dict[str, Any]:
        """``envelope`` with SignatureVersion, SigningCertURL and the signature over AWS's canonical string."""
        signed = {**envelope, "SignatureVersion": version, "SigningCertURL": cert_url}
        text = "".join(f"{k}\n{signed[k]}\n" for k in SIGNED[signed["Type"]] if signed.get(k) is not None)
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()
        signed["Signature"] = base64.b64encode(self.key.sign(text.encode(), padding.PKCS1v15(), digest)).decode()
        return signed

    def notification(self, message: dict[str, Any], topic: str = TOPIC, version: str = "1",
                     cert_url: str = CERT_URL, at: datetime | None = None) -> bytes:
        """An SNS Notification carrying ``message`` (an SES notification) as its JSON string, signed; published
        ``at`` (its Timestamp; now by default)."""
        envelope = {"Type": "Notification", "MessageId": _uuid(), "TopicArn": topic, "Message": json.dumps(message),
                    "Timestamp": _now(at), "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe"}
        return json.dumps(self.sign(envelope, version, cert_url)).encode()

    def confirmation(self, subscribe_url: str, topic: str = TOPIC) -> bytes:
        """A SubscriptionConfirmation for ``topic`` whose SubscribeURL is ``subscribe_url``, signed."""
        envelope = {"Type": "SubscriptionConfirmation", "MessageId": _uuid(), "Token": secrets.token_hex(32),
                    "TopicArn": topic, "Message": f"You have chosen to subscribe to the topic {topic}.",
                    "SubscribeURL": subscribe_url, "Timestamp": _now()}
        return json.dumps(self.sign(envelope, "2")).encode()


def subscribe_url(topic: str = TOPIC, host: str = "sns.us-east-1.amazonaws.com") -> str:
    return f"https://{host}/?Action=ConfirmSubscription&TopicArn={topic}&Token={secrets.token_hex(16)}"


def _mail(email: str, message_id: str | None) -> dict[str, Any]:
    """SES's ``mail`` object; with ``message_id``, the original headers included (headers in notifications on)."""
    mail: dict[str, Any] = {"timestamp": _now(), "source": "digest@example.org", "sendingAccountId": "123456789012",
                            "messageId": "0100018f-" + secrets.token_hex(16) + "-000000", "destination": [email]}
    if message_id:
        mail |= {"headersTruncated": False,
                 "headers": [{"name": "From", "value": "ML Papers Weekly <digest@example.org>"},
                             {"name": "To", "value": email}, {"name": "Message-ID", "value": message_id}],
                 "commonHeaders": {"from": ["ML Papers Weekly <digest@example.org>"], "to": [email],
                                   "messageId": message_id, "subject": "ML Papers Weekly"}}
    return mail


def ses_bounce(email: str, message_id: str | None, hard: bool = True) -> dict[str, Any]:
    status, code = ("5.1.1", "smtp; 550 5.1.1 user unknown") if hard else ("4.2.2", "smtp; 452 4.2.2 mailbox full")
    return {"notificationType": "Bounce", "mail": _mail(email, message_id),
            "bounce": {"bounceType": "Permanent" if hard else "Transient", "bounceSubType": "General",
                       "bouncedRecipients": [{"emailAddress": email, "action": "failed", "status": status,
                                              "diagnosticCode": code}],
                       "timestamp": _now(), "feedbackId": "0100018f-" + secrets.token_hex(8),
                       "reportingMTA": "dns; mx.example.net"}}


def ses_complaint(email: str, message_id: str | None) -> dict[str, Any]:
    return {"notificationType": "Complaint", "mail": _mail(email, message_id),
            "complaint": {"complainedRecipients": [{"emailAddress": email}], "complaintFeedbackType": "abuse",
                          "userAgent": "ExampleMail Feedback Loop", "timestamp": _now(),
                          "feedbackId": "0100018f-" + secrets.token_hex(8)}}


def mailgun(event_data: dict[str, Any], key: str = MAILGUN_KEY, timestamp: int | None = None,
            token: str | None = None) -> bytes:
    """A Mailgun webhook body: ``event-data`` and its signature (HMAC-SHA256 of timestamp + token)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": stamp, "token": token, "signature": signature},
                       "event-data": event_data}).encode()


def mailgun_failed(email: str, message_id: str, permanent: bool = True) -> dict[str, Any]:
    return {"event": "failed", "id": secrets.token_urlsafe(16), "timestamp": time.time(), "recipient": email,
            "severity": "permanent" if permanent else "temporary", "reason": "bounce", "log-level": "error",
            "delivery-status": {"code": 550 if permanent else 452, "attempt-no": 1, "session-seconds": 0.4,
                                "message": "5.1.1 The email account that you tried to reach does not exist"
                                if permanent else "4.2.2 Mailbox full", "description": ""},
            "message": {"headers": {"to": email, "from": "digest@example.org", "subject": "ML Papers Weekly",
                                    "message-id": message_id.strip("<>")}, "attachments": [], "size": 4096}}


def mailgun_complained(email: str, message_id: str) -> dict[str, Any]:
    return {"event": "complained", "id": secrets.token_urlsafe(16), "timestamp": time.time(), "recipient": email,
            "log-level": "warn", "message": {"headers": {"to": email, "message-id": message_id.strip("<>")}}}


def postmark_bounce(email: str, content: str = "", kind: str = "HardBounce") -> bytes:
    """Postmark's bounce webhook; ``content`` is the bounce dump ("include bounce content" on)."""
    record = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": kind, "TypeCode": 1, "Name": "Hard bounce",
              "MessageID": _uuid(), "ServerID": 23, "MessageStream": "outbound", "Description": "The server was "
              "unable to deliver your message (ex: unknown user, mailbox not found).",
              "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.", "Email": email,
              "From": "digest@example.org", "BouncedAt": _now(), "DumpAvailable": True, "Inactive": True,
              "CanActivate": True, "Subject": "ML Papers Weekly", "Metadata": {}}
    return json.dumps(record | ({"Content": content} if content else {})).encode()


def postmark_complaint(email: str, content: str = "") -> bytes:
    record = {"RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint", "TypeCode": 512, "MessageID": _uuid(),
              "ServerID": 23, "MessageStream": "outbound", "Email": email, "From": "digest@example.org",
              "BouncedAt": _now(), "Details": "Test spam complaint details", "Subject": "ML Papers Weekly"}
    return json.dumps(record | ({"Content": content} if content else {})).encode()


def basic(user: str = POSTMARK_USER, password: str = POSTMARK_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


class Sendgrid:
    """SendGrid's signing key pair: ``public`` is what its settings page shows (base64 DER)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: str | None = None) -> dict[str, str]:
        stamp = timestamp or str(int(time.time()))
        signature = self.key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp, "Content-Type": "application/json"}


def sendgrid_event(email: str, message_id: str, event: str = "bounce", kind: str = "bounce") -> dict[str, Any]:
    found: dict[str, Any] = {"email": email, "timestamp": int(time.time()), "smtp-id": message_id, "event": event,
                             "sg_event_id": secrets.token_urlsafe(16), "sg_message_id": secrets.token_urlsafe(20)}
    if event == "bounce":
        found |= {"type": kind, "status": "5.1.1" if kind == "bounce" else "4.7.1",
                  "reason": "550 5.1.1 user unknown" if kind == "bounce" else "421 4.7.1 try again later"}
    return found


def environment(sendgrid_public: str) -> dict[str, str]:
    """The NEWSLETTER_BOUNCES__* variables that switch every provider on with the keys above."""
    return {"NEWSLETTER_BOUNCES__PROVIDERS": '["ses", "mailgun", "postmark", "sendgrid"]',
            "NEWSLETTER_BOUNCES__SES_TOPIC_ARNS": json.dumps([TOPIC]),
            "NEWSLETTER_BOUNCES__MAILGUN_SIGNING_KEY": MAILGUN_KEY,
            "NEWSLETTER_BOUNCES__POSTMARK_USER": POSTMARK_USER,
            "NEWSLETTER_BOUNCES__POSTMARK_PASSWORD": POSTMARK_PASSWORD,
            "NEWSLETTER_BOUNCES__SENDGRID_PUBLIC_KEY": sendgrid_public}


def _uuid() -> str:
    raw = secrets.token_hex(16)
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _now(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")

