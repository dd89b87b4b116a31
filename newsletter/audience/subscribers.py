"""Subscribers: add, choose areas, unsubscribe, erase, sign up on the web, and the suppression list.

The one owner of subscriber state. Addresses are normalized by email-validator and compared
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
import itertools
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import areas as area_names
from ..clock import utcnow
from ..errors import AudienceError
from ..store import keyset_pages, meta_secret
from ..store import tables as t

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
        source: str = "cli", status: str = "active", now: datetime | None = None) -> Subscriber:
    """Add one subscriber; an address already listed or on the suppression list is refused."""
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
    return found


def set_areas(conn: Connection, email: str, areas: str | Sequence[str], known: Sequence[str]) -> Subscriber:
    sub = _require(conn, email)
    try:
        chosen = parse_areas(areas, known)
    except _Rejected as exc:
        raise _user_error(exc, email) from None
    conn.execute(t.subscribers.update().where(t.subscribers.c.id == sub.id)
                 .values(areas=join_areas(chosen), updated_at=utcnow()))
    return _require(conn, email)


def set_name(conn: Connection, subscriber_id: int, name: str) -> None:
    try:
        clean = clean_name(name)
    except _Rejected as exc:
        raise AudienceError(f"name: {exc}") from None
    conn.execute(t.subscribers.update().where(t.subscribers.c.id == subscriber_id)
                 .values(name=clean, updated_at=utcnow()))


def unsubscribe(conn: Connection, email: str, now: datetime | None = None) -> Subscriber:
    sub = _require(conn, email)
    return unsubscribe_id(conn, sub.id, now) or sub


def unsubscribe_id(conn: Connection, subscriber_id: int, now: datetime | None = None) -> Subscriber | None:
    """Unsubscribe by id (the signed link carries the id); repeating it changes nothing."""
    now = now or utcnow()
    s = t.subscribers.c
    conn.execute(t.subscribers.update().where(s.id == subscriber_id, s.status.in_(("active", "pending")))
                 .values(status="unsubscribed", unsubscribed_at=now, updated_at=now))
    row = conn.execute(sa.select(t.subscribers).where(s.id == subscriber_id)).first()
    return _record(row) if row else None


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


def request_signup(conn: Connection, email: str, name: str, areas: str | Sequence[str], known: Sequence[str],
                   now: datetime | None = None) -> Subscriber | None:
    """A web sign-up: the subscriber to send a confirmation link to, or None to send nothing."""
    now = now or utcnow()
    address, clean, chosen = check_signup(email, name, areas, known)
    existing = get(conn, address)
    if existing is None:
        if is_suppressed(conn, address):
            return None
        return add(conn, address, clean, chosen, known, source="web", status="pending", now=now)
    if existing.status == "pending":
        conn.execute(t.subscribers.update().where(t.subscribers.c.id == existing.id)
                     .values(name=clean, areas=chosen, updated_at=now))
        return get_id(conn, existing.id)
    return existing if existing.status == "unsubscribed" else None


def confirm_id(conn: Connection, subscriber_id: int, now: datetime | None = None) -> Subscriber | None:
    """The owner proved the address (a confirmation or resubscribe link): pending/unsubscribed → active."""
    now = now or utcnow()
    s = t.subscribers.c
    conn.execute(t.subscribers.update().where(s.id == subscriber_id, s.status.in_(("pending", "unsubscribed")))
                 .values(status="active", confirmed_at=now, unsubscribed_at=None, updated_at=now))
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
    """Erase a subscriber: the row goes, the delivery log forgets the address, the hash stays."""
    now = now or utcnow()
    sub = _require(conn, email)
    o, a = t.outbox.c, t.delivery_attempts.c
    rows = sa.select(o.id).where(o.subscriber_id == sub.id).scalar_subquery()
    # an SMTP answer may quote the address ("550 <x@y>: user unknown"): strip it from the log too
    conn.execute(t.delivery_attempts.update().where(a.outbox_id.in_(rows))
                 .values(answer=sa.func.replace(a.answer, sub.email, "[erased]")))
    conn.execute(t.outbox.update().where(o.subscriber_id == sub.id).values(
        email="", name="", last_answer=sa.func.replace(o.last_answer, sub.email, "[erased]")))
    conn.execute(t.subscribers.delete().where(t.subscribers.c.id == sub.id))
    suppress(conn, sub.email, "erased", now)


# --- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    subscribers: list[Subscriber]
    matching: int                      # how many match the filters (the list may be truncated)
    by_status: dict[str, int]          # over the whole list
    by_area: dict[str, int]            # active subscribers who get each area in full


def listing(conn: Connection, known: Sequence[str], area: str | None = None, status: str | None = None,
            limit: int | None = 100, search: str | None = None) -> Listing:
    """The first ``limit`` matches (None: all) in id order, how many match, and the whole list's counts."""
    where = _filters(known, area, status, search)
    s = t.subscribers.c
    rows = conn.execute(sa.select(t.subscribers).where(*where).order_by(s.id).limit(limit)).all()
    matching = conn.scalar(sa.select(sa.func.count()).select_from(t.subscribers).where(*where)) or 0
    by_status = dict.fromkeys(t.SUBSCRIBER_STATUSES, 0)
    by_status.update(dict(conn.execute(sa.select(s.status, sa.func.count()).group_by(s.status)).all()))
    return Listing([_record(r) for r in rows], matching, by_status, _area_counts(conn, known))


