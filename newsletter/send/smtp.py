"""The SMTP transport: one reused connection, and what each answer means for the row being sent.

The only module that knows the wire: dot-stuffing, PIPELINING, SMTPUTF8 and 8BITMIME, reply codes.
The classification (after GNU Mailman's and listmonk's): a 2xx after DATA is sent; a 4xx, a
dropped line or a time-out is *deferred* (try again later); a 5xx for the recipient is *failed*,
and a 5xx that says the mailbox does not exist is a hard bounce; a refusal of the login or of the
sender is a fault of the whole send (``SendFault``), which pauses it. After the final dot of DATA
a dropped line, a time-out or an answer that is not SMTP is *unknown*: the relay may have the
message, so it is never sent again on its own (``_after_dot``).
"""

from __future__ import annotations

import email.utils
import functools
import re
import smtplib
import ssl

from ..config import SmtpSection
from ..errors import SendFault
from .transport import Outcome, Outgoing, Result

_HARD_BOUNCE = re.compile(
    r"\b5\.1\.[0-3]\b|user unknown|unknown user|no such user|does not exist|unknown recipient"
    r"|recipient (address )?rejected|mailbox unavailable|invalid recipient",
    re.IGNORECASE,
)


def classify(code: int, answer: str, at_recipient: bool) -> Outcome:
    """What an SMTP reply code means for the message."""
    if 200 <= code < 300:
        return Outcome.SENT
    if 400 <= code < 500:
        return Outcome.DEFERRED
    if at_recipient and _HARD_BOUNCE.search(answer):
        return Outcome.BOUNCED
    return Outcome.FAILED


def _text(resp: bytes | str) -> str:
    return (resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp).replace("\r", " ").replace("\n", " ")


def dot_stuffed(data: bytes) -> bytes:
    """The message as DATA carries it (RFC 5321 4.5.2): a line starting with '.' gets another.

    bytes.replace, not smtplib's regex (0.5 ms per 60 KB); still 88 µs for an 80 KB copy, which is
    why a message that is ``dot_safe`` skips it.
    """
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    return b"." + stuffed if stuffed.startswith(b".") else stuffed


