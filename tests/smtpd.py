"""A real aiosmtpd server for tests that can be told to answer 4xx/5xx, drop the line, stall or hang, before the
final dot of DATA or after it, having kept the message or not."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session

from newsletter.mailsink import EmlHandler, start


class ScriptedHandler(EmlHandler):
    """Answers from a script first, then accepts.

    ``rcpt[address]``: replies for RCPT TO of that address, used up one per try ("550 5.1.1 ..."), or
    "drop" / "stall" as below: then the line goes wrong before the final dot.
    ``data``: what answers the final dot of the next DATA commands, in order: an SMTP reply or any
    other text (sent as it is), "drop" (close the line without answering), "stall" (answer nothing
    for ``stall_seconds``, then 451), "hang" (answer nothing until the client hangs up) or "late"
    (answer 250 after ``stall_seconds``). Prefixed "keep " the message is kept first, as by a relay
    that queued it before going wrong ("keep hang"); unprefixed, a scripted answer keeps nothing.
    ``body``: "drop" for the next messages closes the line right after DATA's 354 (before the body).
    ``delay``: a pause before each accepted message is answered, like a slow relay.
    ``pipelining``: advertise PIPELINING (RFC 2920) in the EHLO answer, as real relays do;
    ``pipelined`` records, per MAIL command, whether RCPT and DATA had already arrived with it.
    """

    def __init__(self, folder: Path | None = None) -> None:
        super().__init__(folder)
        self.rcpt: dict[str, deque[str]] = {}
        self.data: deque[str] = deque()
        self.body: deque[str] = deque()
        self.stall_seconds = 3.0
        self.delay = 0.0  # seconds before each accepted DATA is answered (a slow relay)
        self.pipelining = True
        self.pipelined: list[bool] = []

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        # What the client sent after MAIL before hearing its reply (aiosmtpd's read buffer).
        self.pipelined.append(b"RCPT TO:" in bytes(server._reader._buffer))  # type: ignore[union-attr]
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        script = self.rcpt.get(address.casefold())
        if script:
            return await self._act(server, script.popleft())
        if self.body and self.body.popleft() == "drop":
            self._drop_after_354(server)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        action = self.data.popleft() if self.data else None
        if action and action.startswith("keep "):
            self.store(envelope)
            action = action.removeprefix("keep ")
        if action:
            return await self._act(server, action)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.store(envelope)
        return "250 2.0.0 OK: queued"

    async def _act(self, server: SMTP, action: str) -> str:
        """A scripted answer: a reply to send as it is, or how to go wrong instead."""
        if action == "drop":
            server.transport.close()
            return "421 closing"  # never reaches the client: the line is closed
        if action == "stall":
            await asyncio.sleep(self.stall_seconds)
            return "451 4.4.2 too late"
        if action == "hang":
            await asyncio.Event().wait()  # cancelled by aiosmtpd when the client hangs up
        if action == "late":
            await asyncio.sleep(self.stall_seconds)
            return "250 2.0.0 OK: queued, late"
        return action

    @staticmethod
    def _drop_after_354(server: SMTP) -> None:
        """Close this session's line as soon as DATA's 354 is out: the client then fails streaming the body."""
        push = server.push

        async def then_drop(status: str) -> None:
            await push(status)
            if status.startswith("354"):
                server.transport.close()

        server.push = then_drop  # type: ignore[method-assign,assignment]


@contextmanager
def smtp_server(folder: Path | None = None, pipelining: bool = True,
                **kwargs: object) -> Iterator[tuple[ScriptedHandler, int]]:
    """A running server on a free loopback port: yields (handler, port)."""
    handler = ScriptedHandler(folder)
    handler.pipelining = pipelining
    controller = start(handler, **kwargs)
    try:
        yield handler, controller.port
    finally:
        controller.stop()
