"""``newsletter bounces fetch``: read the bounce mailbox over IMAP (imap-tools).

Each message goes through ``Feedback.handle``; only a message that was stored is then deleted
(or moved to ``[bounces] imap_done``), in one expunge at the end. A message that cannot be read or
stored stays in the mailbox and is reported, so nothing is lost and a later run tries it again.
"""

from __future__ import annotations

import imaplib
import logging
from dataclasses import dataclass, field

from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import ImapToolsError
from imap_tools.mailbox import BaseMailBox

from ..config import BouncesSection
from ..errors import ConfigError, MailboxError
from .ingest import Feedback, Handled, Notice

log = logging.getLogger("newsletter.feedback")


@dataclass
class Fetched:
    handled: list[Handled] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)  # (uid, reason) of messages left in the mailbox


def _mailbox(cfg: BouncesSection) -> BaseMailBox:
    if not cfg.imap_host or not cfg.imap_user:
        raise ConfigError("bounces.imap_host and bounces.imap_user: required for `newsletter bounces fetch`")
    kind = {"tls": MailBox, "starttls": MailBoxStartTls, "none": MailBoxUnencrypted}[cfg.imap_security]
    return kind(cfg.imap_host, cfg.imap_port, timeout=60)


def fetch(feedback: Feedback, cfg: BouncesSection, limit: int | None = None) -> Fetched:
    """Process the folder's messages; delete or move those stored, leave the rest, report both."""
    where = f"{cfg.imap_user}@{cfg.imap_host}:{cfg.imap_port}/{cfg.imap_folder}"
    try:
        return _fetch(feedback, cfg, limit)
    except (ImapToolsError, imaplib.IMAP4.error, OSError) as exc:  # refused login, lost line, timeout
        raise MailboxError(f"bounces fetch {where}: {type(exc).__name__}: {exc}") from exc


def _fetch(feedback: Feedback, cfg: BouncesSection, limit: int | None) -> Fetched:
    done = Fetched()
    feedback.expire_raw()
    folder = cfg.imap_folder
    box = _mailbox(cfg)
    try:
        box.login(cfg.imap_user, cfg.imap_password.get_secret_value(), initial_folder=folder)
    except BaseException:
        box.client.shutdown()  # a refused login leaves imaplib's socket open
        raise
    with box:
        if cfg.imap_done != "delete" and not box.folder.exists(cfg.imap_done):
            box.folder.create(cfg.imap_done)
        stored: list[str] = []
        for msg in box.fetch(limit=limit, mark_seen=False, bulk=50):
            uid = msg.uid or "?"
            try:
                done.handled.append(feedback.handle(Notice(msg.obj.as_bytes(), f"imap:{folder}/{uid}")))
                stored.append(uid)
            except Exception as exc:
                log.exception("imap %s/%s: left in the mailbox", folder, uid)
                done.left.append((uid, f"{type(exc).__name__}: {exc}"))
        if stored and cfg.imap_done == "delete":
            box.delete(stored)
        elif stored:
            box.move(stored, cfg.imap_done)
    return done
