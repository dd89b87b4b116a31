"""One path behind every way a notice comes in (SMTP/LMTP, IMAP, files): classify, find whom it is
about, apply the policy, and log it.

    notice ─► classify ─► whom: the VERP token (envelope, then To/Delivered-To/X-Original-To), else
                                 the address the notice names, if we mailed it lately
            ─► policy:   hard bounce ─► bounced      soft ─► score      complaint ─► unsubscribed
                         auto-reply, not-bounce ─► nothing     unknown ─► kept for a person
                         mail to the List-Unsubscribe address ─► unsubscribed
            ─► bounce_log row (with the raw notice for [bounces] keep_raw_days)

Safety: a token that does not verify, a row the engine never sent, an address not mailed within
``RECENT`` and a replay of a notice already counted change nothing and are logged as such, so a
forged notice cannot suppress anyone.
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import audience
from ..clock import SYSTEM, Clock
from ..config import Config
from ..errors import BadToken
from ..lifecycle import RowState
from ..links import Links, links_for, verp_token_of
from ..store import tables as t
from .classify import Kind, Recipient, Verdict, classify

log = logging.getLogger("newsletter.feedback")
RECENT = timedelta(days=30)     # an address named without a token counts only if mailed this recently
RAW_MAX = 1 << 20               # the raw notice is kept up to 1 MiB (a 20 MB attachment is not)
TOKEN_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to")
SENT_ROWS = (RowState.SENT, RowState.UNKNOWN, RowState.DEFERRED, RowState.FAILED)
BATCH = 200                     # notices from files or IMAP stored per transaction
T = TypeVar("T")
Pair = tuple["Notice", Verdict]

_o, _b = t.outbox.c, t.bounce_log.c
# Built once: building a statement costs more than SQLAlchemy's cached compile (bench/ingest.py)
ROW = (sa.select(_o.id, _o.subscriber_id, _o.issue_id, _o.email, _o.state,
                 sa.exists().where(_b.outbox_id == _o.id, _b.kind == sa.bindparam("kind"),
                                   _b.action.not_like("ignored%")).label("replayed"))
       .where(_o.id == sa.bindparam("id"), _o.attempts > 0))
LOG = t.bounce_log.insert()


@dataclass(frozen=True)
class Notice:
    """One message in, from any source."""

    raw: bytes
    source: str                      # smtp, lmtp, imap:<folder>, a path (path#N for the Nth of an mbox)
    rcpts: tuple[str, ...] = ()      # envelope recipients, when the source knows them


@dataclass
class Handled:
    """What became of a notice: the JSON of ``bounces ingest --json`` and the log line."""

    source: str
    kind: str
    recipients: list[dict[str, Any]]
    actions: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "recipients": self.recipients}

    def line(self) -> str:
        """``source: kind: what was done``, as the log and the commands say it."""
        return f"{self.source}: {self.kind}" + (f": {'; '.join(self.actions)}" if self.actions else "")


def describe(notice: Notice, verdict: Verdict) -> Handled:
    recipients = [{"address": r.address, "class": r.klass, "status": r.status, "diagnostic": r.diagnostic}
                  for r in verdict.recipients]
    return Handled(notice.source, verdict.kind.value, recipients)


def judge(notice: Notice) -> Verdict:
    try:
        return classify(notice.raw)
    except Exception as exc:  # the classifier promises not to raise; if it does, a person looks
        log.exception("%s: the classifier failed", notice.source)
        return Verdict(Kind.UNKNOWN, (), f"classifier error: {type(exc).__name__}")


@dataclass(frozen=True)
class NotStored:
    """A notice the database refused (the rest of its batch was stored): it stays where it came from."""

    source: str
    reason: str


def _is_pair(item: object) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], Notice)


def _batched(items: Iterator[T], size: int) -> Iterator[list[T]]:
    while chunk := list(islice(items, size)):
        yield chunk


@dataclass(frozen=True)
class _Row:
    id: int
    subscriber_id: int | None
    issue_id: int
    email: str
    state: str


class Feedback:
    """Applies notices to the list; one per process, used by one thread at a time per connection."""

    def __init__(self, config: Config, engine: Engine, clock: Clock = SYSTEM, links: Links | None = None) -> None:
        self.config, self.engine, self.clock = config, engine, clock
        self.cfg = config.bounces
        self.links = links or links_for(config, engine)
        self.window = timedelta(days=self.cfg.soft_window_days)
        self._headers = email.parser.BytesHeaderParser(policy=email.policy.compat32)

    def handle(self, notice: Notice) -> Handled:
        """Classify and apply one notice in its own transaction."""
        with self.engine.begin() as conn:
            return self.apply(conn, notice)

    def handle_all(self, items: Iterable[Pair | T], batch: int = BATCH) -> Iterator[Handled | NotStored | T]:
        """Apply classified notices in transactions of up to ``batch`` (anything else passes through, in order).

        A batch that fails is rolled back and redone one notice per transaction, so only the notice at fault
        is left out: it comes back as ``NotStored`` with the reason, and the rest are stored.
        """
        for chunk in _batched(iter(items), batch):
            done: list[Handled | NotStored | T]
            try:
                with self.engine.begin() as conn:
                    done = [self.apply(conn, *cast(Pair, i)) if _is_pair(i) else cast(T, i) for i in chunk]
            except Exception:
                done = [self._alone(*cast(Pair, i)) if _is_pair(i) else cast(T, i) for i in chunk]
            yield from done

    def _alone(self, notice: Notice, verdict: Verdict) -> Handled | NotStored:
        try:
            with self.engine.begin() as conn:
                return self.apply(conn, notice, verdict)
        except Exception as exc:
            log.exception("%s: not stored", notice.source)
            return NotStored(notice.source, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")

    def apply(self, conn: Connection, notice: Notice, verdict: Verdict | None = None) -> Handled:
        """Apply one notice within ``conn``'s transaction (classifying it unless its verdict is given)."""
        verdict = verdict or judge(notice)
        done = describe(notice, verdict)
        now = self.clock.now()
        token = self._token(notice)
        row = None
        if token is None:
            self._by_address(conn, verdict, done, now)
        else:
            row = self._by_token(conn, token, verdict, done, now)
        self._log(conn, notice, verdict, done, row, now)
        log.info("%s", done.line())
        return done

    # --- whom it is about ----------------------------------------------------------------------

    def _token(self, notice: Notice) -> str | None:
        base = self.cfg.address
        if not base:
            return None
        for rcpt in notice.rcpts:
            if (token := verp_token_of(rcpt, base)) is not None:
                return token
        head = self._headers.parsebytes(notice.raw[:65536])
        for name in TOKEN_HEADERS:
            for value in head.get_all(name) or ():
                for address in str(value).replace(",", " ").split():
                    if (token := verp_token_of(address, base)) is not None:
                        return token
        return None

    def _by_token(self, conn: Connection, token: str, verdict: Verdict, done: Handled,
                  now: datetime) -> _Row | None:
        """Apply what the token names; the outbox row it names, when it names a sent one."""
        try:
            kind, ident = self.links.verify_verp(token)
        except BadToken:
            done.actions.append("ignored: its VERP token does not verify (forged or mangled)")
            return None
        if kind == "u":
            self._mailto_unsubscribe(conn, ident, verdict, done, now)
            return None
        row, replayed = self._row(conn, ident, verdict.kind)
        if row is None or row.state not in SENT_ROWS:
            done.actions.append(f"ignored: the engine never sent outbox row {ident}")
            return None
        if replayed:
            done.actions.append(f"ignored: a {verdict.kind.value} for outbox row {row.id} was counted already")
        else:
            self._apply(conn, row.subscriber_id, row.email, verdict, _worst(verdict), done, now)
        return row

    def _by_address(self, conn: Connection, verdict: Verdict, done: Handled, now: datetime) -> None:
        if verdict.kind not in (Kind.BOUNCE, Kind.COMPLAINT):
            done.actions.append("nothing to do")
            return
        strangers = []
        for failed in verdict.recipients:
            sub = self._recently_mailed(conn, failed.address, now)
            if sub is None:
                strangers.append(failed.address)
            else:
                self._apply(conn, sub[0], sub[1], verdict, failed, done, now)
        if strangers:
            shown = ", ".join(strangers[:3]) + (f" and {len(strangers) - 3} more" if len(strangers) > 3 else "")
            done.actions.append(f"ignored: {len(strangers)} not mailed in the last {RECENT.days} days: {shown}")

    # --- the policy ------------------------------------------------------------------------------

    def _apply(self, conn: Connection, sid: int | None, email_: str, verdict: Verdict, failed: Recipient | None,
               done: Handled, now: datetime) -> None:
        if sid is None:
            done.actions.append("ignored: the subscriber was erased")
            return
        if verdict.kind is Kind.COMPLAINT:
            changed = audience.complained(conn, sid, email_, now, f"complaint: {verdict.reason}")
            done.actions.append(f"subscriber {sid} unsubscribed and suppressed" if changed
                                else f"subscriber {sid} was not subscribed; suppressed")
        elif verdict.kind is Kind.BOUNCE and failed is not None and failed.hard:
            changed = audience.mark_bounced(conn, sid, now, _why(failed))
            done.actions.append(f"subscriber {sid} suppressed (hard bounce)" if changed
                                else f"subscriber {sid} was suppressed already")
        elif verdict.kind is Kind.BOUNCE and failed is not None:
            score, suppressed = audience.add_soft_bounce(conn, sid, now, self.window, self.cfg.soft_threshold,
                                                         _why(failed))
            done.actions.append(f"subscriber {sid} soft bounce score {score}/{self.cfg.soft_threshold}"
                                + (": suppressed" if suppressed else ""))
        else:
            done.actions.append(f"nothing to do ({verdict.kind.value})")

    def _mailto_unsubscribe(self, conn: Connection, sid: int, verdict: Verdict, done: Handled, now: datetime) -> None:
        if verdict.kind in (Kind.BOUNCE, Kind.AUTO_REPLY, Kind.COMPLAINT):
            done.actions.append(f"ignored: a {verdict.kind.value} sent to an unsubscribe address")
            return
        sub = audience.unsubscribe_id(conn, sid, now)
        done.kind = "unsubscribe"
        done.actions.append(f"subscriber {sid} unsubscribed (mail to its List-Unsubscribe address)" if sub
                            else f"ignored: no subscriber {sid}")

    # --- queries ---------------------------------------------------------------------------------

    def _row(self, conn: Connection, row_id: int, kind: Kind) -> tuple[_Row | None, bool]:
        """The sent outbox row a token names, and whether a notice of this kind was counted for it already."""
        found = conn.execute(ROW, {"id": row_id, "kind": kind.value}).first()
        return (_Row(*found[:5]), bool(found.replayed)) if found else (None, False)

    def _recently_mailed(self, conn: Connection, address: str, now: datetime) -> tuple[int, str] | None:
        """The subscriber an address names, if a message to it went out within ``RECENT``."""
        o, s = t.outbox.c, t.subscribers.c
        found = conn.execute(sa.select(s.id, s.email).join(t.outbox, o.subscriber_id == s.id)
                             .where(s.email_key == address.casefold(), o.sent_at >= now - RECENT).limit(1)).first()
        return (found.id, found.email) if found else None

    def _log(self, conn: Connection, notice: Notice, verdict: Verdict, done: Handled, row: _Row | None,
             now: datetime) -> None:
        first = verdict.recipients[0] if verdict.recipients else None
        recipient = (row.email if row else None) or (first.address if first else None)
        keep = self.cfg.keep_raw_days or (verdict.kind is Kind.UNKNOWN)
        days = self.cfg.keep_raw_days or 365.0
        conn.execute(LOG, dict(
            received_at=now, source=notice.source[:1000], kind=done.kind, recipient=recipient,
            domain=recipient.rpartition("@")[2].casefold() if recipient else None,
            **{"class": first.klass if first and verdict.kind is Kind.BOUNCE else None},
            status=first.status if first else None, diagnostic=first.diagnostic if first else None,
            subscriber_id=row.subscriber_id if row else None, issue_id=row.issue_id if row else None,
            outbox_id=row.id if row else None, action="; ".join(done.actions)[:2000] or "nothing to do",
            raw=notice.raw[:RAW_MAX] if keep else None, raw_until=now + timedelta(days=days) if keep else None))

    def expire_raw(self) -> int:
        """Forget raw notices past their keep date; how many."""
        b = t.bounce_log.c
        with self.engine.begin() as conn:
            return conn.execute(t.bounce_log.update().where(b.raw_until < self.clock.now())
                                .values(raw=None, raw_until=None)).rowcount


def _worst(verdict: Verdict) -> Recipient | None:
    """The recipient that decides a row's fate: a hard failure over a soft one."""
    return next((r for r in verdict.recipients if r.hard), verdict.recipients[0] if verdict.recipients else None)


def _why(failed: Recipient) -> str:
    return " ".join(p for p in (failed.status, failed.diagnostic) if p) or "no diagnostic given"
