"""Subscribers: add, choose areas, unsubscribe, block, erase, sign up on the web, and the suppression list.

The one owner of subscriber state; every change of a status goes through ``events.change_status`` with its cause,
which the console shows as the subscriber's history. Addresses are normalized by email-validator and compared
casefolded (``email_key``), so ``Ada@Example.org`` and ``ada@example.org`` are one subscriber.

Suppression: erasing a subscriber removes every personal field and keeps only an HMAC-SHA256 of the
casefolded address, keyed by a random secret kept in the database, so a later import can recognise
the address without the list holding it. Unsubscribed, bounced and blocked subscribers keep their
row and status; an import never turns any of them, nor a suppressed address, back to active.

International addresses are kept as email-validator normalizes them (a Unicode domain, NFC). One
whose domain alone is not ASCII can always be delivered (the domain goes out as IDNA when the relay
lacks SMTPUTF8); one whose local part is not ASCII only through a relay offering SMTPUTF8, which
``needs_smtputf8`` tells, so the commands can say so when they accept one.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import areas as area_names
from ..clock import aware, utcnow
from ..errors import AudienceError
from ..store import meta_secret
from ..store import tables as t
from . import events

NAME_MAX = 200
LOCAL_PART_MAX = 64  # octets before the @-sign (RFC 5321 4.5.3.1.1)
INACTIVE = ("unsubscribed", "bounced", "blocked")


class _Rejected(ValueError):
    """One bad value in one row; its message is the reason shown next to the line number."""


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str
    areas: tuple[str, ...]  # () = all areas
    status: str
    source: str
    created_at: datetime
    confirmed_at: datetime | None
    unsubscribed_at: datetime | None

    def as_json(self) -> dict[str, object]:
        """For scripts (``subscribers list --json``, the API): areas as a list (``[]`` = all areas), times in
        ISO 8601 UTC or None."""
        return {"email": self.email, "name": self.name, "areas": list(self.areas), "status": self.status,
                "source": self.source, "created_at": _iso(self.created_at), "confirmed_at": _iso(self.confirmed_at),
                "unsubscribed_at": _iso(self.unsubscribed_at)}


def _iso(at: datetime | None) -> str | None:
    """ISO 8601 with its UTC offset: SQLite gives the stored UTC time back naive, PostgreSQL aware."""
    return None if at is None else aware(at).astimezone(UTC).isoformat()


# --- values ------------------------------------------------------------------------------------


def normalize_email(raw: str, *, new: bool = True) -> str:
    """The address as email-validator normalizes it (domain lowercased, IDNA, Unicode NFC).

    The one check of every address that comes in (``subscribers add``, ``import``, the web sign-up,
    ``send --test-to``). A ``new`` address must also fit RFC 5321's 64 octets before the @-sign,
    which email-validator checks only in strict mode and words without the limit; a lookup of one
    already listed (``new=False``) does not, so an address stored before the rule can still be erased.
    """
    # imported here: with dnspython it costs 60 ms, which `send` and `schedule` never need
    from email_validator import EmailNotValidError, validate_email

    text = raw.strip()
    try:
        address = validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise _Rejected(f"invalid address {text!r}: {_reason(text, str(exc))}") from None
    local = address.rpartition("@")[0]
    if new and len(local.encode()) > LOCAL_PART_MAX:
        size = f"{len(local)} characters" if local.isascii() else f"{len(local.encode())} bytes (UTF-8)"
        raise _Rejected(f"invalid address {text!r}: the part before the @-sign is {size} long; "
                        f"RFC 5321 allows at most {LOCAL_PART_MAX}")
    return address


def _reason(text: str, said: str) -> str:
    """email-validator's reason, except where it names the wrong culprit.

    A lone ``"`` opens a quoted string that swallows the @-sign, so ``quote"d@example.org`` is
    told it "must have an @-sign"; the quote is what is wrong (and quoted local parts are refused).
    """
    if "must have an @-sign" in said and '"' in text.rpartition("@")[0]:
        return 'a double quote (") is not allowed in an address'
    return said


def email_key(email: str) -> str:
    return email.casefold()


def clean_name(raw: str) -> str:
    """A display name: no control characters (CR/LF would reach a header), at most NAME_MAX long."""
    name = raw.strip()
    bad = next((ch for ch in name if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise _Rejected(f"name holds a control character (U+{ord(bad):04X})")
    if len(name) > NAME_MAX:
        raise _Rejected(f"name longer than {NAME_MAX} characters")
    return name


def needs_smtputf8(address: str) -> bool:
    """Only a relay offering SMTPUTF8 can deliver to a non-ASCII local part (a domain has IDNA)."""
    return not address.rpartition("@")[0].isascii()


def parse_areas(raw: str | Iterable[str], known: Sequence[str]) -> tuple[str, ...]:
    """``"LLM;rl"`` → ``("LLM", "RL")`` (``areas.parse``), an unknown name as this row's reason."""
    try:
        return area_names.parse(raw, known)
    except area_names.UnknownArea as exc:
        raise _Rejected(str(exc)) from None


