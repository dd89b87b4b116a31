"""OpenDKIM's ``opendkim-testmsg`` as a second, independent DKIM verifier, offline.

opendkim-testmsg (Debian's opendkim-tools) verifies the message on its standard input and has no
option for a key file: libopendkim asks DNS through the C library's resolver, which reads
``/etc/resolv.conf`` and always uses port 53. (OpenDKIM's ``TestPublicKeys`` and ``TestDNSData``, a
key file or DNS data instead of DNS, are settings of the milter's opendkim.conf, which this tool
does not read; its ``-K`` keeps temporary files.) So each check runs it in a mount namespace of its own
(``unshare --mount``) where a bind mount puts a resolv.conf naming ``127.53.x.y`` over the
machine's; a small DNS server in this process answers there with the keys' TXT records. Nothing
outside that one process sees the change. It needs root (port 53, the mount): as CI and this
machine run; elsewhere ``need()`` skips.

Its exit status: 0 when a signature verifies, else 70 with the reason on stderr. With several
signatures libopendkim reports the best one, so ``verify_each`` checks each signature alone (they
are independent: none covers another). Libopendkim also wants a Date field, as RFC 5322 does.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .conftest import need

TOOL = "opendkim-testmsg"
_SIGNATURE = re.compile(rb"^DKIM-Signature:.*?\r\n(?![ \t])", re.DOTALL | re.MULTILINE | re.IGNORECASE)


class TxtServer:
    """Answers TXT queries for the names it holds, over UDP, on a loopback address of its own."""

    def __init__(self, records: Mapping[str, str]) -> None:
        self.records = {name.lower().rstrip(".") + ".": text for name, text in records.items()}
        self.address = f"127.53.{random.randint(1, 254)}.{random.randint(1, 254)}"
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((self.address, 53))
        except OSError as exc:
            self.sock.close()
            need(f"cannot serve DNS for opendkim-testmsg on {self.address}:53: {exc.strerror}")
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import dns.message
        import dns.rcode
        import dns.rrset

        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return  # closed
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            name = query.question[0].name
            text = self.records.get(name.to_text().lower())
            if text is None:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            else:  # one TXT record, as strings of at most 255 bytes
                chunks = " ".join(f'"{text[i:i + 250]}"' for i in range(0, len(text), 250))
                reply.answer.append(dns.rrset.from_text(name, 60, "IN", "TXT", chunks))
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()


@contextmanager
def opendkim(records: Mapping[str, str], folder: Path) -> Iterator[OpenDkim]:
    """A verifier that finds these TXT records (``selector._domainkey.domain`` → ``v=DKIM1; k=…; p=…``)."""
    if not shutil.which(TOOL) and not Path(f"/usr/sbin/{TOOL}").exists():
        need("opendkim-testmsg is missing (Debian's opendkim-tools; bash .ci/run installs it)")
    if os.geteuid() != 0 or not shutil.which("unshare"):
        need("opendkim-testmsg runs offline only as root (a DNS server on port 53, a private mount of resolv.conf)")
    server = TxtServer(records)
    resolv = folder / "resolv.conf"
    resolv.write_text(f"nameserver {server.address}\noptions attempts:1 timeout:3\n", encoding="ascii")
    try:
        yield OpenDkim(resolv)
    finally:
        server.close()


class OpenDkim:
    def __init__(self, resolv: Path) -> None:
        self.resolv = resolv

    def check(self, message: bytes) -> tuple[bool, str]:
        """(verified, OpenDKIM's complaint): whether at least one signature of ``message`` verifies."""
        tool = shutil.which(TOOL) or f"/usr/sbin/{TOOL}"
        script = 'mount --bind "$1" /etc/resolv.conf && exec "$2"'
        done = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", str(self.resolv), tool],
                              input=message, capture_output=True, timeout=60)
        return done.returncode == 0, done.stderr.decode(errors="replace").strip()

    def verify(self, message: bytes) -> bool:
        """Whether a signature verifies; a refusal must be about the message (a bad signature, a field given
        twice that RFC 5322 allows once: "Syntax error"), never about the setup (no key found)."""
        ok, complaint = self.check(message)
        assert ok or "bad signature" in complaint.lower() or "syntax error" in complaint.lower(), complaint
        return ok

    def verify_each(self, message: bytes) -> list[bool]:
        """Each DKIM-Signature verified alone, the others taken out, in the order they stand."""
        fields = _SIGNATURE.findall(message)
        return [self.verify(_without(message, fields, keep)) for keep in range(len(fields))]


def _without(message: bytes, fields: list[bytes], keep: int) -> bytes:
    for i, field in enumerate(fields):
        if i != keep:
            message = message.replace(field, b"", 1)
    return message
