"""arXiv's API as ``issue add`` needs it: the metadata of a few papers by id, under arXiv's terms of use.

The terms (info.arxiv.org/help/api/tou.html) ask for one request every three seconds, one connection at a
time and a User-Agent that names the client. So every id goes in one request (``id_list`` and
``max_results``; at most ``MAX_IDS`` a request), requests are spaced by ``[arxiv] min_interval_seconds``
(the last one's time is also kept in the cache folder, so two commands in a row are spaced too), and each
answer is kept on disk by the id as asked: ``2605.01234v2`` and ``2605.01234`` (the latest version) are two
keys, and asking for a kept id again asks arXiv nothing.

Parsing is the standard library's ``xml.etree`` with the Atom and arXiv namespaces, not feedparser: the
answer is one fixed Atom dialect with five arXiv elements, feedparser would be a new dependency, and it
renames those elements (``arxiv_primary_category``) only for us to map them back. An answer with a DOCTYPE
is refused (no entity expansion) and at most ``MAX_ANSWER`` bytes are read. HTTP is ``urllib``: httpx is
not a dependency of the package, and one GET needs nothing more.

All or nothing: an id arXiv does not know, an error answer or no network is one ``ArxivError`` line and
no record at all, so the caller writes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import ArxivSection, Config
from .errors import ArxivError

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
MAX_IDS = 100  # ids per request: a URL of ~1.5 KB, and a page arXiv answers in one go
MAX_ANSWER = 8 << 20  # bytes read of one answer: 100 entries are ~300 KB
STAMP = ".last-request"  # in the cache folder: when this machine last asked arXiv (seconds since the epoch)


@dataclass(frozen=True)
class Record:
    """One paper as arXiv describes it, whitespace collapsed; ``id`` is arXiv's, with its version."""

    id: str
    title: str
    authors: tuple[str, ...]
    abstract: str
    primary_category: str
    categories: tuple[str, ...]  # the primary first, then the cross-lists
    comment: str = ""
    doi: str = ""
    journal_ref: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Record:
        """A kept record, checked field by field: a file this code did not write is a ValueError (ask again)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a cached record")
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            value = data.get(field.name)
            if field.name in ("authors", "categories") and isinstance(value, list):
                value = tuple(value)
            items = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(item, str) for item in items) or isinstance(value, tuple) != (
                    field.name in ("authors", "categories")):
                raise ValueError(f"{field.name}: not what a cached record holds")
            values[field.name] = value
        return cls(**values)


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def base_id(arxiv: str) -> str:
    """``2605.01234v2`` → ``2605.01234``: one paper in every version (``content`` counts duplicates so)."""
    return arxiv.split("v")[0]


# --- the answer ---------------------------------------------------------------------------------------------


def parse_feed(body: bytes) -> tuple[list[Record], list[str]]:
    """The records of an Atom answer and the messages of its error entries (arXiv answers a malformed id
    with an ``<entry>`` titled "Error" whose summary says what is wrong)."""
    if b"<!DOCTYPE" in body:
        raise ArxivError("arXiv's answer has a DOCTYPE: not read")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ArxivError(f"arXiv's answer is not valid XML: {exc}") from None
    if root.tag != ATOM + "feed":
        raise ArxivError(f"arXiv's answer is not an Atom feed (<{root.tag}>)")
    records, errors = [], []
    for entry in root.findall(ATOM + "entry"):
        link = one_line(entry.findtext(ATOM + "id"))
        if "/api/errors" in link or one_line(entry.findtext(ATOM + "title")) == "Error":
            errors.append(one_line(entry.findtext(ATOM + "summary")) or link)
        elif (record := _record(entry, link)) is not None:
            records.append(record)
    return records, errors


def _record(entry: ET.Element, link: str) -> Record | None:
    """An entry as a record; None for one without an /abs/ id or a title (arXiv's old answer to an unknown id)."""
    arxiv = link.rpartition("/abs/")[2]
    title = one_line(entry.findtext(ATOM + "title"))
    if not arxiv or not title:
        return None
    primary = entry.find(ARXIV + "primary_category")
    first = primary.get("term", "") if primary is not None else ""
    terms = [c.get("term", "") for c in entry.findall(ATOM + "category")]
    return Record(
        id=arxiv, title=title,
        authors=tuple(n for a in entry.findall(ATOM + "author") if (n := one_line(a.findtext(ATOM + "name")))),
        abstract=one_line(entry.findtext(ATOM + "summary")), primary_category=first,
        categories=tuple(dict.fromkeys(t for t in [first, *terms] if t)),
        comment=one_line(entry.findtext(ARXIV + "comment")), doi=one_line(entry.findtext(ARXIV + "doi")),
        journal_ref=one_line(entry.findtext(ARXIV + "journal_ref")))


def match(asked: Iterable[str], records: Sequence[Record]) -> dict[str, Record]:
    """Each id asked with its record: an id with a version wants exactly that version, one without it the
    version arXiv gave (its latest). By id, not position: arXiv does not keep the order of ``id_list``."""
    exact = {r.id: r for r in records}
    latest: dict[str, Record] = {}
    for record in records:
        latest.setdefault(base_id(record.id), record)
    wanted = {arxiv: exact.get(arxiv) or (latest.get(arxiv) if "v" not in arxiv else None) for arxiv in asked}
    return {arxiv: record for arxiv, record in wanted.items() if record is not None}


# --- the client ---------------------------------------------------------------------------------------------


class Client:
    """Asks arXiv for records, at most one request every ``min_interval`` seconds, each answer kept on disk.

    ``clock`` (seconds since the epoch, comparable across processes) and ``sleep`` are injectable so a test
    sees the waits without waiting. One lock: the live preview may ask from two threads at once.
    """

    def __init__(self, settings: ArxivSection, cache_dir: Path, user_agent: str,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api_url, self.timeout = settings.api_url, settings.timeout
        self.min_interval = settings.min_interval_seconds
        self.cache_dir, self.user_agent = cache_dir, user_agent
        self.clock, self.sleep = clock, sleep
        self._last: float | None = None
        self._lock = threading.Lock()

    def fetch(self, ids: Sequence[str]) -> dict[str, Record]:
        """The record of each id (normalised, as ``content.arxiv_id`` makes it), from the cache or one request."""
        with self._lock:
            found = {i: r for i in ids if (r := self._cached(i)) is not None}
            missing = [i for i in dict.fromkeys(ids) if i not in found]
            for start in range(0, len(missing), MAX_IDS):
                found.update(self._ask(missing[start:start + MAX_IDS]))
            return found

    def _ask(self, ids: list[str]) -> dict[str, Record]:
        """One request; the records found are kept even when another id is unknown, so the retry after a typo
        is fixed asks for that one id only."""
        records, errors = parse_feed(self._get(ids))
        if errors:
            raise ArxivError(f"arXiv: {'; '.join(errors)}")
        found = match(ids, records)
        for arxiv, record in found.items():
            self._keep(arxiv, record)
        if unknown := [i for i in ids if i not in found]:
            raise ArxivError(f"{', '.join(unknown)}: arXiv has no such paper")
        return found

    def url(self, ids: Sequence[str]) -> str:
        query = urllib.parse.urlencode({"id_list": ",".join(ids), "max_results": len(ids)}, safe=",")
        return f"{self.api_url}?{query}"

    def _get(self, ids: Sequence[str]) -> bytes:
        """One GET, after the wait arXiv's terms ask for; every failure is one line."""
        self._wait()
        request = urllib.request.Request(self.url(ids), headers={"User-Agent": self.user_agent})
        where = urllib.parse.urlsplit(self.api_url).netloc
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                body: bytes = answer.read(MAX_ANSWER)
        except urllib.error.HTTPError as exc:
            raise ArxivError(f"arXiv ({where}) answered HTTP {exc.code} {exc.reason}{_error_said(exc)}") from None
        except (OSError, http.client.HTTPException) as exc:  # refused, no route, DNS, timeout, cut off
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise ArxivError(f"cannot reach arXiv ({where}): {reason or type(exc).__name__}") from None
        finally:
            self._stamp()
        return body

    def _wait(self) -> None:
        """Sleep until ``min_interval`` has passed since the last request of this client or this machine."""
        last = max(self._last or 0.0, self._stamped())
        wait = min(self.min_interval, last + self.min_interval - self.clock())
        if wait > 0:
            self.sleep(wait)

    def _stamp(self) -> None:
        self._last = self.clock()
        _write(self.cache_dir / STAMP, repr(self._last))

    def _stamped(self) -> float:
        try:
            return float((self.cache_dir / STAMP).read_text(encoding="ascii"))
        except (OSError, ValueError):
            return 0.0

    def _cached(self, arxiv: str) -> Record | None:
        try:
            return Record.from_json((self.cache_dir / f"{arxiv}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError):  # absent, or not a record this code wrote: ask arXiv again
            return None

    def _keep(self, arxiv: str, record: Record) -> None:
        _write(self.cache_dir / f"{arxiv}.json", record.to_json())


def _error_said(error: urllib.error.HTTPError) -> str:
    """What an error answer's Atom says (arXiv explains a 400 in an "Error" entry), if it is one."""
    with contextlib.suppress(ArxivError, OSError, http.client.HTTPException):
        if errors := parse_feed(error.read(MAX_ANSWER))[1]:
            return f": {'; '.join(errors)}"
    return ""


def _write(path: Path, text: str) -> None:
    """Replace ``path`` at once (a reader never sees half a file), 0644: public metadata, no addresses. A cache
    that cannot be written costs the next request, not this command: the failure is swallowed."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError:
            Path(tmp).unlink(missing_ok=True)
            raise


def user_agent(config: Config) -> str:
    """``[arxiv] user_agent``, else the project and a contact from ``[newsletter] from``, as arXiv's terms ask.
    ASCII only: a header's bytes are Latin-1, and a name in another script would not encode."""
    text = config.arxiv.user_agent
    if not text:
        try:
            version = metadata.version("newsletter")
        except metadata.PackageNotFoundError:
            version = "0"
        text = f"newsletter/{version} ({config.newsletter.name}; mailto:{parseaddr(config.newsletter.sender)[1]})"
    return " ".join(text.encode("ascii", "replace").decode("ascii").split())


def client_for(config: Config, **options: Any) -> Client:
    """The client ``[arxiv]`` describes, its cache folder relative to the config file."""
    return Client(config.arxiv, (config.root / config.arxiv.cache_dir).resolve(), user_agent(config), **options)
