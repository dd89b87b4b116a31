"""``newsletter bounces receive``: an SMTP (or LMTP) listener for the bounce domain.

An MTA forwards the bounce domain here (Postfix: ``transport_maps`` → ``smtp:[127.0.0.1]:2526``,
or ``lmtp:`` with ``[bounces] lmtp = true``). Each message is classified and applied in a worker
thread, and the answer is 250 only once it is stored; if storing fails the answer is 451, so the
MTA keeps the notice and tries again. It binds 127.0.0.1 unless told otherwise.

Strangers can reach it too (whatever the MTA accepts for the bounce domain): a client that hands over
more than ``[bounces] receive_per_minute`` notices in a minute is told 450 at MAIL (try later: an MTA keeps
them, nothing is lost), and ``Feedback`` keeps little raw text of what proves nothing. aiosmtpd's own log
(``mail.log``) names every envelope address: its VERP tokens are taken out (``links.redact``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from datetime import datetime, timedelta
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from ..links import redact_logger
from .ingest import Feedback, Notice

log = logging.getLogger("newsletter.feedback")
EXPIRE_EVERY = timedelta(hours=1)
LINE_LIMIT = 1 << 20   # RFC 5321 says 1,000; auto-responders and junk don't, and a 500 would bounce the notice
MINUTE = timedelta(minutes=1)


class Receiver:
    """aiosmtpd handler: every notice through ``Feedback.handle``, answered after it is stored."""

    def __init__(self, feedback: Feedback, lmtp: bool = False) -> None:
        self.feedback, self.lmtp = feedback, lmtp
        self.handled = 0
        self.expired_at = feedback.clock.now() - EXPIRE_EVERY
        self.per_minute = feedback.cfg.receive_per_minute
        self.recent: defaultdict[str, deque[datetime]] = defaultdict(deque)  # client host -> its last notices

    def _too_many(self, host: str) -> bool:
        """Whether ``host`` handed over ``receive_per_minute`` notices within the last minute."""
        now, seen = self.feedback.clock.now(), self.recent[host]
        while seen and now - seen[0] >= MINUTE:
            seen.popleft()
        if not seen:
            del self.recent[host]  # a client gone quiet costs nothing
        return len(seen) >= self.per_minute

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        host = _host(session)
        if self._too_many(host):
            log.warning("%s: more than %d notices in a minute: told to try later", host, self.per_minute)
            return "450 4.7.1 too many notices from you; try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    def _expire(self) -> None:
        """Forget raw notices past [bounces] keep_raw_days, at most once an hour; a failure waits for the next."""
        if self.feedback.clock.now() - self.expired_at >= EXPIRE_EVERY:
            self.expired_at = self.feedback.clock.now()
            try:
                self.feedback.expire_raw()
            except Exception:
                log.exception("raw notices past their keep date could not be forgotten")

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        notice = Notice(raw, "lmtp" if self.lmtp else "smtp", tuple(envelope.rcpt_tos))
        try:
            await asyncio.to_thread(self.feedback.handle, notice)
            await asyncio.to_thread(self._expire)
        except Exception:  # the database is away, say: the MTA keeps the notice and retries
            log.exception("a notice from %s could not be stored", envelope.mail_from or "<>")
            status = "451 4.3.0 the notice could not be stored; try again later"
        else:
            self.handled += 1
            self.recent[_host(session)].append(self.feedback.clock.now())
            status = "250 2.0.0 stored"
        # LMTP answers DATA once per recipient (RFC 2033); aiosmtpd sends what it is given as it is
        return "\r\n".join([status] * max(1, len(envelope.rcpt_tos))) if self.lmtp else status


class _Controller(Controller):
    def __init__(self, handler: Receiver, **kwargs: Any) -> None:
        # [bounces] max_size, as for `bounces fetch` (40 MiB: a notice that quotes a 20 MB message still fits)
        super().__init__(handler, data_size_limit=handler.feedback.cfg.max_size, **kwargs)
        self.lmtp = handler.lmtp

    def factory(self) -> SMTP:
        return (_LMTP if self.lmtp else _SMTP)(self.handler, **self.SMTP_kwargs)


class _SMTP(SMTP):
    line_length_limit = LINE_LIMIT  # read by SMTP.__init__ for its stream reader


class _LMTP(LMTP):
    line_length_limit = LINE_LIMIT


def _host(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


def start(feedback: Feedback, host: str, port: int, lmtp: bool = False) -> Controller:
    """Listen in a thread until ``stop()``."""
    redact_logger("mail.log")
    controller = _Controller(Receiver(feedback, lmtp), hostname=host, port=port)
    controller.start()
    return controller
