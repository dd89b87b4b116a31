"""``newsletter bounces receive``: an SMTP (or LMTP) listener for the bounce domain.

An MTA forwards the bounce domain here (Postfix: ``transport_maps`` → ``smtp:[127.0.0.1]:2526``,
or ``lmtp:`` with ``[bounces] lmtp = true``). Each message is classified and applied in a worker
thread, and the answer is 250 only once it is stored; if storing fails the answer is 451, so the
MTA keeps the notice and tries again. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from .ingest import Feedback, Notice

log = logging.getLogger("newsletter.feedback")
DATA_LIMIT = 40 << 20  # a notice that quotes a 20 MB message still fits
EXPIRE_EVERY = timedelta(hours=1)
LINE_LIMIT = 1 << 20   # RFC 5321 says 1,000; auto-responders and junk don't, and a 500 would bounce the notice


class Receiver:
    """aiosmtpd handler: every notice through ``Feedback.handle``, answered after it is stored."""

    def __init__(self, feedback: Feedback, lmtp: bool = False) -> None:
        self.feedback, self.lmtp = feedback, lmtp
        self.handled = 0
        self.expired_at = feedback.clock.now() - EXPIRE_EVERY

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
            status = "250 2.0.0 stored"
        # LMTP answers DATA once per recipient (RFC 2033); aiosmtpd sends what it is given as it is
        return "\r\n".join([status] * max(1, len(envelope.rcpt_tos))) if self.lmtp else status


class _Controller(Controller):
    def __init__(self, handler: Receiver, **kwargs: Any) -> None:
        super().__init__(handler, data_size_limit=DATA_LIMIT, **kwargs)
        self.lmtp = handler.lmtp

    def factory(self) -> SMTP:
        return (_LMTP if self.lmtp else _SMTP)(self.handler, **self.SMTP_kwargs)


class _SMTP(SMTP):
    line_length_limit = LINE_LIMIT  # read by SMTP.__init__ for its stream reader


class _LMTP(LMTP):
    line_length_limit = LINE_LIMIT


def start(feedback: Feedback, host: str, port: int, lmtp: bool = False) -> Controller:
    """Listen in a thread until ``stop()``."""
    controller = _Controller(Receiver(feedback, lmtp), hostname=host, port=port)
    controller.start()
    return controller
