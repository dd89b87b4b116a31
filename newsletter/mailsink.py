"""A local SMTP server (aiosmtpd) that keeps each message as an .eml file: the demo's relay.

Each file begins with ``Return-Path: <envelope sender>``, as a delivering MTA writes it, so the VERP
address a bounce would go to can be read off a caught message.

Also the base of the tests' server, which adds scripted 4xx/5xx answers, dropped lines and stalls.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]+")
_NOT_IN_HEADER = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029<>]+")  # nothing may end the line or the <>


class EmlHandler:
    """Accepts every message; counts what each recipient got and writes .eml files if asked."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.received: Counter[str] = Counter()
        self.messages: list[tuple[str, bytes]] = []
        self.senders: dict[str, str] = {}  # each recipient's envelope sender (MAIL FROM), the last one
        self._lock = threading.Lock()
        if folder:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.store(envelope)
        return "250 2.0.0 OK: queued"

    def store(self, envelope: Envelope) -> None:
        data = envelope.original_content or b""
        with self._lock:
            for rcpt in envelope.rcpt_tos:
                self.received[rcpt.casefold()] += 1
                self.messages.append((rcpt, data))
                self.senders[rcpt.casefold()] = envelope.mail_from or ""
                if self.folder:
                    name = f"{len(self.messages):06d}-{_UNSAFE.sub('_', rcpt)}.eml"
                    write_private(self.folder / name, return_path(envelope.mail_from) + data)


def return_path(sender: str | None) -> bytes:
    """The ``Return-Path:`` line for a message whose envelope sender is ``sender`` (None or "" for <>)."""
    return f"Return-Path: <{_NOT_IN_HEADER.sub('', sender or '')}>\r\n".encode()


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` readable by its owner only (0600): a captured message holds its recipient's address."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)  # an older file of that name kept its mode through O_TRUNC
        out.write(data)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def start(handler: EmlHandler, host: str = "127.0.0.1", port: int | None = None, **kwargs: Any) -> Controller:
    """Start the server in a thread on a loopback port (a free one unless given); stop() ends it."""
    controller = Controller(handler, hostname=host, port=port or free_port(host), **kwargs)
    controller.start()
    return controller
