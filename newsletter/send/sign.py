"""Sign: DKIM (dkimpy) over the finished message, when ``[smtp] dkim_key_file`` is set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import SmtpSection
from ..errors import ConfigError
from .compose import CRLF, header_safe

# DKIM covers these when present; List-Unsubscribe(-Post) must be signed for RFC 8058 one-click.
DKIM_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-id", b"list-unsubscribe",
                b"list-unsubscribe-post", b"mime-version", b"content-type")


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
        signature: bytes = dkim.sign(body, self.selector, self.domain, self.key,
                                     include_headers=list(DKIM_HEADERS), linesep=CRLF)
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
