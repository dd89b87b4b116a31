"""``newsletter bounces fetch``: read the bounce mailbox over IMAP so that no one message can stop the run.

imap-tools keeps the connection, the login, the folders and the moves; it does not parse messages here. Its
``fetch`` parsed every message with Python's email package outside our reach: a 3,000-level nested multipart
(180 KB) raised RecursionError there and stopped every later run at it, and a 300 MB message took the process
to 3.46 GB. So:

    UID FETCH 1:* (UID RFC822.SIZE)      the list, sizes first: nothing is downloaded yet
      no UID in an answer ─► left, reported in one line (it can be neither moved nor deleted)
      no size, over [bounces] max_size ─► moved to [bounces] imap_held, never downloaded
    UID FETCH <a few> (UID BODY.PEEK[])  the raw bytes, in batches of at most BATCH messages and BATCH_BYTES
                                          (PEEK: nothing is marked seen)
    judge + apply (ingest)               in its own transaction; the classifier parses within its own bounds
      stored ─► deleted, or moved to [bounces] imap_done
      unreadable, no body, any error ─► moved to imap_held, named with its reason in one line
      the database refused it ─► left for the next run, as before (its refusal is rarely the message's fault)

Every move and delete happens at the end, by UID; a message is only ever deleted after it was stored.
"""

from __future__ import annotations

import imaplib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import ImapToolsError, MailboxFetchError
from imap_tools.mailbox import BaseMailBox
from imap_tools.utils import check_command_status
from sqlalchemy.exc import DBAPIError

from ..config import BouncesSection
from ..errors import ConfigError, MailboxError
from .classify import Verdict
from .ingest import Feedback, Handled, Notice, judge

log = logging.getLogger("newsletter.feedback")
BATCH = 50                 # messages a FETCH asks for: one round trip each, not one per message
BATCH_BYTES = 8 << 20      # ... and at most this many bytes of them (a larger message comes alone)
CHUNK = 500                # UIDs a MOVE or STORE names at once, so no command line grows past a server's limit
_SEQ = re.compile(rb"^\s*(\d+)")
_UID = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)", re.IGNORECASE)


@dataclass
class Fetched:
    """What a run did: the notices stored, and the messages moved aside or left, each with its reason."""

    handled: list[Handled] = field(default_factory=list)
    left: list[tuple[str, str]] = field(default_factory=list)  # (uid, reason) of messages left in the mailbox
    held: list[tuple[str, str]] = field(default_factory=list)  # (uid, reason) of messages moved to imap_held


@dataclass(frozen=True)
class Listed:
    """One answer to the size FETCH: the message's number, and its UID and size if the server gave them."""

    seq: str
    uid: str | None
    size: int | None


def _mailbox(cfg: BouncesSection) -> BaseMailBox:
    if not cfg.imap_host or not cfg.imap_user:
        raise ConfigError("bounces.imap_host and bounces.imap_user: required for `newsletter bounces fetch`")
    kind = {"tls": MailBox, "starttls": MailBoxStartTls, "none": MailBoxUnencrypted}[cfg.imap_security]
    return kind(cfg.imap_host, cfg.imap_port, timeout=60)


def fetch(feedback: Feedback, cfg: BouncesSection, limit: int | None = None) -> Fetched:
    """Process the folder's messages; delete or move those stored, hold the poison, leave the rest, report all."""
    where = f"{cfg.imap_user}@{cfg.imap_host}:{cfg.imap_port}/{cfg.imap_folder}"
    try:
        return _fetch(feedback, cfg, limit)
    except (ImapToolsError, imaplib.IMAP4.error, OSError) as exc:  # refused login, lost line, timeout
        raise MailboxError(f"bounces fetch {where}: {type(exc).__name__}: {exc}") from exc


def _fetch(feedback: Feedback, cfg: BouncesSection, limit: int | None) -> Fetched:
    feedback.expire_raw()
    box = _mailbox(cfg)
    try:
        box.login(cfg.imap_user, cfg.imap_password.get_secret_value(), initial_folder=None)
    except BaseException:
        box.client.shutdown()  # a refused login leaves imaplib's socket open
        raise
    with box:
        exists = box.folder.set(cfg.imap_folder)[1][0]
        if cfg.imap_done != "delete" and not box.folder.exists(cfg.imap_done):
            box.folder.create(cfg.imap_done)
        run = _Run(feedback, cfg, box)
        if exists != b"0":  # some servers refuse "1:*" in an empty folder
            run.run(limit)
        run.dispose()
    return run.done