def iter_listing(conn: Connection, known: Sequence[str], area: str | None = None, status: str | None = None,
                 limit: int | None = None, search: str | None = None, batch: int = 1000) -> Iterator[Subscriber]:
    """The same matches as ``listing``, streamed in keyset pages of ``batch`` (a million rows, flat memory)."""
    query = sa.select(t.subscribers).where(*_filters(known, area, status, search))
    size = batch if limit is None else max(1, min(batch, limit))
    rows = (row for page in keyset_pages(conn, query, t.subscribers.c.id, size) for row in page)
    yield from (_record(r) for r in itertools.islice(rows, limit))


def _filters(known: Sequence[str], area: str | None, status: str | None,
             search: str | None) -> list[sa.ColumnElement[bool]]:
    """The WHERE clauses of ``subscribers list``, shared by the page, its count and the stream.

    ``search`` is a substring of the address or the name, without regard to case: the address is
    matched on ``email_key`` (casefolded in Python, so exact for any script), the name through SQL
    ``lower()``, which SQLite applies to ASCII letters only (PostgreSQL to all). ``%`` and ``_`` in
    it are literal. A LIKE '%…%' reads every row: fine for a command a person runs.
    """
    s = t.subscribers.c
    where: list[sa.ColumnElement[bool]] = []
    if status:
        where.append(s.status == status)
    if area:
        try:
            chosen = parse_areas(area, known)
        except _Rejected as exc:
            raise AudienceError(f"--area: {exc}") from None
        if len(chosen) > 1:
            raise AudienceError(f"--area: one area at a time (got {area!r})")
        if chosen:  # '' (all areas) receives every area
            where.append(sa.or_(s.areas == "", (sa.literal(";") + s.areas + ";").contains(f";{chosen[0]};")))
    if search and search.strip():
        needle = search.strip()
        where.append(sa.or_(s.email_key.contains(needle.casefold(), autoescape=True),
                            sa.func.lower(s.name).contains(needle.lower(), autoescape=True)))
    return where


def _area_counts(conn: Connection, known: Sequence[str]) -> dict[str, int]:
    s = t.subscribers.c
    per_set = conn.execute(sa.select(s.areas, sa.func.count()).where(s.status == "active").group_by(s.areas)).all()
    counts = dict.fromkeys(known, 0)
    for areas, n in per_set:
        for area in split_areas(areas) or known:
            if area in counts:
                counts[area] += n
    return counts


def active_count(conn: Connection) -> int:
    return conn.scalar(sa.select(sa.func.count()).select_from(t.subscribers)
                       .where(t.subscribers.c.status == "active")) or 0
