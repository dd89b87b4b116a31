"""The one way out: compose → sign → transport, for every message the engine sends.

Issue copies, test copies and the web's confirmation mail are all made here and leave through
``Line.send``, which signs (DKIM, when configured) and hands the message to the transport, so
every message verifies when a key is set and only the transport knows the wire.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from ..clock import SYSTEM, Clock
from ..config import Config, one_click
from ..errors import ConfigError
from ..links import PREFERENCES, UNSUBSCRIBE, Links, verp_address
from .compose import (
    Confirmation,
    Envelope,
    PreparedGroup,
    ascii_form,
    confirmation,
    header_safe,
    message_id,
    sender_for,
    unsubscribe_mailto,
)
from .sign import dkim_signer
from .smtp import SmtpTransport
from .transport import DirectoryTransport, Outgoing, Result, Transport


@dataclass(frozen=True)
class Recipient:
    subscriber_id: int | None  # None for a test copy: its links name no one
    email: str
    name: str
    row_id: int | None = None  # the outbox row: with [bounces] address, the envelope sender names it (VERP)


class Mailer:
    """Everything a send needs to make and hand over messages; one per send, shared by its threads."""

    def __init__(self, config: Config, clock: Clock = SYSTEM,
                 transport: Callable[[], Transport] | None = None) -> None:
        nl = config.newsletter
        self.sender = sender_for(nl.name, nl.sender, nl.reply_to, one_click(nl.base_url))
        self.bounces = config.bounces.address
        self.envelope_from = self.bounces or config.smtp.envelope_from or self.sender.address
        self.mailto = unsubscribe_mailto(self.sender.address)
        self.signer = dkim_signer(config.smtp, self.sender.domain, config.root)
        self.open_transport = transport or transport_for(config)
        self.clock = clock

    def new_message_id(self) -> str:
        return message_id(self.sender.domain)

    def copy(self, prepared: PreparedGroup, links: Links, to: Recipient, mid: str) -> Outgoing:
        """One subscriber's copy of a group, in each address form it has."""
        slots = slots_for(links, to)
        escaped = {k: html.escape(v) for k, v in slots.items()}
        now = self.clock.now()
        mailto, sender = self.mailto, self.envelope_from
        if self.bounces and to.subscriber_id is not None:
            mailto = unsubscribe_mailto(verp_address(self.bounces, links.verp_token("u", to.subscriber_id)))
        if self.bounces and to.row_id is not None:
            sender = verp_address(self.bounces, links.verp_token("r", to.row_id))

        def form(address: str) -> bytes:
            env = Envelope(address, to.name, mid, slots["unsubscribe_url"], mailto, now)
            return prepared.assemble(env, slots, escaped)

        return self._forms(to.email, mid, form, dot_safe=True, sender=sender)  # parts in dot-safe QP

    def size(self, prepared: PreparedGroup, links: Links) -> int:
        """A group's message as sent (signed when a key is set), in bytes, for a subscriber of the list."""
        to = Recipient(1, "subscriber@example.org", "Ada Lovelace", row_id=1)
        return len(self.sign(self.copy(prepared, links, to, self.new_message_id())).data)

    def confirmation(self, to: Recipient, what: Confirmation) -> Outgoing:
        mid, now = self.new_message_id(), self.clock.now()
        return self._forms(to.email, mid, lambda address: confirmation(self.sender, address, what, mid, now))

    def _forms(self, address: str, mid: str, build: Callable[[str], bytes], dot_safe: bool = False,
               sender: str | None = None) -> Outgoing:
        sender = sender or self.envelope_from
        plain = ascii_form(address) if not address.isascii() else None
        fallback = Outgoing(sender, plain, build(plain), mid, dot_safe=dot_safe) if plain else None
        return Outgoing(sender, address, build(address), mid, fallback, dot_safe)

    def sign(self, msg: Outgoing) -> Outgoing:
        return msg.map_data(self.signer.sign) if self.signer else msg

    def open(self) -> Line:
        return Line(self, self.open_transport())

    def send_one(self, msg: Outgoing) -> Result:
        """One message over a line of its own (a test copy, a confirmation mail)."""
        line = self.open()
        try:
            return line.send(msg)
        finally:
            line.close()


def sizing_mailer(config: Config) -> Mailer:
    """A Mailer for sizing and previewing messages: without a DKIM key it can read (one only the sending host
    can read), it builds them unsigned, about 0.5 KB smaller."""
    try:
        return Mailer(config)
    except ConfigError:
        return Mailer(config.model_copy(update={"smtp": config.smtp.model_copy(update={"dkim_key_file": ""})}))


class Line:
    """One sending thread's way out: sign, then the transport."""

    def __init__(self, mailer: Mailer, transport: Transport) -> None:
        self.mailer, self.transport = mailer, transport

    def send(self, msg: Outgoing) -> Result:
        return self.transport.deliver(self.mailer.sign(msg))

    def close(self) -> None:
        self.transport.close()


def transport_for(config: Config) -> Callable[[], Transport]:
    """What opens a line for each sending thread, as ``[transport] kind`` says."""
    if config.transport.kind == "directory":
        folder = (config.root / config.transport.directory).resolve()
        return lambda: DirectoryTransport(folder)
    return lambda: SmtpTransport(config.smtp)


def slots_for(links: Links, to: Recipient) -> dict[str, str]:
    """A subscriber's slot values; the name can never carry a control character."""
    sid = to.subscriber_id or 0
    return {
        "name": header_safe(to.name) or "there",
        "email": to.email,
        "unsubscribe_url": links.url(UNSUBSCRIBE, sid),
        "preferences_url": links.url(PREFERENCES, sid),
    }
