"""A value made from a file, made again only when the file changes: the archive's pages, the feeds' issues."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class FileCache(Generic[T]):
    """``make(path)`` once per version of the file (its mtime), shared by the server's threads.

    ``get`` raises what ``path.stat()`` or ``make`` raises; a failure is not kept, so the next call tries again.
    """

    def __init__(self) -> None:
        self._made: dict[Path, tuple[int, T]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path, make: Callable[[Path], T]) -> T:
        stamp = path.stat().st_mtime_ns
        with self._lock:
            cached = self._made.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
        value = make(path)
        with self._lock:
            self._made[path] = (stamp, value)
        return value
