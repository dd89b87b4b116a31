"""Amazon SNS's HTTPS deliveries, verified: the signature over AWS's canonical string, with the certificate fetched
from SigningCertURL only when that URL is ``https://sns.<region>.amazonaws.com/SimpleNotificationService-….pem``.

    a request ─► its TopicArn one of [bounces] ses_topic_arns?      (anyone can point an SNS topic of their own here)
              ─► SigningCertURL on sns.<the topic's region>.amazonaws.com, https, a .pem of SNS's naming?
              ─► the certificate (fetched once, kept), in date, an RSA key
              ─► the signature (SignatureVersion 1: SHA1, 2: SHA256) over the canonical string
              ─► its Timestamp (signed) within [bounces] hook_max_age_seconds, not over 5 minutes ahead ─► the envelope

The canonical string is AWS's: for each signed field present, its name, a newline, its value, a newline, in the
order AWS lists them (Message, MessageId, Subject, Timestamp, TopicArn, Type for a Notification; SubscribeURL and
Token in their places for the subscription messages). A SubscriptionConfirmation is confirmed only after it
verifies, by fetching its SubscribeURL under the same host rule. Every fetch goes through one injectable function
that follows no redirect (a redirect would leave the checked host); the tests and the bench give their own.

A captured delivery verifies forever; its Timestamp is what dates it. SNS retries a delivery with the message as
first published (same Timestamp, same signature): by default three times within a minute, so a window of 15
minutes refuses replays and loses no retry. A topic whose delivery policy retries for longer needs a longer window.
The rule holds for a SubscriptionConfirmation too: one that reaches this endpoint late is refused, and the
subscription is confirmed by asking SNS for a new one (the console's "Request confirmation", or subscribing again).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .base import Refused, Unavailable, WouldBlock, fresh, json_of, text

Fetch = Callable[[str], bytes]
HOST = re.compile(r"sns\.([a-z0-9-]{1,30})\.amazonaws\.com")
CERT_PATH = re.compile(r"/SimpleNotificationService-[0-9a-f]{32}\.pem")
SIGNED = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
MAX_AGE = 900.0       # seconds: [bounces] hook_max_age_seconds' default
FETCH_TIMEOUT = 10.0
FETCH_MAX = 64 << 10  # a signing certificate is about 2 KB, a confirmation's answer less
KEPT_CERTS = 32        # SNS rotates its certificate rarely; a handful of regions at most


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx is then an error: the host checked is the host fetched


_OPENER = urllib.request.build_opener(_NoRedirect)


def https_get(url: str) -> bytes:
    """GET ``url`` (already checked: https on an SNS host) with TLS verified, no redirect, 10 s, at most 64 KiB."""
    try:
        with _OPENER.open(urllib.request.Request(url, method="GET"), timeout=FETCH_TIMEOUT) as answer:
            return bytes(answer.read(FETCH_MAX))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Unavailable(f"fetching from {urlsplit(url).hostname} failed: {type(exc).__name__}") from None


def sns_url(url: object, region: str, path: re.Pattern[str] | None = None) -> str:
    """``url`` rebuilt from its checked parts: https, exactly ``sns.<region>.amazonaws.com`` (no user, no port), and,
    with ``path``, that path; ``Refused`` naming what is wrong otherwise."""
    if not isinstance(url, str):
        raise Refused("no URL where one is signed")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("a URL that does not parse") from None
    host = parts.hostname or ""
    found = HOST.fullmatch(host)
    if parts.scheme != "https" or not found or parts.username is not None or port not in (None, 443) \
            or parts.netloc.casefold() not in (host, f"{host}:443"):
        raise Refused(f"a URL off sns.<region>.amazonaws.com: {text(host)[:200] or '?'}")
    if found.group(1) != region:
        raise Refused(f"a URL of region {found.group(1)} for a topic of {region}")
    if path is not None and not path.fullmatch(parts.path):
        raise Refused("a signing certificate URL that is not SNS's")
    return f"https://{host}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def canonical(envelope: dict[str, str], kind: str) -> bytes:
    """AWS's string to sign: ``name\\nvalue\\n`` for each signed field present, in AWS's order."""
    return "".join(f"{name}\n{envelope[name]}\n" for name in SIGNED[kind] if name in envelope).encode("utf-8")


class Sns:
    """Verifies SNS deliveries for a set of topics; its certificates are kept once fetched (thread-safe)."""

    def __init__(self, topics: list[str], fetch: Fetch | None = None, now: Callable[[], datetime] | None = None,
                 max_age: float = MAX_AGE):
        self.topics = frozenset(topics)
        self.fetch = fetch or https_get
        self.now = now
        self.max_age = max_age
        self._certs: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def verify(self, body: bytes, may_block: bool = True) -> dict[str, str]:
        """The envelope of a delivery whose signature verifies and whose Timestamp is in the window; ``Refused`` (or
        ``Unavailable``) otherwise."""
        envelope = _envelope(json_of(body, refuse=True))
        kind, topic = envelope["Type"], envelope["TopicArn"]
        if topic not in self.topics:
            raise Refused(f"topic {text(topic)[:200]} is not one of ses_topic_arns")
        hash_of = HASHES.get(envelope.get("SignatureVersion", ""))
        if hash_of is None:
            raise Refused("an unknown SignatureVersion")
        key = self._key(sns_url(envelope.get("SigningCertURL"), region_of(topic), CERT_PATH), may_block)
        try:
            signature = base64.b64decode(envelope.get("Signature", ""), validate=True)
            key.verify(signature, canonical(envelope, kind), padding.PKCS1v15(), hash_of())
        except (InvalidSignature, binascii.Error, ValueError):
            raise Refused("the signature does not verify") from None
        fresh(_epoch(envelope["Timestamp"]), self._now().timestamp(), self.max_age)
        return envelope

    def confirm(self, envelope: dict[str, str]) -> str:
        """Confirm a verified SubscriptionConfirmation by fetching its SubscribeURL (same host rule); one line."""
        self.fetch(sns_url(envelope.get("SubscribeURL"), region_of(envelope["TopicArn"])))
        return f"subscription of this endpoint to {envelope['TopicArn']} confirmed"

    def _key(self, url: str, may_block: bool) -> rsa.RSAPublicKey:
        """The certificate's key, fetched once per URL; its dates are checked at each use, not only at the fetch."""
        with self._lock:
            cert = self._certs.get(url)
        if cert is None:
            if not may_block:
                raise WouldBlock("the signing certificate is not fetched yet")
            cert = _certificate(self.fetch(url))
            with self._lock:
                if len(self._certs) >= KEPT_CERTS:
                    self._certs.clear()
                self._certs[url] = cert
        at = self._now()
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise Refused("the signing certificate is out of date")
        return cast(rsa.RSAPublicKey, cert.public_key())

    def _now(self) -> datetime:
        return self.now() if self.now else datetime.now(UTC)


