"""A real IMAP4rev1 server for tests that a script can tell to misbehave (as ``smtpd.py`` is for SMTP).

It speaks enough of RFC 3501 (and RFC 6851 MOVE) on a loopback socket for imaplib, imap-tools and
``bounces fetch``: LOGIN, CAPABILITY, SELECT/EXAMINE, LIST, CREATE, (UID) SEARCH ALL, (UID) FETCH, UID STORE,
UID COPY/MOVE, EXPUNGE, CLOSE, NOOP, LOGOUT. Messages live in memory, per folder. A message can claim an
RFC822.SIZE it does not hold, so a "300 MB" message costs the test nothing, and can be told to leave its UID
out of every FETCH answer, or its body out of the answer that asks for it, as broken servers do; ``bodies``
records whose bodies were asked for.
"""

from __future__ import annotations

import re
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

HOST = "127.0.0.1"
CAPABILITIES = "IMAP4rev1 MOVE UIDPLUS"
_WORD = re.compile(r'"((?:[^"\\]|\\.)*)"|(\((?:[^()]|\([^()]*\))*\))|(\S+)')
_ITEM = re.compile(r"BODY(?:\.PEEK)?\[[^\]]*\]|[A-Z0-9.]+")
_BODIES = {"BODY[]": "BODY[]", "BODY.PEEK[]": "BODY[]", "RFC822": "RFC822"}
_HEADERS = {"BODY[HEADER]": "BODY[HEADER]", "BODY.PEEK[HEADER]": "BODY[HEADER]", "RFC822.HEADER": "RFC822.HEADER"}


class Bad(Exception):
    """A command the server does not understand: answered BAD."""


class No(Exception):
    """A command the server refuses: answered NO."""


@dataclass
class Stored:
    """One message in a folder: its bytes, the size it claims (None: its own) and how the server misbehaves."""

    uid: int
    raw: bytes
    size: int | None = None
    no_uid: bool = False
    no_body: bool = False
    flags: set[str] = field(default_factory=set)

    @property
    def rfc822_size(self) -> int:
        return len(self.raw) if self.size is None else self.size


@dataclass
class Mailbox:
    """What the server holds and what it was asked, shared by every session (under ``lock``)."""

    user: str
    password: str
    port: int = 0
    folders: dict[str, list[Stored]] = field(default_factory=lambda: {"INBOX": []})
    uidnext: dict[str, int] = field(default_factory=lambda: {"INBOX": 1})
    bodies: list[tuple[str, int]] = field(default_factory=list)  # (folder, uid) of every body sent
    commands: list[str] = field(default_factory=list)             # every command line but LOGIN's
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deliver(self, raw: bytes, folder: str = "INBOX", size: int | None = None, no_uid: bool = False,
                no_body: bool = False) -> int:
        """Put a message into ``folder``; its UID. ``size``: the RFC822.SIZE to claim; ``no_uid``: omit its UID
        from FETCH answers; ``no_body``: answer a FETCH of its body without the body."""
        with self.lock:
            return self._add(folder, Stored(0, raw, size, no_uid, no_body))

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.lock:
            return [m.uid for m in self.folders.get(folder, [])]

    def raw(self, folder: str) -> list[bytes]:
        with self.lock:
            return [m.raw for m in self.folders.get(folder, [])]

    def _add(self, folder: str, msg: Stored) -> int:
        if folder not in self.folders:
            raise No(f"[TRYCREATE] no folder {folder}")
        msg.uid, self.uidnext[folder] = self.uidnext[folder], self.uidnext[folder] + 1
        self.folders[folder].append(msg)
        return msg.uid


def _words(text: str) -> list[str]:
    """Arguments: quoted strings unquoted, parenthesized lists kept whole, atoms."""
    return [re.sub(r"\\(.)", r"\1", m[1]) if m[1] is not None else m[0] for m in _WORD.finditer(text)]


def _numbers(spec: str, known: list[int]) -> set[int]:
    """The members of ``known`` (UIDs or sequence numbers) that an IMAP set such as ``1:*`` or ``3,5:7`` names."""
    star, chosen = max(known, default=0), set()
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        a, b = (star if x == "*" else int(x) for x in (lo, hi or lo))
        chosen |= {n for n in known if min(a, b) <= n <= max(a, b)}
    return chosen


