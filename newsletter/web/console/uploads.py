"""Subscriber CSV files between the console's preview and its import, and the API's CSV bodies while they are read.

The file a person uploads is kept until they confirm the import (or discard it) so that exactly that file is
imported, never a second upload, and never another person's: it lives in a folder of its own per uploader (a
hash of ``user:<name>``) under one private folder (0700, this process's user's, checked on every use), readable
by its owner only (0600), named by 128 random bits. An id from someone else's folder is simply not found.
Nothing is imported after ``KEEP``: every use of the uploads (an upload, a preview, an import) first removes what
is older, whoever made it.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ...errors import NewsletterError

KEEP = 3600.0                     # seconds an upload waits for its confirmation
MAX_BYTES = 128 * 1024 * 1024     # a CSV of 1,000,000 subscribers is about 50 MB
CHUNK = 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


class UploadError(NewsletterError):
    """An upload refused (too large, the folder not private): one line for the person or the script."""


@dataclass(frozen=True)
class Upload:
    id: str
    name: str       # the file's name as the browser gave it, for the pages and the audit log
    path: Path


def default_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"newsletter-uploads-{os.getuid()}"


class Uploads:
    def __init__(self, folder: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.folder = folder or default_folder()
        self.clock = clock

    def save(self, owner: str, source: IO[bytes], name: str) -> Upload:
        """Copy ``source`` into a new private file of ``owner``'s; UploadError past ``MAX_BYTES``."""
        self.sweep()
        upload_id = secrets.token_urlsafe(16)
        folder = self._own(owner, create=True)
        path = folder / f"{upload_id}.csv"
        try:
            with _private_file(path) as out:
                _copy(source, out)
            (folder / f"{upload_id}.name").write_text(Path(name).name[:200] or "upload.csv", encoding="utf-8")
        except BaseException:
            self._remove(folder, upload_id)
            raise
        return Upload(upload_id, self._name(folder, upload_id), path)

    def find(self, owner: str, upload_id: str) -> Upload | None:
        """``owner``'s upload ``upload_id``, if it is theirs and not older than ``KEEP``."""
        self.sweep()
        if not _ID.match(upload_id):
            return None
        folder = self._own(owner, create=False)
        path = folder / f"{upload_id}.csv"
        if not path.is_file():
            return None
        return Upload(upload_id, self._name(folder, upload_id), path)

    def discard(self, owner: str, upload_id: str) -> None:
        if _ID.match(upload_id):
            self._remove(self._own(owner, create=False), upload_id)

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A private file for one request's body (the API's CSV), removed when the block ends."""
        root = self._root()
        fd, name = tempfile.mkstemp(prefix="api-", suffix=".csv", dir=root)  # 0600
        try:
            os.close(fd)
            yield Path(name)
        finally:
            Path(name).unlink(missing_ok=True)

    def sweep(self) -> None:
        """Remove every upload older than ``KEEP``, whoever made it."""
        cutoff = self.clock() - KEEP
        for entry in self._root().iterdir():  # the uploaders' folders, and API bodies a crash left behind
            for path in entry.iterdir() if entry.is_dir() else (entry,):
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)

    def _own(self, owner: str, create: bool) -> Path:
        folder = self._root() / hashlib.sha256(owner.encode()).hexdigest()[:32]
        if create:
            folder.mkdir(mode=0o700, exist_ok=True)
        return folder

    def _root(self) -> Path:
        """The private folder, made 0700 if missing; refused if another user could have planted or read it."""
        self.folder.mkdir(mode=0o700, exist_ok=True)
        found = os.lstat(self.folder)
        if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.getuid() or found.st_mode & 0o077:
            raise UploadError(f"{self.folder}: not a private folder of this user (0700); remove it and try again")
        return self.folder

    @staticmethod
    def _name(folder: Path, upload_id: str) -> str:
        try:
            return (folder / f"{upload_id}.name").read_text(encoding="utf-8")
        except OSError:
            return "upload.csv"

    @staticmethod
    def _remove(folder: Path, upload_id: str) -> None:
        for suffix in (".csv", ".name"):
            (folder / f"{upload_id}{suffix}").unlink(missing_ok=True)


@contextmanager
def _private_file(path: Path) -> Iterator[IO[bytes]]:
    """A new file readable by its owner only from its first byte (O_EXCL: never an existing one or a symlink)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        yield out


def _copy(source: IO[bytes], out: IO[bytes]) -> None:
    size = 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        check_size(size)
        out.write(chunk)


def check_size(size: int) -> None:
    if size > MAX_BYTES:
        raise UploadError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB; split it")

