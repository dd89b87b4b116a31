"""Sign: DKIM (dkimpy) over the finished message, when ``[smtp] dkim_key_file`` is set."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..config import SmtpSection
from ..errors import ConfigError
from .compose import CRLF, header_safe

# DKIM covers these when present; List-Unsubscribe(-Post) must be signed for RFC 8058 one-click,
# Feedback-ID for Gmail's feedback loop.
DKIM_HEADERS = frozenset((b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-id",
                          b"list-unsubscribe", b"list-unsubscribe-post", b"feedback-id", b"mime-version",
                          b"content-type", b"content-transfer-encoding", b"auto-submitted"))
# Oversigned (RFC 6376 8.15): named once more than they occur, so one added in transit breaks the
# signature; an absent List-Unsubscribe-Post is still named once, so no one can add One-Click.
OVERSIGNED = (b"from", b"subject", b"list-unsubscribe", b"list-unsubscribe-post")
CANONICALIZE = (b"relaxed", b"relaxed")  # survives a relay that refolds a header or trims a line's end
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


def signed_headers(message: bytes) -> list[bytes]:
    """h=: each signed header field the message has, as often as it has it, then the oversigned names."""
    head = message[:message.find(CRLF + CRLF)]  # a slice of the head, no copy of the body
    present = [name.lower() for name in _FIELD_NAME.findall(head)]
    return [name for name in present if name in DKIM_HEADERS] + list(OVERSIGNED)


@dataclass(frozen=True)
class DkimSigner:
    """Signs a finished message with dkimpy; the body hash covers the subscriber's own copy."""

    selector: bytes
    domain: bytes
    key: bytes

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front."""
        import dkim  # here, not at the top: with dnspython it costs 50 ms a command, needed only when signing

        body = message if message.endswith(CRLF) else message + CRLF
        signature: bytes = dkim.sign(body, self.selector, self.domain, self.key, canonicalize=CANONICALIZE,
                                     include_headers=signed_headers(message), linesep=CRLF)
        return signature + message


def dkim_signer(cfg: SmtpSection, sender_domain: str, root: Path) -> DkimSigner | None:
    """The DKIM signer the config asks for (``[smtp] dkim_*``), or None; a bad key file is one line."""
    if not cfg.dkim_key_file:
        return None
    path = root / cfg.dkim_key_file
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"smtp.dkim_key_file: cannot read {path}: {exc.strerror}") from None
    if b"PRIVATE KEY-----" not in key:
        raise ConfigError(f"smtp.dkim_key_file: {path} is not a PEM private key")
    domain = cfg.dkim_domain or sender_domain
    return DkimSigner(header_safe(cfg.dkim_selector).encode("ascii"), header_safe(domain).encode("idna"), key)
