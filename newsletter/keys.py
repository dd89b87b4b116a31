"""The key every link is signed with: one per database, its fingerprint kept there, and its rotation.

Every token the engine issues (unsubscribe, preferences, confirm, CSRF, VERP) is an HMAC under one key. Two
processes with different keys sign links the other rejects ("This link does not work"), so the database names
the key it signs with: ``meta`` keeps a fingerprint, HMAC-SHA256 of a fixed label keyed by the key, 16 hex
digits (it tells keys apart and reveals nothing of them). The first process to make links records its key;
any later one whose key has another fingerprint refuses to start, in one line.

The key is ``[newsletter] secret_key``, or when that is empty a random key the database keeps (``link_key``).

Rotation (``newsletter keys rotate``, the new key as secret_key, the old one as previous_secret_key) records
the new fingerprint, the old one as retired and when. For ``previous_key_days`` after that, links signed with
the old key still verify; new ones are signed with the new key only. A previous_secret_key no rotation
retired is refused; one past its window is left unused, with a warning. When the old key was the database's
own, it needs no previous_secret_key: the database still has it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection, Engine

from . import store
from .clock import aware
from .config import Config
from .errors import ConfigError

log = logging.getLogger(__name__)

FINGERPRINT, RETIRED, RETIRED_AT = "link_key_fingerprint", "link_key_retired", "link_key_retired_at"
DB_KEY = "link_key"  # the random key of a database whose config has no secret_key
LABEL = b"newsletter signing-key fingerprint v1"
DATABASE_KEY = "[newsletter] secret_key is empty, so the database's own key"
ROTATE = "`newsletter keys rotate` with the new key as secret_key and the old one as previous_secret_key"


@dataclass(frozen=True)
class KeyRing:
    """The key that signs, and the retired ones that still verify until ``until``."""

    current: str
    previous: tuple[str, ...] = ()
    until: datetime | None = None


@dataclass(frozen=True)
class Status:
    """What ``keys status`` and ``keys rotate`` report: fingerprints and times, never a key."""

    signs: str | None           # the fingerprint the database signs with (None: no link made yet)
    mine: str                   # this process's key's fingerprint
    source: str                 # where this process's key comes from
    retired: str | None = None  # the previous key's fingerprint
    retired_at: datetime | None = None
    until: datetime | None = None  # links signed with the previous key verify until then


def fingerprint(key: str) -> str:
    """Names ``key`` without revealing it: HMAC-SHA256 of a fixed label keyed by it, 64 bits in hex."""
    return hmac.new(key.encode(), LABEL, hashlib.sha256).hexdigest()[:16]


def ring(config: Config, conn: Connection, now: datetime) -> KeyRing:
    """The keys of a process that makes links; ``ConfigError`` (one line) when its key is not the database's."""
    current, source = _current(config, conn)
    if store.meta_claim(conn, FINGERPRINT, fingerprint(current)) != fingerprint(current):
        raise ConfigError(f"{source}: this key differs from the one the database signs with; set that key, "
                          f"or move to this one with {ROTATE}")
    previous, until = _previous(config, conn, now)
    return KeyRing(current, previous, until)


def rotate(config: Config, engine: Engine, now: datetime) -> Status:
    """Make secret_key the one the database signs with, and the old key one that verifies for a while."""
    with engine.begin() as conn:
        current, source = _current(config, conn)
        signs = store.meta_get(conn, FINGERPRINT)
        if signs == fingerprint(current):
            raise ConfigError(f"{source}: the database signs with this key already: nothing to rotate")
        old, old_source = _old_key(config, conn)
        if old is None:
            raise ConfigError(f"{config.origin('newsletter', 'previous_secret_key')}: set previous_secret_key "
                              "to the key the database signs with now")
        if signs is not None and fingerprint(old) != signs:
            raise ConfigError(f"{old_source}: not the key the database signs with now (`newsletter keys status` "
                              "shows its fingerprint)")
        for key, value in ((FINGERPRINT, fingerprint(current)), (RETIRED, fingerprint(old)),
                           (RETIRED_AT, now.isoformat())):
            store.meta_put(conn, key, value)
    return status(config, engine)


def status(config: Config, engine: Engine) -> Status:
    """Which key the database signs with, this process's, and the retired one's window."""
    with engine.begin() as conn:
        current, source = _current(config, conn)
        retired, at = store.meta_get(conn, RETIRED), _retired_at(conn)
        return Status(store.meta_get(conn, FINGERPRINT), fingerprint(current), source, retired, at,
                      _until(config, at))


def _current(config: Config, conn: Connection) -> tuple[str, str]:
    """The key this process signs with, and where it comes from (for an error line)."""
    configured = config.newsletter.secret_key.get_secret_value()
    if configured:
        return configured, config.origin("newsletter", "secret_key")
    return store.meta_secret(conn, DB_KEY), DATABASE_KEY


def _old_key(config: Config, conn: Connection) -> tuple[str | None, str]:
    """The key being retired: previous_secret_key, else (secret_key set) the database's own key if it has one."""
    given = config.newsletter.previous_secret_key.get_secret_value()
    if given:
        return given, config.origin("newsletter", "previous_secret_key")
    if config.newsletter.secret_key.get_secret_value():
        return store.meta_get(conn, DB_KEY), "the database's own key"
    return None, ""


def _previous(config: Config, conn: Connection, now: datetime) -> tuple[tuple[str, ...], datetime | None]:
    """The retired key that still verifies, and until when; () when there is none or its window has passed."""
    retired, until = store.meta_get(conn, RETIRED), _until(config, _retired_at(conn))
    given = config.newsletter.previous_secret_key.get_secret_value()
    if given and fingerprint(given) != retired:
        raise ConfigError(f"{config.origin('newsletter', 'previous_secret_key')}: not the key "
                          f"`newsletter keys rotate` retired; remove it, or rotate with {ROTATE}")
    old, _ = _old_key(config, conn)
    if old is None or until is None or fingerprint(old) != retired:
        return (), None
    if now >= until:
        if given:
            log.warning("previous_secret_key: retired more than previous_key_days=%g days ago (until %s), so no "
                        "longer used; remove it", config.newsletter.previous_key_days, until.isoformat())
        return (), None
    return (old,), until


def _retired_at(conn: Connection) -> datetime | None:
    at = store.meta_get(conn, RETIRED_AT)
    return aware(datetime.fromisoformat(at)) if at else None


def _until(config: Config, retired_at: datetime | None) -> datetime | None:
    return retired_at + timedelta(days=config.newsletter.previous_key_days) if retired_at else None