class SmtpTransport:
    """An SMTP session reused for many messages; opened lazily, reopened after a drop."""

    def __init__(self, cfg: SmtpSection, local_hostname: str | None = None) -> None:
        self.cfg = cfg
        self.local_hostname = local_hostname
        self._smtp: smtplib.SMTP | None = None

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cfg.ca_file or None)

    def open(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        cfg = self.cfg
        if cfg.security == "tls":
            try:
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.host, cfg.port, self.local_hostname, timeout=cfg.timeout,
                                                      context=self._tls_context())
            except ssl.SSLError as exc:
                raise SendFault(f"SMTP {cfg.host}:{cfg.port}: TLS failed: {exc.reason or exc}") from None
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, self.local_hostname, timeout=cfg.timeout)
        try:
            self._handshake(smtp)
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def _handshake(self, smtp: smtplib.SMTP) -> None:
        """EHLO, STARTTLS and AUTH as configured; a refusal here is a fault of the whole send."""
        cfg = self.cfg
        try:
            smtp.ehlo()
            if cfg.security == "starttls":
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if cfg.username:
                smtp.login(cfg.username, cfg.password.get_secret_value())
        except smtplib.SMTPAuthenticationError as exc:
            raise SendFault(f"SMTP {cfg.host}:{cfg.port} refused the login: {exc.smtp_code} "
                            f"{_text(exc.smtp_error)}") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise SendFault(f"SMTP {cfg.host}:{cfg.port}: {exc}") from None
        except ssl.SSLError as exc:
            raise SendFault(f"SMTP {cfg.host}:{cfg.port}: TLS failed: {exc.reason or exc}") from None

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()

    def drop(self) -> None:
        """Forget a broken session without talking to the server."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def deliver(self, msg: Outgoing) -> Result:
        """Send one message; never raises for a row's fate, only ``SendFault`` for the whole send's."""
        try:
            smtp = self.open()
            form = msg
            if msg.international and not smtp.has_extn("smtputf8"):
                if msg.ascii is None:
                    return Result(Outcome.FAILED, None, "the relay does not offer SMTPUTF8, which an address "
                                  f"with a non-ASCII local part needs: {msg.rcpt}")
                form = msg.ascii  # the domain as IDNA (punycode), headers plain ASCII
            data = form.data if form.dot_safe else dot_stuffed(form.data)
            return self._transaction(smtp, form.sender, form.rcpt, data, form.international)
        except (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, OSError) as exc:  # refused, reset, timeout
            self.drop()
            code = getattr(exc, "smtp_code", None)
            where = f"{self.cfg.host}:{self.cfg.port}"
            return Result(Outcome.DEFERRED, code, f"connection to {where}: {type(exc).__name__}: {exc}".strip())
        except smtplib.SMTPResponseException as exc:
            self.drop()
            return Result(classify(exc.smtp_code, _text(exc.smtp_error), False), exc.smtp_code, _text(exc.smtp_error))

    def _transaction(self, smtp: smtplib.SMTP, sender: str, rcpt: str, data: bytes, smtputf8: bool) -> Result:
        """MAIL, RCPT, DATA, then the body; the three commands go in one write where the relay allows.

        With PIPELINING (RFC 2920; Postfix, Exim and the big providers advertise it) a message costs
        two round trips instead of four. The replies are read and judged in the same order either
        way; a relay that does not advertise it gets one command at a time, and nothing after a
        refusal. Measured into smtp-sink (10,000 messages, 4 connections): 590 -> 690 messages/s, the
        kernel time per message 380 -> 255 µs and the user time 1,160 -> 1,040 µs.
        """
        if _UNSAFE_ADDRESS.search(rcpt) or not rcpt:
            return Result(Outcome.FAILED, None, f"the address {rcpt!r} cannot be given to SMTP")
        commands = (f"MAIL FROM:<{_mailbox(sender)}>{self._mail_options(smtp, smtputf8)}\r\n".encode(),
                    f"RCPT TO:<{rcpt}>\r\n".encode(), b"DATA\r\n")
        pipelined = smtp.has_extn("pipelining")
        if pipelined:
            smtp.send(b"".join(commands))
        replies: list[tuple[int, bytes]] = []
        for command, good in zip(commands, _GOOD, strict=True):
            if not pipelined:
                smtp.send(command)
            code, resp = smtp.getreply()
            if code == 421:  # the server is closing the line: reconnect before the next message
                self.drop()
                return Result(Outcome.DEFERRED, code, _text(resp))
            replies.append((code, resp))
            if code not in good and not pipelined:
                break
        judged = zip(replies, _GOOD, strict=False)  # without PIPELINING, nothing is sent after a refusal
        refused = next((n for n, ((code, _), good) in enumerate(judged) if code not in good), None)
        if refused is not None:
            if replies[-1][0] == 354:  # pipelined DATA taken despite the refusal before it: end it empty
                smtp.send(b".\r\n")
                smtp.getreply()
            code, answer = replies[refused][0], _text(replies[refused][1])
            if refused == 0:
                return self._refused_sender(smtp, code, answer)
            smtp.rset()
            return Result(classify(code, answer, at_recipient=refused == 1), code, answer)
        smtp.send(data + (b"" if data.endswith(b"\r\n") else b"\r\n") + b".\r\n")  # raising: before the dot
        return self._after_dot(smtp)

    def _after_dot(self, smtp: smtplib.SMTP) -> Result:
        """The relay's answer to the final dot; without a usable one the message's fate is ``UNKNOWN``.

        The relay may have queued the message and then hung, dropped the line or answered too late:
        retried, such a relay got 4 duplicates in 12 messages with a 3 s timeout and 1 with 30 s
        (issue #21). So nothing after the dot is retried, and the line is dropped (a fresh one for
        the next message): what it would say next is not known either.
        """
        try:
            code, answer = _final_reply(smtp)
        except OSError as exc:  # SMTPServerDisconnected too; a time-out is an OSError
            self.drop()
            return Result(Outcome.UNKNOWN, None, f"no answer after the final dot from {self.cfg.host}:"
                                                 f"{self.cfg.port}: {type(exc).__name__}: {exc}".strip())
        if code is None:
            self.drop()
            return Result(Outcome.UNKNOWN, None, f"not an SMTP answer after the final dot: {answer}")
        if code == 421:  # accepted nothing and closing: reconnect before the next message
            self.drop()
        return Result(classify(code, answer, False), code, answer)

    @staticmethod
    def _mail_options(smtp: smtplib.SMTP, smtputf8: bool) -> str:
        """SMTPUTF8 (checked to be offered before this is called) and 8BITMIME where the relay has it."""
        if not smtputf8:
            return ""
        return " SMTPUTF8" + (" BODY=8BITMIME" if smtp.has_extn("8bitmime") else "")

    def _refused_sender(self, smtp: smtplib.SMTP, code: int, answer: str) -> Result:
        smtp.rset()
        if code >= 500:
            raise SendFault(f"SMTP {self.cfg.host}:{self.cfg.port} refused the sender: {code} {answer}")
        return Result(Outcome.DEFERRED, code, answer)


_GOOD = ((250,), (250, 251), (354,))  # the replies that let MAIL, RCPT and DATA go on
_UNSAFE_ADDRESS = re.compile(r"[\x00-\x20<>\x7f]")  # nothing that could end or split an SMTP command


_MAXLINE = 8192  # smtplib's limit for one reply line
_REPLY_LINE = re.compile(rb"([245][0-9][0-9])(?:([ -]).*)?", re.DOTALL)  # what may answer the final dot


def _final_reply(smtp: smtplib.SMTP) -> tuple[int | None, str]:
    """The answer to the final dot as (code, text), or (None, the whole answer) when it is not an SMTP reply.

    Read here, not by ``getreply``, which gives such a line code -1 and cuts its first 4 characters.
    Measured on a one-line 250: 1.5 µs against getreply's 0.9 µs, next to ~640 µs a message at 1,564/s.
    """
    assert smtp.file is not None  # made by the getreply of DATA's 354
    lines: list[bytes] = []
    while True:
        line = smtp.file.readline(_MAXLINE + 1)
        if not line:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        lines.append(line)
        match = _REPLY_LINE.fullmatch(line.rstrip(b"\r\n"))
        if match is None or len(line) > _MAXLINE:
            return None, _text(b"".join(lines).strip())
        if match[2] != b"-":
            return int(match[1]), _text(b"\n".join(n[4:].strip(b" \t\r\n") for n in lines))


@functools.lru_cache(maxsize=16)
def _mailbox(sender: str) -> str:
    """The envelope sender's bare address ("Name <a@b>" or "a@b"); parsed once per distinct value."""
    address = email.utils.parseaddr(sender)[1]
    if not address or _UNSAFE_ADDRESS.search(address):
        raise SendFault(f"the envelope sender {sender!r} is not an address SMTP can carry")
    return address