join_areas, split_areas = area_names.join, area_names.split


def _record(row: sa.Row[Any]) -> Subscriber:
    return Subscriber(row.id, row.email, row.name, split_areas(row.areas), row.status, row.source,
                      row.created_at, row.confirmed_at, row.unsubscribed_at)


def _user_error(exc: _Rejected, email: str) -> AudienceError:
    return AudienceError(f"{email}: {exc}")


# --- suppression -------------------------------------------------------------------------------


def address_hash(conn: Connection, email: str) -> str:
    key = meta_secret(conn, "suppression_key").encode()
    return hmac.new(key, email_key(email).encode(), hashlib.sha256).hexdigest()


def suppressed_hashes(conn: Connection, hashes: Sequence[str]) -> set[str]:
    s = t.suppressions.c
    return set(conn.scalars(sa.select(s.address_hash).where(s.address_hash.in_(hashes))))


def is_suppressed(conn: Connection, email: str) -> bool:
    return bool(suppressed_hashes(conn, [address_hash(conn, email)]))


def suppress(conn: Connection, email: str, reason: str, now: datetime) -> None:
    digest = address_hash(conn, email)
    if not suppressed_hashes(conn, [digest]):
        conn.execute(t.suppressions.insert().values(address_hash=digest, reason=reason, created_at=now))


# --- one subscriber ----------------------------------------------------------------------------


def get(conn: Connection, email: str) -> Subscriber | None:
    try:
        key = email_key(normalize_email(email, new=False))
    except _Rejected as exc:
        raise _user_error(exc, email) from None
    row = conn.execute(sa.select(t.subscribers).where(t.subscribers.c.email_key == key)).first()
    return _record(row) if row else None


def _require(conn: Connection, email: str) -> Subscriber:
    found = get(conn, email)
    if found is None:
        raise AudienceError(f"{email}: not on the list")
    return found


def add(conn: Connection, email: str, name: str, areas: str | Sequence[str], known: Sequence[str],
        source: str = "cli", status: str = "active", now: datetime | None = None, cause: str = "") -> Subscriber:
    """Add one subscriber; an address already listed or on the suppression list is refused.

    ``source`` is where it came from (``cli``: an operator by hand, through the CLI, the console or the API);
    ``cause`` is its first event (``added by user:ada``).
    """
    now = now or utcnow()
    try:
        address, clean, chosen = normalize_email(email), clean_name(name), parse_areas(areas, known)
    except _Rejected as exc:
        raise _user_error(exc, email) from None
    existing = get(conn, address)
    if existing is not None:
        raise AudienceError(f"{address}: already on the list (status {existing.status})")
    if is_suppressed(conn, address):
        raise AudienceError(f"{address}: on the suppression list (erased or unsubscribed earlier); not added")
    conn.execute(t.subscribers.insert().values(
        email=address, email_key=email_key(address), name=clean, areas=join_areas(chosen), status=status,
        source=source, created_at=now, updated_at=now, confirmed_at=now if status == "active" else None))
    found = get(conn, address)
    assert found is not None
    events.note(conn, found.id, status, cause or f"added ({source})", now)
    return found


def set_areas(conn: Connection, email: str, areas: str | Sequence[str], known: Sequence[str]) -> Subscriber:
    return set_areas_id(conn, _require(conn, email).id, areas, known)