def _fetch_items(text: str) -> list[str]:
    items = _ITEM.findall(text.upper().strip("()"))
    unknown = [i for i in items if i not in _BODIES and i not in _HEADERS
               and i not in ("UID", "FLAGS", "RFC822.SIZE", "INTERNALDATE")]
    if unknown:
        raise Bad(f"FETCH items not served here: {unknown}")
    return items


class Session(socketserver.StreamRequestHandler):
    """One client connection: reads tagged commands line by line and answers them."""

    server: Server
    timeout = 30

    def setup(self) -> None:
        super().setup()
        self.box, self.selected, self.authenticated = self.server.box, "", False

    def handle(self) -> None:
        self.say(f"* OK [CAPABILITY {CAPABILITIES}] imapd for tests ready")
        while line := self.rfile.readline(1 << 16):
            tag, _, rest = line.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            name, _, args = rest.partition(" ")
            name = name.upper()
            if name == "UID":
                sub, _, args = args.partition(" ")
                name = f"UID {sub.upper()}"
            if self.answer(tag, name, args):
                return

    def answer(self, tag: str, name: str, args: str) -> bool:
        """Run one command and say how it ended; whether the session is over."""
        command = COMMANDS.get(name)
        try:
            with self.box.lock:
                if name != "LOGIN":
                    self.box.commands.append(f"{name} {args}")
                if command is None:
                    raise Bad(f"unknown command {name}")
                if not self.authenticated and name not in ("LOGIN", "CAPABILITY", "NOOP", "LOGOUT"):
                    raise Bad("log in first")
                command(self, _words(args))
            self.say(f"{tag} OK {name} completed")
        except No as exc:
            self.say(f"{tag} NO {exc}")
        except (Bad, ValueError, IndexError) as exc:
            self.say(f"{tag} BAD {exc}")
        return name == "LOGOUT"

    def say(self, line: str | bytes) -> None:
        self.wfile.write((line.encode() if isinstance(line, str) else line) + b"\r\n")

    # --- commands ---------------------------------------------------------------------------------------------

    def capability(self, args: list[str]) -> None:
        self.say(f"* CAPABILITY {CAPABILITIES}")

    def noop(self, args: list[str]) -> None:
        pass

    def logout(self, args: list[str]) -> None:
        self.say("* BYE logging out")

    def login(self, args: list[str]) -> None:
        if args[:2] != [self.box.user, self.box.password]:
            raise No("[AUTHENTICATIONFAILED] Authentication failed.")
        self.authenticated = True

    def select(self, args: list[str]) -> None:
        if args[0] not in self.box.folders:
            raise No(f"Mailbox doesn't exist: {args[0]}")
        self.selected = args[0]
        self.say(r"* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)")
        self.say(f"* {len(self.messages)} EXISTS")
        self.say("* 0 RECENT")
        self.say("* OK [UIDVALIDITY 1] UIDs valid")
        self.say(f"* OK [UIDNEXT {self.box.uidnext[self.selected]}] next")

    def list(self, args: list[str]) -> None:
        pattern = re.compile(re.escape(args[0] + args[1]).replace(r"\*", ".*").replace("%", "[^/]*") + "$")
        for name in self.box.folders:
            if pattern.match(name):
                self.say(f'* LIST (\\HasNoChildren) "/" "{name}"')

    def create(self, args: list[str]) -> None:
        if args[0] in self.box.folders:
            raise No(f"[ALREADYEXISTS] {args[0]} exists")
        self.box.folders[args[0]], self.box.uidnext[args[0]] = [], 1

    def expunge(self, args: list[str], quiet: bool = False) -> None:
        for seq in range(len(self.messages), 0, -1):
            if "\\Deleted" in self.messages[seq - 1].flags:
                del self.messages[seq - 1]
                if not quiet:
                    self.say(f"* {seq} EXPUNGE")

    def close(self, args: list[str]) -> None:
        self.expunge(args, quiet=True)
        self.selected = ""

    def search(self, args: list[str], by_uid: bool = False) -> None:
        if [a.upper() for a in args if a.upper() not in ("CHARSET", "US-ASCII", "UTF-8")] != ["ALL"]:
            raise Bad("only SEARCH ALL is served here")
        found = [m.uid for m in self.messages] if by_uid else range(1, len(self.messages) + 1)
        self.say("* SEARCH" + "".join(f" {n}" for n in found))

    def fetch(self, args: list[str], by_uid: bool = False) -> None:
        items = _fetch_items(" ".join(args[1:]))
        for seq, msg in self.chosen(args[0], by_uid):
            self.wfile.write(self.fetched(seq, msg, items + (["UID"] if by_uid else [])) + b"\r\n")

    def store(self, args: list[str]) -> None:
        how, flags = args[1].upper(), set(args[2].strip("()").split())
        for seq, msg in self.chosen(args[0], True):
            msg.flags = (msg.flags | flags if how.startswith("+") else msg.flags - flags if how.startswith("-")
                         else flags)
            if not how.endswith(".SILENT"):
                self.say(f"* {seq} FETCH (UID {msg.uid} FLAGS ({' '.join(sorted(msg.flags))}))")

    def copy(self, args: list[str], move: bool = False) -> None:
        chosen = self.chosen(args[0], True)
        if args[1] not in self.box.folders:
            raise No(f"[TRYCREATE] no folder {args[1]}")
        for _, msg in chosen:
            self.box._add(args[1], Stored(0, msg.raw, msg.size, msg.no_uid, msg.no_body, msg.flags - {"\\Deleted"}))
        if move:
            for _, msg in chosen:
                msg.flags.add("\\Deleted")
            self.expunge([])

    # --- helpers ---------------------------------------------------------------------------------------------

    @property
    def messages(self) -> list[Stored]:
        if not self.selected:
            raise Bad("no folder selected")
        return self.box.folders[self.selected]

    def chosen(self, spec: str, by_uid: bool) -> list[tuple[int, Stored]]:
        """(sequence number, message) of those a set names, by UID or by sequence number."""
        numbered = list(enumerate(self.messages, start=1))
        wanted = _numbers(spec, [m.uid if by_uid else seq for seq, m in numbered])
        return [(seq, m) for seq, m in numbered if (m.uid if by_uid else seq) in wanted]

    def fetched(self, seq: int, msg: Stored, items: list[str]) -> bytes:
        """One FETCH answer: the plain items first, then the literals (as Dovecot orders them)."""
        plain: list[str] = []
        literals: list[bytes] = []
        for item in dict.fromkeys(items):
            if item == "UID" and not msg.no_uid:
                plain.append(f"UID {msg.uid}")
            elif item == "FLAGS":
                plain.append(f"FLAGS ({' '.join(sorted(msg.flags))})")
            elif item == "RFC822.SIZE":
                plain.append(f"RFC822.SIZE {msg.rfc822_size}")
            elif item == "INTERNALDATE":
                plain.append('INTERNALDATE "28-May-2026 09:00:00 +0000"')
            elif (item in _BODIES or item in _HEADERS) and (literal := self.literal(msg, item)):
                literals.append(literal)
        return f"* {seq} FETCH (".encode() + b" ".join([p.encode() for p in plain] + literals) + b")"

    def literal(self, msg: Stored, item: str) -> bytes:
        if item in _BODIES:
            self.box.bodies.append((self.selected, msg.uid))
            if msg.no_body:
                return b""
            if not item.startswith("BODY.PEEK"):
                msg.flags.add("\\Seen")
            name, data = _BODIES[item], msg.raw
        else:
            name, data = _HEADERS[item], msg.raw.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        return f"{name} {{{len(data)}}}\r\n".encode() + data


