"""Signed links in every email: unsubscribe, preferences, and the double opt-in confirmation.

itsdangerous signs the subscriber id with HMAC, so a link can't be guessed or altered; each kind
has its own salt, so an unsubscribe token is no preferences token. Confirmation links expire.

Unsubscribe and preferences tokens are the decimal id and its signature (``Signer``), made once
per kind and reused: every message carries two, and the serializer's JSON + zlib + base64 payload
cost 34 µs a link where the signer alone costs 4 (measured here with timeit).

Click links (``/r/<token>``, clicks.py) sign an issue's paper link (issue, paper, kind, the time it was made) and
name nobody: every reader's copy of a link is the same.

VERP tokens (``bounces+<token>@…``) name an outbox row (``r``: a bounce of that very message) or
a subscriber (``u``: mail to the List-Unsubscribe address). They live in an address's local part,
which relays may lowercase, so they are written by hand in lowercase base32 rather than by
itsdangerous (base64, case-sensitive): an HMAC-SHA256 cut to 50 bits, so a forged notice would
need about 10^15 tries to suppress anyone.

Every token is signed with the current key; after ``newsletter keys rotate`` the retired key still verifies
until ``until`` (keys.py), read from the clock at each check, so a long-running server stops at the hour.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime

from itsdangerous import BadData, Signer, URLSafeTimedSerializer
from sqlalchemy.engine import Engine

from . import keys
from .clock import SYSTEM, Clock
from .config import Config
from .errors import BadToken

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
CONFIRM = "confirm"
VERP_KINDS = {"r": "outbox row", "u": "unsubscribe"}


@dataclass(frozen=True)
class Links:
    secret: str
    base_url: str
    previous: tuple[str, ...] = field(default=(), repr=False)  # retired keys: they verify until ``until``
    until: datetime | None = None
    clock: Clock = field(default=SYSTEM, repr=False, compare=False)
    _signers: dict[str, Signer] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _keys(self) -> list[str]:
        """The keys a token may carry, the signing one last (itsdangerous signs with the last of a list)."""
        if self.previous and self.until is not None and self.clock.now() < self.until:
            return [*self.previous, self.secret]
        return [self.secret]

    def _signer(self, kind: str) -> Signer:
        if kind not in self._signers:
            # hashlib.sha1 itself (itsdangerous's default is a wrapper of it) lets hmac use OpenSSL's
            # HMAC instead of its pure-Python set-up: the same signature, 3.8 -> 3.1 µs (timeit).
            self._signers[kind] = Signer(self.secret, salt=kind, digest_method=hashlib.sha1)
        return self._signers[kind]

    def token(self, kind: str, subscriber_id: int) -> str:
        return self.sign(kind, str(subscriber_id))

    def sign(self, kind: str, value: str) -> str:
        """``value.<signature>`` under the current key, salted by ``kind`` (a subscriber id, or clicks.py's link)."""
        return self._signer(kind).sign(value).decode("ascii")

    def url(self, kind: str, subscriber_id: int) -> str:
        return f"{self.base_url}/{kind}/{self.token(kind, subscriber_id)}"

    def confirm_url(self, subscriber_id: int) -> str:
        token = URLSafeTimedSerializer(self.secret, salt=CONFIRM).dumps(subscriber_id)
        return f"{self.base_url}/{CONFIRM}/{token}"

    def verify(self, kind: str, token: str) -> int:
        value = self.unsign(kind, token)
        if not value.isdigit() or not value.isascii():
            raise BadToken(kind)
        return int(value)

    def unsign(self, kind: str, token: str) -> str:
        """The value ``sign`` signed, under the current key or a retired one within its window; else ``BadToken``."""
        held = self._keys()
        signer = self._signer(kind) if len(held) == 1 else Signer(held, salt=kind, digest_method=hashlib.sha1)
        try:
            return signer.unsign(token).decode("ascii")
        except (BadData, UnicodeError):
            raise BadToken(kind) from None

    def verp_token(self, kind: str, ident: int) -> str:
        """``r123-<sig>``: the kind letter, the id, and its signature (lowercase, case-insensitive safe)."""
        return f"{kind}{ident}-{self._verp_sig(kind, ident)}"

    def verify_verp(self, token: str) -> tuple[str, int]:
        """(kind, id) of a VERP token; ``BadToken`` for a forged, foreign or mangled one."""
        head, _, sig = token.casefold().partition("-")
        kind, ident = head[:1], head[1:]
        if kind not in VERP_KINDS or not ident.isdigit() or not ident.isascii() or len(ident) > 18:
            raise BadToken("verp")
        if not any(hmac.compare_digest(sig, self._verp_sig(kind, int(ident), key)) for key in self._keys()):
            raise BadToken("verp")
        return kind, int(ident)

    def _verp_sig(self, kind: str, ident: int, key: str | None = None) -> str:
        digest = hmac.new((key or self.secret).encode(), f"verp:{kind}:{ident}".encode(), hashlib.sha256).digest()
        return base64.b32encode(digest[:10]).decode("ascii").lower()[:10]

    def verify_confirm(self, token: str, max_age_seconds: int) -> int:
        try:
            value = URLSafeTimedSerializer(self._keys(), salt=CONFIRM).loads(token, max_age=max_age_seconds)
        except BadData:
            raise BadToken(CONFIRM) from None
        return _subscriber_id(value, CONFIRM)


def _subscriber_id(value: object, kind: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadToken(kind)
    return value


def links_for(config: Config, engine: Engine, clock: Clock = SYSTEM) -> Links:
    """Signed links keyed by ``[newsletter] secret_key``, else by a random key kept in the database: the key
    the database signs with (``ConfigError`` if not, see keys.py), and a retired one within its window."""
    with engine.begin() as conn:
        ring = keys.ring(config, conn, clock.now())
    return Links(ring.current, config.newsletter.base_url.rstrip("/"), ring.previous, ring.until, clock)


def sample_links(config: Config) -> Links:
    """Links for sizing, previewing and scoring a message without a database: keyed by ``secret_key``, else
    by a placeholder (they name a sample subscriber, never a real one; a token is as long either way)."""
    secret = config.newsletter.secret_key.get_secret_value() or "sample" * 6
    return Links(secret, config.newsletter.base_url.rstrip("/"))


def verp_address(base: str, token: str) -> str:
    """``bounces@b.example`` + token → ``bounces+token@b.example``."""
    local, _, domain = base.rpartition("@")
    return f"{local}+{token}@{domain}"


def verp_token_of(address: str, base: str) -> str | None:
    """The token in an address made by ``verp_address`` for ``base``, or None (another address)."""
    local, _, domain = address.strip().strip("<>").rpartition("@")
    base_local, _, base_domain = base.rpartition("@")
    prefix = base_local.casefold() + "+"
    if domain.casefold() != base_domain.casefold() or not local.casefold().startswith(prefix):
        return None
    return local[len(prefix):] or None


# The working parts of what acts for a subscriber, never written to a log: the signed segment of a link, a
# preview token, and the VERP token of a bounce address (its HMAC suppresses or unsubscribes one person).
_TOKEN_SEGMENT = re.compile(r"(/(?:confirm|unsubscribe|resubscribe|preferences)/)[^/?#\s\"]+")
_TOKEN_QUERY = re.compile(r"([?&]token=)[^&#\s\"]+")
_VERP_TOKEN = re.compile(r"(\+)[ru]\d{1,18}-[a-z2-7]{10}(@)", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every token replaced by "…": ``/unsubscribe/…``, ``?token=…``, ``bounces+…@``."""
    return _VERP_TOKEN.sub(r"\1…\2", _TOKEN_QUERY.sub(r"\1…", _TOKEN_SEGMENT.sub(r"\1…", text)))


class RedactTokens(logging.Filter):
    """Takes the tokens out of a logger's lines (uvicorn's access log, aiosmtpd's ``mail.log``), whose arguments
    hold a request path or an envelope address: whoever reads the log must not be able to act for a reader."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):  # argument by argument: uvicorn's access formatter reads them
            record.args = tuple(_redacted(a) for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


class _Shown(str):
    """A bytes argument's redacted repr, printed as it is by ``%r`` (aiosmtpd logs each command line so)."""

    def __repr__(self) -> str:
        return str(self)


def _redacted(arg: object) -> object:
    if isinstance(arg, str):
        return redact(arg)
    return _Shown(redact(repr(arg))) if isinstance(arg, bytes) else arg


def redact_logger(name: str) -> None:
    """Put ``RedactTokens`` on the logger ``name``, once."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactTokens) for f in logger.filters):
        logger.addFilter(RedactTokens())