def set_areas_id(conn: Connection, subscriber_id: int, areas: str | Sequence[str], known: Sequence[str]) -> Subscriber:
    """Choose the areas (``()`` or ``''``: all of them); the next send groups the subscriber by them."""
    sub = _require_id(conn, subscriber_id)
    try:
        chosen = parse_areas(areas, known)
    except _Rejected as exc:
        raise _user_error(exc, sub.email) from None
    conn.execute(t.subscribers.update().where(t.subscribers.c.id == sub.id)
                 .values(areas=join_areas(chosen), updated_at=utcnow()))
    return _require_id(conn, sub.id)


def set_name(conn: Connection, subscriber_id: int, name: str) -> None:
    try:
        clean = clean_name(name)
    except _Rejected as exc:
        raise AudienceError(f"name: {exc}") from None
    conn.execute(t.subscribers.update().where(t.subscribers.c.id == subscriber_id)
                 .values(name=clean, updated_at=utcnow()))


def unsubscribe(conn: Connection, email: str, now: datetime | None = None,
                cause: str = "unsubscribed by cli") -> Subscriber:
    sub = _require(conn, email)
    return unsubscribe_id(conn, sub.id, now, cause) or sub


def unsubscribe_id(conn: Connection, subscriber_id: int, now: datetime | None = None,
                   cause: str = "unsubscribed with the link in a message") -> Subscriber | None:
    """Unsubscribe by id (the signed link carries the id); repeating it changes nothing."""
    now = now or utcnow()
    events.change_status(conn, subscriber_id, "unsubscribed", cause, now, only_from=("active", "pending"),
                         unsubscribed_at=now)
    return get_id(conn, subscriber_id)


def unsubscribe_by_operator(conn: Connection, subscriber_id: int, cause: str,
                            now: datetime | None = None) -> Subscriber:
    """The console's and the API's unsubscribe: by id, an unknown id an error; repeating it changes nothing."""
    found = unsubscribe_id(conn, _require_id(conn, subscriber_id).id, now, cause)
    assert found is not None
    return found


def block(conn: Connection, subscriber_id: int, cause: str, now: datetime | None = None) -> Subscriber:
    """An operator's block: never mailed, never reactivated by an import, a sign-up or a link, until unblocked."""
    sub = _require_id(conn, subscriber_id)
    if sub.status == "blocked":
        raise AudienceError(f"{sub.email}: blocked already")
    events.change_status(conn, sub.id, "blocked", cause, now or utcnow(), only_from=(sub.status,))
    return _require_id(conn, subscriber_id)


def unblock(conn: Connection, subscriber_id: int, cause: str, now: datetime | None = None) -> Subscriber:
    """Lift a block: the subscriber gets back the status it had before it (``events.status_before_block``)."""
    sub = _require_id(conn, subscriber_id)
    if sub.status != "blocked":
        raise AudienceError(f"{sub.email}: not blocked (status {sub.status})")
    events.change_status(conn, sub.id, events.status_before_block(conn, sub.id), cause, now or utcnow(),
                         only_from=("blocked",))
    return _require_id(conn, subscriber_id)


# --- web sign-up (double opt-in) and the signed links ----------------------------------------------
#
# The rule: only a confirmed address becomes active. A sign-up makes a new address ``pending``; an
# unsubscribed address stays unsubscribed until its owner confirms (then its old name and areas
# come back). Active, bounced and blocked addresses and erased ones (suppression list) get no
# email at all, and the visitor sees the same page whatever the case, so the form reveals nothing.


def check_signup(email: str, name: str, areas: str | Sequence[str], known: Sequence[str]) -> tuple[str, str, str]:
    """(address, name, ';'-joined areas) from a sign-up form, or AudienceError naming the field."""
    try:
        return normalize_email(email), clean_name(name), join_areas(parse_areas(areas, known))
    except _Rejected as exc:
        raise AudienceError(str(exc)) from None


def get_id(conn: Connection, subscriber_id: int) -> Subscriber | None:
    row = conn.execute(sa.select(t.subscribers).where(t.subscribers.c.id == subscriber_id)).first()
    return _record(row) if row else None


