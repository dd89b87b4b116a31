"""Who may use the operator's console and its API: users with a role, their passwords, sessions and lock-out,
and the API's bearer tokens. The web console, the JSON API and ``newsletter admin`` all call these.

Roles are ranked, each allowed what the ones before it are:

    editor    preview, test copies, approve
    operator  + sends (pause, resume, cancel), subscribers, bounces
    admin     + users and API tokens

Passwords are hashed with Argon2id (argon2-cffi's defaults, RFC 9106's second recommendation). After
``MAX_FAILURES`` wrong passwords in a row an account is locked for ``LOCK_FOR``, whoever asks; a right
password then still fails until the lock ends, so guessing gains nothing. ``session_epoch`` is in every
session cookie: bumping it ends every session of the user at once ("log out everywhere").

An API token is 256 random bits shown once; the database keeps its SHA-256 only (a token is not a password a
person chose: a fast hash of it is as strong as the token, and a lookup by hash stays one index read).
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection

from .clock import aware
from .errors import AccountError
from .store import tables as t

ROLES = t.ROLES
MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)
MIN_PASSWORD = 12
TOKEN_PREFIX = "nl_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_hasher = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """A hash to verify against when the name is unknown, so a wrong name costs the time a wrong password does.
    Made on first use, not at import: hashing costs 0.12 s, and every CLI command imports this module."""
    return _hasher.hash(secrets.token_hex(16))


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    session_epoch: int
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    role: str
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (roles are ranked)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    return role


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise AccountError(f"name: {name!r}: letters, digits and . _ @ - only, at most 64, not starting with one of "
                           "those signs")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    return password


# --- users ---------------------------------------------------------------------------------------------------


def add_user(conn: Connection, name: str, role: str, password: str, now: datetime) -> User:
    """A new console user; ``AccountError`` (one line) for a taken name, a bad role or a short password."""
    check_name(name), check_role(role), check_password(password)
    if conn.scalar(sa.select(t.users.c.id).where(t.users.c.name == name)) is not None:
        raise AccountError(f"user {name!r} exists already")
    made = conn.execute(t.users.insert().values(name=name, role=role, password_hash=_hasher.hash(password),
                                                created_at=now))
    uid = made.inserted_primary_key[0] if made.inserted_primary_key else 0
    return User(int(uid), name, role, 0)


def users(conn: Connection) -> list[User]:
    u = t.users.c
    return [_user(r) for r in conn.execute(sa.select(u.id, u.name, u.role, u.session_epoch, u.locked_until)
                                           .order_by(u.name))]


def user(conn: Connection, uid: int) -> User | None:
    u = t.users.c
    found = conn.execute(sa.select(u.id, u.name, u.role, u.session_epoch, u.locked_until).where(u.id == uid)).first()
    return _user(found) if found else None


def _user(row: Any) -> User:
    return User(row[0], row[1], row[2], row[3], aware(row[4]) if row[4] else None)


def by_name(conn: Connection, name: str) -> User:
    found = conn.scalar(sa.select(t.users.c.id).where(t.users.c.name == name))
    if found is None:
        raise AccountError(f"no user {name!r}")
    result = user(conn, found)
    assert result is not None
    return result


def authenticate(conn: Connection, name: str, password: str, now: datetime) -> User | str:
    """The user whose name and password these are, or the one-line refusal (never saying which was wrong).
    Returned, not raised: the failure count it writes must be committed with the refusal."""
    u = t.users.c
    row = conn.execute(sa.select(u.id, u.password_hash, u.failed_logins, u.locked_until)
                       .where(u.name == name)).first()
    if row is None:
        _verify(_dummy(), password)
        return "wrong name or password"
    if row.locked_until is not None and aware(row.locked_until) > now:
        return f"this account is locked until {aware(row.locked_until):%H:%M} UTC after {MAX_FAILURES} wrong passwords"
    if not _verify(row.password_hash, password):
        failures = row.failed_logins + 1
        locked = now + LOCK_FOR if failures >= MAX_FAILURES else None
        conn.execute(t.users.update().where(u.id == row.id).values(
            failed_logins=0 if locked else failures, locked_until=locked))
        return "wrong name or password"
    if row.failed_logins or row.locked_until is not None:
        conn.execute(t.users.update().where(u.id == row.id).values(failed_logins=0, locked_until=None))
    found = user(conn, row.id)
    assert found is not None
    return found


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def set_password(conn: Connection, uid: int, password: str) -> None:
    """A new password; every session of the user ends (its epoch moves)."""
    check_password(password)
    u = t.users.c
    conn.execute(t.users.update().where(u.id == uid).values(
        password_hash=_hasher.hash(password), session_epoch=u.session_epoch + 1, failed_logins=0, locked_until=None))


def set_role(conn: Connection, uid: int, role: str) -> None:
    check_role(role)
    u = t.users.c
    conn.execute(t.users.update().where(u.id == uid).values(role=role, session_epoch=u.session_epoch + 1))


def end_sessions(conn: Connection, uid: int) -> None:
    """Log out everywhere: every session cookie of the user stops working."""
    u = t.users.c
    conn.execute(t.users.update().where(u.id == uid).values(session_epoch=u.session_epoch + 1))


def remove_user(conn: Connection, uid: int) -> None:
    admins = conn.scalar(sa.select(sa.func.count()).where(t.users.c.role == "admin", t.users.c.id != uid))
    target = user(conn, uid)
    if target is not None and target.role == "admin" and not admins:
        raise AccountError(f"{target.name} is the last admin: make another admin first")
    conn.execute(t.users.delete().where(t.users.c.id == uid))


# --- API tokens ----------------------------------------------------------------------------------------------


def create_token(conn: Connection, name: str, role: str, created_by: str, now: datetime) -> tuple[Token, str]:
    """A new bearer token: its record and the token itself, shown this once (the database keeps its hash)."""
    check_role(role)
    if not name.strip() or len(name) > 64:
        raise AccountError("token name: 1 to 64 characters")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    made = conn.execute(t.api_tokens.insert().values(
        name=name.strip(), token_hash=_token_hash(secret), role=role, created_by=created_by, created_at=now))
    tid = made.inserted_primary_key[0] if made.inserted_primary_key else 0
    return Token(int(tid), name.strip(), role, created_by, now, None, None), secret


def tokens(conn: Connection) -> list[Token]:
    k = t.api_tokens.c
    rows = conn.execute(sa.select(k.id, k.name, k.role, k.created_by, k.created_at, k.last_used_at, k.revoked_at)
                        .order_by(k.id))
    return [Token(r[0], r[1], r[2], r[3], aware(r[4]), aware(r[5]) if r[5] else None, aware(r[6]) if r[6] else None)
            for r in rows]


def token_for(conn: Connection, secret: str, now: datetime) -> Token | None:
    """The live token ``secret`` is (its use noted), or None: unknown, revoked, or not a token at all."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 100:
        return None
    k = t.api_tokens.c
    row = conn.execute(sa.select(k.id, k.name, k.role, k.created_by, k.created_at, k.last_used_at)
                       .where(k.token_hash == _token_hash(secret), k.revoked_at.is_(None))).first()
    if row is None:
        return None
    conn.execute(t.api_tokens.update().where(k.id == row.id).values(last_used_at=now))
    return Token(row[0], row[1], row[2], row[3], aware(row[4]), now, None)


def revoke_token(conn: Connection, tid: int, now: datetime) -> None:
    k = t.api_tokens.c
    if not conn.execute(t.api_tokens.update().where(k.id == tid, k.revoked_at.is_(None))
                        .values(revoked_at=now)).rowcount:
        raise AccountError(f"no live token #{tid}")


def _token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