class _Run:
    """One pass over the folder: what was stored (to delete or move), held (to move aside) and left."""

    def __init__(self, feedback: Feedback, cfg: BouncesSection, box: BaseMailBox) -> None:
        self.feedback, self.cfg, self.box = feedback, cfg, box
        self.done = Fetched()
        self.stored: list[str] = []

    def run(self, limit: int | None) -> None:
        for batch in _batches(self._readable(self._listing()[:limit])):
            self._read(batch)

    def _listing(self) -> list[Listed]:
        """Every message's UID and size, in UID order; answers that are neither (a flag update) are skipped."""
        result = self.box.client.uid("FETCH", "1:*", "(UID RFC822.SIZE)")
        check_command_status(result, MailboxFetchError)
        found: dict[tuple[str, str | None], Listed] = {}
        for item in filter(None, map(_listed, result[1])):
            if found.get((item.seq, item.uid)) is None or item.size is not None:  # not a flag update's UID alone
                found[item.seq, item.uid] = item
        return sorted(found.values(), key=lambda i: (i.uid is None, int(i.uid or 0), int(i.seq)))

    def _readable(self, listed: list[Listed]) -> Iterator[tuple[str, int]]:
        """(uid, size) of the messages to download; the others are held or left here, before any is read."""
        for item in listed:
            if item.uid is None:
                self._leave("?", f"message #{item.seq}: the server's FETCH answer has no UID, "
                                 "so it can be neither moved nor deleted")
            elif item.size is None:
                self._hold(item.uid, "the server's FETCH answer has no RFC822.SIZE; not downloaded")
            elif item.size > self.cfg.max_size:
                self._hold(item.uid, f"{item.size} bytes, over [bounces] max_size ({self.cfg.max_size}); "
                                     "not downloaded")
            else:
                yield item.uid, item.size

    def _read(self, batch: list[str]) -> None:
        """Download a batch and handle each message; one the batch's answer misses is asked for alone."""
        bodies = self._bodies(batch)
        for uid in batch:
            raw = bodies.get(uid)
            if raw is None and len(batch) > 1:
                raw = self._bodies([uid]).get(uid)
            if raw is None:
                self._hold(uid, "the server's answer holds no body for it")
            else:
                self._handle(uid, raw)

    def _bodies(self, uids: list[str]) -> dict[str, bytes]:
        """Each UID's raw message, as far as the server's answer can be read."""
        typ, data = self.box.client.uid("FETCH", ",".join(uids), "(UID BODY.PEEK[])")
        if typ != "OK":
            log.warning("imap:%s: FETCH %s answered %s %s", self.cfg.imap_folder, ",".join(uids), typ, data)
            return {}
        found: dict[str, bytes] = {}
        for head, raw in _literals(data):
            uid = _uid(head) or (uids[0] if len(uids) == 1 else None)
            if uid in uids:
                found.setdefault(uid, raw)
        return found

    def _handle(self, uid: str, raw: bytes) -> None:
        """Classify and store one notice in its own transaction; whatever goes wrong stays with this message."""
        notice = Notice(raw, f"imap:{self.cfg.imap_folder}/{uid}")
        try:
            verdict = judge(notice)
            with self.feedback.engine.begin() as conn:
                handled = self.feedback.apply(conn, notice, verdict)
        except DBAPIError as exc:  # away, full or refusing: the next run tries again
            self._leave(uid, _why(exc))
        except Exception as exc:
            log.debug("imap:%s/%s: handling failed", self.cfg.imap_folder, uid, exc_info=True)
            self._hold(uid, _why(exc))
        else:
            self._stored(uid, handled, verdict)

    def _stored(self, uid: str, handled: Handled, verdict: Verdict) -> None:
        """A message the classifier could not read is logged (its first 64 KiB) and kept whole for a person."""
        if verdict.unreadable:
            self._hold(uid, f"logged as unknown: {verdict.reason}")
        else:
            self.done.handled.append(handled)
            self.stored.append(uid)

    def _leave(self, uid: str, reason: str) -> None:
        log.warning("imap:%s/%s: left in the mailbox: %s", self.cfg.imap_folder, uid, reason)
        self.done.left.append((uid, reason))

    def _hold(self, uid: str, reason: str) -> None:
        self.done.held.append((uid, reason))

    def dispose(self) -> None:
        """Delete or move what was stored, then move what is held (creating its folder on first use)."""
        if self.stored and self.cfg.imap_done == "delete":
            self.box.delete(self.stored, chunks=CHUNK)
        elif self.stored:
            self.box.move(self.stored, self.cfg.imap_done, chunks=CHUNK)
        if not self.done.held:
            return
        held = self.cfg.imap_held
        if not self.box.folder.exists(held):
            self.box.folder.create(held)
        self.box.move([uid for uid, _ in self.done.held], held, chunks=CHUNK)
        for uid, reason in self.done.held:
            log.warning("imap:%s/%s: moved to %s: %s", self.cfg.imap_folder, uid, held, reason)


def _listed(raw: object) -> Listed | None:
    """One size answer, ``b'3 (UID 17 RFC822.SIZE 4242)'``; None for anything else."""
    if not isinstance(raw, bytes) or not (seq := _SEQ.match(raw)):
        return None
    size = _SIZE.search(raw)
    uid = _uid(raw)
    if uid is None and size is None:
        return None
    return Listed(seq.group(1).decode(), uid, int(size.group(1)) if size else None)


def _literals(data: list[object]) -> Iterator[tuple[bytes, bytes]]:
    """(the answer's text around it, the literal) for each literal in imaplib's FETCH data, where an answer with
    a literal is a tuple (text before, literal) followed by the text after it (``b' UID 17)'`` or ``b')'``)."""
    for item, after in zip(data, [*data[1:], b""], strict=True):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], bytes) and isinstance(item[1], bytes):
            yield item[0] + b" " + (after if isinstance(after, bytes) else b""), item[1]


def _uid(text: bytes) -> str | None:
    found = _UID.search(text)
    return found.group(1).decode() if found else None


def _batches(messages: Iterator[tuple[str, int]]) -> Iterator[list[str]]:
    """UIDs in runs of at most BATCH messages and BATCH_BYTES (one larger message makes a run alone)."""
    batch: list[str] = []
    size = 0
    for uid, n in messages:
        if batch and (len(batch) == BATCH or size + n > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(uid)
        size += n
    if batch:
        yield batch


def _why(exc: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__
