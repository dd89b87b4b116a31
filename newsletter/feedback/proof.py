"""Proof that a notice is about mail the engine sent, and to whom.

A notice that arrives without a VERP token of ours on its envelope or its To: may still prove itself: a
DSN or an ARF report usually returns the original's headers, and those carry values only the engine
could have made for one recipient:

    quoted                                  proves                         how it is checked
    Message-ID: <128 random bits@…>         that one message (outbox row)  looked up (ix_outbox_message_id)
    bounces+r<row>-<sig>@… (Return-Path)    that one message               HMAC of the VERP token
    …/unsubscribe/<id>.<sig>, bounces+u…    that one subscriber            itsdangerous / HMAC signature

A failed recipient counts only where such a proof names that very address; every other address the
notice names is unproven and changes nothing (``ingest.Feedback``). An address alone proves nothing:
anyone can write a DSN naming anyone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import BadToken
from ..lifecycle import RowState
from ..links import PREFERENCES, UNSUBSCRIBE, Links
from ..store import tables as t

SCAN_BYTES = 1 << 20  # the returned headers come first; a quoted 20 MB attachment is not searched
MAX_QUOTES = 20       # proofs looked up per notice: a real one quotes one message; junk may quote thousands
T = TypeVar("T")
SENT_ROWS = (RowState.SENT, RowState.UNKNOWN, RowState.DEFERRED, RowState.FAILED)
_MESSAGE_ID = re.compile(rb"^(?:message-id|resent-message-id)[ \t]*:\s*(<[^<>\s@]{1,200}@[^<>\s]{1,200}>)",
                         re.IGNORECASE | re.MULTILINE)
_LINK = re.compile(rb"/(unsubscribe|preferences)/(\d{1,18}\.[A-Za-z0-9_\-]{10,100})")

_o, _b = t.outbox.c, t.bounce_log.c
_ROW_COLUMNS = (_o.id, _o.subscriber_id, _o.issue_id, _o.email, _o.state,
                sa.exists().where(_b.outbox_id == _o.id, _b.kind == sa.bindparam("kind"),
                                  _b.action.not_like("ignored%")).label("replayed"))
# Built once: building a statement costs more than SQLAlchemy's cached compile (bench/ingest.py)
ROW_BY_ID = sa.select(*_ROW_COLUMNS).where(_o.id == sa.bindparam("id"), _o.attempts > 0)
ROW_BY_MESSAGE_ID = sa.select(*_ROW_COLUMNS).where(_o.message_id == sa.bindparam("mid"), _o.attempts > 0).limit(1)
SUBSCRIBER = sa.select(t.subscribers.c.id, t.subscribers.c.email).where(t.subscribers.c.id == sa.bindparam("id"))


@dataclass(frozen=True)
class Row:
    """An outbox row a proof names, and whether a notice of this kind was counted for it already."""

    id: int
    subscriber_id: int | None
    issue_id: int
    email: str
    state: str
    replayed: bool

    @property
    def sent(self) -> bool:
        return self.state in SENT_ROWS


@dataclass(frozen=True)
class Proven:
    """A subscriber a proof names: the address the engine mailed, the message (when the proof names one)
    and how it was proven (``message-id``, ``verp``, ``signed-link``)."""

    subscriber_id: int | None
    email: str
    row: Row | None
    how: str


@dataclass(frozen=True)
class Quoted:
    """The engine-made values a notice quotes, not yet checked."""

    message_ids: tuple[str, ...]
    verp_tokens: tuple[str, ...]
    links: tuple[tuple[str, str], ...]  # (kind, token)

    def __bool__(self) -> bool:
        return bool(self.message_ids or self.verp_tokens or self.links)


def quoted(raw: bytes, verp_base: str) -> Quoted:
    """Every Message-ID header line, VERP address of ``verp_base`` and signed link in the first MiB of ``raw``."""
    data = raw[:SCAN_BYTES]
    mids = _unique(m.decode("ascii", "replace") for m in _MESSAGE_ID.findall(data))
    links = _unique((k.decode(), tok.decode()) for k, tok in _LINK.findall(data))
    return Quoted(mids, _verp_tokens(data, verp_base), links)


def _verp_tokens(data: bytes, base: str) -> tuple[str, ...]:
    local, _, domain = base.rpartition("@")
    if not local:
        return ()
    pattern = re.escape(local.encode()) + rb"\+([A-Za-z0-9\-]{3,40})@" + re.escape(domain.encode())
    return _unique(m.decode() for m in re.findall(pattern, data, re.IGNORECASE))


def _unique(items: Iterable[T]) -> tuple[T, ...]:
    return tuple(dict.fromkeys(items))[:MAX_QUOTES]


def resolve(conn: Connection, found: Quoted, links: Links, kind: str) -> list[Proven]:
    """The subscribers ``found`` proves, each once; a forged signature or an unknown Message-ID proves nothing.
    ``kind`` is the notice's verdict (bounce, complaint): a row's replay check is per kind."""
    proven = [_row_proof(conn.execute(ROW_BY_MESSAGE_ID, {"mid": mid, "kind": kind}).first(), "message-id")
              for mid in found.message_ids]
    for token in found.verp_tokens:
        proven.append(_verp_proof(conn, links, token, kind))
    for link_kind, token in found.links:
        proven.append(_link_proof(conn, links, link_kind, token))
    return _by_subscriber(p for p in proven if p is not None)


def row(conn: Connection, row_id: int, kind: str) -> Row | None:
    """The outbox row ``row_id`` with its replay check for notices of ``kind``; None if never attempted."""
    return _as_row(conn.execute(ROW_BY_ID, {"id": row_id, "kind": kind}).first())


def _as_row(found: sa.Row[Any] | None) -> Row | None:
    if found is None:
        return None
    rid, sid, iid, email, state, replayed = tuple(found)
    return Row(int(rid), None if sid is None else int(sid), int(iid), str(email), str(state), bool(replayed))


def _row_proof(found: sa.Row[Any] | None, how: str) -> Proven | None:
    made = _as_row(found)
    return Proven(made.subscriber_id, made.email, made, how) if made and made.sent else None


def _verp_proof(conn: Connection, links: Links, token: str, kind: str) -> Proven | None:
    try:
        verp_kind, ident = links.verify_verp(token)
    except BadToken:
        return None
    if verp_kind == "r":
        return _row_proof(conn.execute(ROW_BY_ID, {"id": ident, "kind": kind}).first(), "verp")
    return _subscriber_proof(conn, ident)


def _link_proof(conn: Connection, links: Links, link_kind: str, token: str) -> Proven | None:
    try:
        sid = links.verify(UNSUBSCRIBE if link_kind == "unsubscribe" else PREFERENCES, token)
    except BadToken:
        return None
    return _subscriber_proof(conn, sid)


def _subscriber_proof(conn: Connection, sid: int) -> Proven | None:
    found = conn.execute(SUBSCRIBER, {"id": sid}).first()
    return Proven(found.id, found.email, None, "signed-link") if found else None


def _by_subscriber(proven: Iterable[Proven]) -> list[Proven]:
    """One proof per address, a message's over a subscriber's (it names the issue too)."""
    best: dict[str, Proven] = {}
    for p in proven:
        key = p.email.casefold()
        if key not in best or (best[key].row is None and p.row is not None):
            best[key] = p
    return list(best.values())
