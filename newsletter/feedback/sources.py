"""Where notices come from when they are files: .eml files, plain folders, maildirs, mbox files, stdin.

A folder means every file in it (a maildir: the messages in its cur/ and new/); an mbox file (one
that starts with "From ") yields each message as ``path#N``. What cannot be read is yielded as an
``Unreadable`` with its reason, never raised, so one bad file does not stop the rest.
"""

from __future__ import annotations

import mailbox
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .ingest import Notice

MAX_BYTES = 64 << 20  # a notice larger than this is not read (a bounce with a 20 MB attachment still is)


@dataclass(frozen=True)
class Unreadable:
    source: str
    reason: str


def notices(paths: Sequence[str], stdin: BinaryIO) -> Iterator[Notice | Unreadable]:
    """Every notice the arguments name; none (or "-") is one message on standard input."""
    if not paths or list(paths) == ["-"]:
        yield Notice(stdin.read(MAX_BYTES + 1)[:MAX_BYTES], "stdin")
        return
    for name in paths:
        yield from _path(Path(name))


def _path(path: Path) -> Iterator[Notice | Unreadable]:
    try:
        if path.is_dir():
            yield from _maildir(path) if (path / "cur").is_dir() and (path / "new").is_dir() else _folder(path)
        elif _is_mbox(path):
            yield from _mbox(path)
        else:
            yield _file(path)
    except OSError as exc:
        yield Unreadable(str(path), exc.strerror or str(exc))


def _folder(folder: Path) -> Iterator[Notice | Unreadable]:
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        yield from _path(path)


def _maildir(folder: Path) -> Iterator[Notice | Unreadable]:
    for sub in ("new", "cur"):
        for path in sorted(p for p in (folder / sub).iterdir() if p.is_file()):
            yield _file(path)


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(5) == b"From "


def _mbox(path: Path) -> Iterator[Notice | Unreadable]:
    box = mailbox.mbox(path, create=False)
    try:
        for n, key in enumerate(box.keys(), start=1):
            yield Notice(box.get_bytes(key), f"{path}#{n}")
    finally:
        box.close()


def _file(path: Path) -> Notice | Unreadable:
    try:
        if path.stat().st_size > MAX_BYTES:
            return Unreadable(str(path), f"larger than {MAX_BYTES >> 20} MB: not read")
        return Notice(path.read_bytes(), str(path))
    except OSError as exc:
        return Unreadable(str(path), exc.strerror or str(exc))