def _require_id(conn: Connection, subscriber_id: int) -> Subscriber:
    found = get_id(conn, subscriber_id)
    if found is None:
        raise AudienceError(f"no subscriber #{subscriber_id}")
    return found


def request_signup(conn: Connection, email: str, name: str, areas: str | Sequence[str], known: Sequence[str],
                   now: datetime | None = None) -> Subscriber | None:
    """A web sign-up: the subscriber to send a confirmation link to, or None to send nothing."""
    now = now or utcnow()
    address, clean, chosen = check_signup(email, name, areas, known)
    existing = get(conn, address)
    if existing is None:
        if is_suppressed(conn, address):
            return None
        return add(conn, address, clean, chosen, known, source="web", status="pending", now=now,
                   cause="signed up on the web; waiting for the confirmation link")
    if existing.status == "pending":
        conn.execute(t.subscribers.update().where(t.subscribers.c.id == existing.id)
                     .values(name=clean, areas=chosen, updated_at=now))
        return get_id(conn, existing.id)
    return existing if existing.status == "unsubscribed" else None


def confirm_id(conn: Connection, subscriber_id: int, now: datetime | None = None,
               cause: str = "confirmed with the link in the confirmation email") -> Subscriber | None:
    """The owner proved the address (a confirmation or resubscribe link): pending/unsubscribed → active."""
    now = now or utcnow()
    events.change_status(conn, subscriber_id, "active", cause, now, only_from=("pending", "unsubscribed"),
                         confirmed_at=now, unsubscribed_at=None)
    return get_id(conn, subscriber_id)


def set_preferences(conn: Connection, subscriber_id: int, name: str, areas: str | Sequence[str],
                    known: Sequence[str]) -> Subscriber | None:
    """Name and areas from the preferences page; the next send groups the subscriber by them."""
    try:
        clean, chosen = clean_name(name), join_areas(parse_areas(areas, known))
    except _Rejected as exc:
        raise AudienceError(str(exc)) from None
    conn.execute(t.subscribers.update().where(t.subscribers.c.id == subscriber_id)
                 .values(name=clean, areas=chosen, updated_at=utcnow()))
    return get_id(conn, subscriber_id)


def delete(conn: Connection, email: str, now: datetime | None = None) -> None:
    """Erase a subscriber by address (``subscribers delete``)."""
    erase(conn, _require(conn, email), now)


def delete_id(conn: Connection, subscriber_id: int, now: datetime | None = None) -> Subscriber:
    """Erase a subscriber by id (the console, the API); the record as it was, for the caller's message."""
    sub = _require_id(conn, subscriber_id)
    erase(conn, sub, now)
    return sub


def erase(conn: Connection, sub: Subscriber, now: datetime | None = None) -> None:
    """Erase a subscriber: the row and its history go, the delivery and bounce logs forget the address, the
    audit log's lines name it no more, and the hash stays on the suppression list."""
    now = now or utcnow()
    o, a, b, log = t.outbox.c, t.delivery_attempts.c, t.bounce_log.c, t.audit_log.c
    rows = sa.select(o.id).where(o.subscriber_id == sub.id).scalar_subquery()
    # an SMTP answer may quote the address ("550 <x@y>: user unknown"): strip it from the log too
    conn.execute(t.delivery_attempts.update().where(a.outbox_id.in_(rows))
                 .values(answer=sa.func.replace(a.answer, sub.email, "[erased]")))
    conn.execute(t.outbox.update().where(o.subscriber_id == sub.id).values(
        email="", name="", last_answer=sa.func.replace(o.last_answer, sub.email, "[erased]")))
    named = sa.or_(b.subscriber_id == sub.id, sa.func.lower(b.recipient) == sub.email.lower())  # unproven ones too
    conn.execute(t.bounce_log.update().where(named).values(
        recipient=None, raw=None, raw_until=None, diagnostic=sa.func.replace(b.diagnostic, sub.email, "[erased]")))
    conn.execute(t.audit_log.update().where(sa.func.lower(log.target) == sub.email.lower())
                 .values(target=f"subscriber #{sub.id} (erased)"))
    conn.execute(t.subscribers.delete().where(t.subscribers.c.id == sub.id))
    suppress(conn, sub.email, "erased", now)