def _by_uid(method: Callable[..., None], **kwargs: bool) -> Callable[[Session, list[str]], None]:
    return lambda session, args: method(session, args, by_uid=True, **kwargs)


COMMANDS: dict[str, Callable[[Session, list[str]], None]] = {
    "CAPABILITY": Session.capability, "NOOP": Session.noop, "LOGOUT": Session.logout, "LOGIN": Session.login,
    "SELECT": Session.select, "EXAMINE": Session.select, "LIST": Session.list, "CREATE": Session.create,
    "EXPUNGE": Session.expunge, "CLOSE": Session.close, "SEARCH": Session.search, "FETCH": Session.fetch,
    "UID SEARCH": _by_uid(Session.search), "UID FETCH": _by_uid(Session.fetch), "UID STORE": Session.store,
    "UID COPY": Session.copy, "UID MOVE": lambda session, args: session.copy(args, move=True),
}


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def __init__(self, box: Mailbox) -> None:
        super().__init__((HOST, 0), Session)
        self.box = box


@contextmanager
def imap_server(user: str = "reader", password: str = "secret") -> Iterator[Mailbox]:
    """A running server on a free loopback port: yields its mailbox (``port`` says where it listens)."""
    box = Mailbox(user, password)
    server = Server(box)
    box.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="imapd", daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
