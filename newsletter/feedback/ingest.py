"""One path behind every way a notice comes in (SMTP/LMTP, IMAP, files): classify, find whom it is
about, check the proof, apply the policy, and log it.

    notice ─► classify ─► whom: the VERP token (envelope, then To/Delivered-To/X-Original-To), else
                                 the recipients whose proof the notice quotes (``proof.py``: a Message-ID,
                                 a VERP address or a signed link the engine sent to that very address)
            ─► policy:   hard bounce ─► bounced      soft ─► score      complaint ─► unsubscribed
                         auto-reply, not-bounce ─► nothing     unknown ─► kept for a person
                         mail to the List-Unsubscribe address ─► unsubscribed
            ─► bounce_log row (its proof, and the raw notice for [bounces] keep_raw_days)

Proof before action: an address named without proof (a hand-written DSN, an ARF report, an Exim
X-Failed-Recipients, a notice listing a thousand addresses) changes nobody; it is logged as
``unproven`` (bounce_log.proof = 'none', a warning in the log, ``bounces report``) for a person. A token
that does not verify, a row the engine never sent and a replay of a notice already counted change
nothing either and are logged as ``ignored``.
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
from ..links import Links, links_for, verp_token_of
from ..store import tables as t
from ..store.oncursor import OnCursor
from . import mime, proof
from .classify import Kind, Recipient, Verdict, classify

log = logging.getLogger("newsletter.feedback")
RAW_MAX = 1 << 20               # a proven notice's raw text is kept up to 1 MiB (a 20 MB attachment is not)
RAW_MAX_UNPROVEN = 64 << 10     # anything else up to 64 KiB: enough for a person to read, little for junk to fill
UNPROVEN = "none"               # bounce_log.proof of a notice that named someone without proof
TOKEN_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to")
BATCH = 200                     # notices from files or IMAP stored per transaction
T = TypeVar("T")
Pair = tuple["Notice", Verdict]

# Run on the DBAPI cursor (store/oncursor.py): a notice's insert took 30 µs through Core, 18 µs this way (SQLite)
LOG = OnCursor(t.bounce_log.insert().values({c: sa.bindparam(c.name) for c in t.bounce_log.c if c.name != "id"}),
               wrap_errors=True)
NOTHING_QUOTED = proof.Quoted((), (), ())


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
    recipients = [{"address": r.address, "class": r.klass, "reason": r.reason, "status": r.status,
                   "diagnostic": r.diagnostic} for r in verdict.recipients]
    return Handled(notice.source, verdict.kind.value, recipients)


def judge(notice: Notice) -> Verdict:
    try:
        return classify(notice.raw)
    except Exception as exc:  # the classifier promises not to raise; if it does, a person looks
        log.exception("%s: the classifier failed", notice.source)
        return Verdict(Kind.UNKNOWN, (), f"classifier error: {type(exc).__name__}")  # classify.UNREADABLE


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


class Feedback:
    """Applies notices to the list; one per process, used by one thread at a time per connection."""

    def __init__(self, config: Config, engine: Engine, clock: Clock = SYSTEM, links: Links | None = None) -> None:
        self.config, self.engine, self.clock = config, engine, clock
        self.cfg = config.bounces
        self.links = links or links_for(config, engine)
        self.window = timedelta(days=self.cfg.soft_window_days)
        self._headers = email.parser.BytesHeaderParser(policy=email.policy.compat32)
        self._raw_day, self._raw_spent = self.clock.now().date(), 0

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
        token = self._token(notice)
        if token is not None:
            return self._settle(conn, notice, verdict, token, NOTHING_QUOTED)
        found = proof.quoted(notice.raw, self.cfg.address) if _about_someone(verdict) else NOTHING_QUOTED
        return self._settle(conn, notice, verdict, None, found)

    def apply_proofs(self, conn: Connection, notice: Notice, verdict: Verdict, found: proof.Quoted) -> Handled:
        """Apply a verdict reached elsewhere with the proofs that came with it, within ``conn``'s transaction.

        A provider's webhook (``providers/``) has no mail to classify or scan: its verified notification names the
        recipients and echoes the Message-ID (or VERP address, signed link) it was given. Those proofs go through the
        very rule a mailed notice's quotes do (``_by_quote``): a recipient counts only where a proof names that very
        address; everyone else named is logged unproven and changes nothing."""
        return self._settle(conn, notice, verdict, None, found)

    def _settle(self, conn: Connection, notice: Notice, verdict: Verdict, token: str | None,
                found: proof.Quoted) -> Handled:
        done = describe(notice, verdict)
        now = self.clock.now()
        if token is None:
            row, how = self._by_quote(conn, found, verdict, done, now)
        else:
            row, how = self._by_token(conn, token, verdict, done, now)
        self._log(conn, notice, verdict, done, row, how, now)
        log.log(logging.WARNING if how == UNPROVEN else logging.INFO, "%s", done.line())
        return done

    # --- whom it is about ----------------------------------------------------------------------

    def _token(self, notice: Notice) -> str | None:
        base = self.cfg.address
        if not base:
            return None
        for rcpt in notice.rcpts:
            if (token := verp_token_of(rcpt, base)) is not None:
                return token
        head = self._headers.parsebytes(mime.headed(notice.raw[:65536]))
        for name in TOKEN_HEADERS:
            for value in head.get_all(name) or ():
                for address in str(value).replace(",", " ").split():
                    if (token := verp_token_of(address, base)) is not None:
                        return token
        return None

    def _by_token(self, conn: Connection, token: str, verdict: Verdict, done: Handled,
                  now: datetime) -> tuple[proof.Row | None, str | None]:
        """Apply what the token names; the outbox row it names, when it names a sent one, and the proof."""
        try:
            kind, ident = self.links.verify_verp(token)
        except BadToken:
            done.actions.append("ignored: its VERP token does not verify (forged or mangled)")
            return None, None
        if kind == "u":
            self._mailto_unsubscribe(conn, ident, verdict, done, now)
            return None, "verp"
        row = proof.row(conn, ident, verdict.kind.value)
        if row is None or not row.sent:
            done.actions.append(f"ignored: the engine never sent outbox row {ident}")
            return None, None
        if row.replayed:
            done.actions.append(f"ignored: a {verdict.kind.value} for outbox row {row.id} was counted already")
        else:
            self._apply(conn, row.subscriber_id, row.email, verdict, _worst(verdict), done, now)
        return row, "verp"

    def _by_quote(self, conn: Connection, found: proof.Quoted, verdict: Verdict, done: Handled,
                  now: datetime) -> tuple[proof.Row | None, str | None]:
        """A notice without a token acts only for the recipients whose proof it quotes (``proof.py``)."""
        if not _about_someone(verdict):
            done.actions.append("nothing to do")
            return None, None
        proven = proof.resolve(conn, found, self.links, verdict.kind.value)
        matched, unproven = _match(verdict, proven)
        first: proof.Proven | None = None
        for who, failed in matched:
            if who.row is not None and who.row.replayed:
                done.actions.append(f"ignored: a {verdict.kind.value} for outbox row {who.row.id} was counted already")
                continue
            self._apply(conn, who.subscriber_id, who.email, verdict, failed, done, now)
            first = first or who
        if unproven or not matched:
            done.actions.append(_unproven(unproven))
        return (first.row if first else None), (first.how if first else UNPROVEN if not matched else None)

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
        sub = audience.unsubscribe_id(conn, sid, now, "mail to its List-Unsubscribe address")
        done.kind = "unsubscribe"
        done.actions.append(f"subscriber {sid} unsubscribed (mail to its List-Unsubscribe address)" if sub
                            else f"ignored: no subscriber {sid}")

    # --- queries ---------------------------------------------------------------------------------

    def _log(self, conn: Connection, notice: Notice, verdict: Verdict, done: Handled, row: proof.Row | None,
             how: str | None, now: datetime) -> None:
        first = verdict.recipients[0] if verdict.recipients else None
        recipient = (row.email if row else None) or (first.address if first else None)
        raw = self._keep_raw(notice, how, done)
        LOG.run(conn, dict(
            received_at=now, source=notice.source[:1000], kind=done.kind, recipient=recipient,
            domain=recipient.rpartition("@")[2].casefold() if recipient else None,
            **{"class": first.klass if first and verdict.kind is Kind.BOUNCE else None},
            status=first.status if first else None, diagnostic=first.diagnostic if first else None,
            reason=first.reason if first else None,
            subscriber_id=row.subscriber_id if row else None, issue_id=row.issue_id if row else None,
            outbox_id=row.id if row else None, action="; ".join(done.actions)[:2000] or "nothing to do", proof=how,
            raw=raw, raw_until=now + timedelta(days=self.cfg.keep_raw_days) if raw is not None else None))

    def _keep_raw(self, notice: Notice, how: str | None, done: Handled) -> bytes | None:
        """The raw text to keep: none at ``keep_raw_days = 0``; a proven notice's first MiB, anything else's first
        64 KiB; and none once this process kept ``raw_bytes_per_day`` today (junk cannot fill the database)."""
        if not self.cfg.keep_raw_days:
            return None
        raw = notice.raw[:RAW_MAX if how not in (None, UNPROVEN) else RAW_MAX_UNPROVEN]
        today = self.clock.now().date()
        if today != self._raw_day:
            self._raw_day, self._raw_spent = today, 0
        if self._raw_spent + len(raw) > self.cfg.raw_bytes_per_day:
            done.actions.append(f"raw text not kept: {self.cfg.raw_bytes_per_day} bytes kept today already")
            return None
        self._raw_spent += len(raw)
        return raw

    def expire_raw(self) -> int:
        """Forget raw notices past their keep date; how many."""
        b = t.bounce_log.c
        with self.engine.begin() as conn:
            return conn.execute(t.bounce_log.update().where(b.raw_until < self.clock.now())
                                .values(raw=None, raw_until=None)).rowcount


def _about_someone(verdict: Verdict) -> bool:
    """Only a bounce or a complaint acts on whom it names; the other kinds change nobody, proof or not."""
    return verdict.kind in (Kind.BOUNCE, Kind.COMPLAINT)


def _match(verdict: Verdict, proven: list[proof.Proven]) -> tuple[list[tuple[proof.Proven, Recipient | None]],
                                                                    list[str]]:
    """Each failed recipient with its proof, and the addresses named without one. A complaint that names no
    recipient, or another address (providers redact it), is about the one message it quotes, if just one."""
    by_address = {p.email.casefold(): p for p in proven}
    matched: list[tuple[proof.Proven, Recipient | None]] = [
        (by_address[r.address.casefold()], r) for r in verdict.recipients if r.address.casefold() in by_address]
    unproven = [r.address for r in verdict.recipients if r.address.casefold() not in by_address]
    messages = [p for p in proven if p.row is not None]
    if verdict.kind is Kind.COMPLAINT and not matched and len(messages) == 1:
        return [(messages[0], verdict.recipients[0] if verdict.recipients else None)], []
    return matched, unproven


def _unproven(addresses: list[str]) -> str:
    if not addresses:
        return "unproven: it names no recipient and quotes nothing the engine sent; nothing done"
    shown = ", ".join(addresses[:3]) + (f" and {len(addresses) - 3} more" if len(addresses) > 3 else "")
    return (f"unproven: {len(addresses)} named without a VERP token, Message-ID or signed link the engine "
            f"sent to them: {shown}; nothing done")


def _worst(verdict: Verdict) -> Recipient | None:
    """The recipient that decides a row's fate: a hard failure over a soft one."""
    return next((r for r in verdict.recipients if r.hard), verdict.recipients[0] if verdict.recipients else None)


def _why(failed: Recipient) -> str:
    return " ".join(p for p in (failed.status, failed.diagnostic) if p) or "no diagnostic given"