def region_of(topic: str) -> str:
    """``arn:aws:sns:<region>:<account>:<name>`` → region: the certificate must come from that region's SNS."""
    parts = topic.split(":")
    if len(parts) != 6 or parts[:3] != ["arn", "aws", "sns"]:
        raise Refused("a TopicArn that is not an SNS topic")
    return parts[3]


def _epoch(stamp: str) -> float:
    """SNS's Timestamp (ISO 8601 in UTC, ``2026-05-28T09:00:00.000Z``) as seconds since the epoch."""
    try:
        when = datetime.fromisoformat(stamp)
    except ValueError:
        raise Refused("a Timestamp that is not an ISO 8601 time") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _envelope(doc: object) -> dict[str, str]:
    """The envelope's fields, every one a string; a delivery of no signed type is refused."""
    if not isinstance(doc, dict) or doc.get("Type") not in SIGNED:
        raise Refused("not an SNS message")
    fields = {k: v for k, v in doc.items() if isinstance(v, str)}
    missing = [name for name in SIGNED[doc["Type"]] if name != "Subject" and name not in fields]
    if missing or (doc.get("Subject") is not None and "Subject" not in fields):
        raise Refused(f"an SNS message without {', '.join(missing) or 'a string Subject'}")
    return fields


def _certificate(pem: bytes) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Unavailable("the signing certificate is not a PEM certificate") from None
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise Refused("the signing certificate's key is not RSA")
    return cert
