"""Click counts per paper (``[tracking] clicks``): the signed ``/r/`` link, where it leads, which clicks count.

What is recorded, exactly: for each issue, paper, link kind (``paper``: the title and "Read the paper"; ``code``;
``archive``: "Also this week") and UTC day, how many times that link was followed. Nothing else: no address, no
subscriber id, no IP address, no User-Agent, no time finer than the day (``tables.clicks``). The link names nobody:
``/r/<issue>.<paper>.<kind>.<made>.<signature>`` is the same in every reader's copy of a group's render, so the
render once per group and the body cache (send/bodycache.py) stay as they are.

Where it leads comes from the issue file, never from the URL: the token names the issue, the paper (its anchor)
and the kind, and the target is that paper's link of that kind (``target``, the very rule the untracked email
uses). A tampered token fails its signature (itsdangerous under the engine's key, or its retired key within its
window, as every link: links.py); a token of a paper or kind the issue does not have leads nowhere (404).

Which clicks count (``not_counted``). Mail scanners follow links as the mail arrives, so none of these is counted
(all are still redirected): a HEAD request; a GET whose User-Agent is empty or names a scanner or a script
(``SCANNERS``); and a click within twice ``ignore_first_seconds`` of ``made``, the time in the signed token at
which the group's body was rendered. A tracked send renders each group again once its render is
``ignore_first_seconds`` old (send/groups.py), so every copy goes out within that long after the ``made`` of its
links, and a click within ``ignore_first_seconds`` of a copy's delivery is within twice that of ``made``. The price:
a reader's click up to twice that long after their copy arrived may go uncounted too.

The counts are written by the web process in batches (web/clicks.py) and read by ``report`` (send/clickreport.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from .content import Paper
from .errors import BadToken
from .links import Links
from .store import tables as t
from .store.oncursor import OnCursor

CLICK = "click"  # the salt of click tokens: no other kind of token verifies as one
KINDS = {"paper": "p", "code": "c", "archive": "a"}  # a link kind and its letter in the token
_BY_LETTER = {letter: kind for kind, letter in KINDS.items()}

# User-Agents that follow links without a reader, matched in lowercase: mail security gateways (Barracuda, Mimecast,
# Proofpoint's URL Defense, Microsoft's Safe Links and BingPreview, Google's Safe Browsing check), Office's
# "existence discovery" (the browser's own request follows it), headless browsers, HTTP libraries and command-line
# clients, and any crawler, spider or bot (a word ending in "bot": Googlebot, bingbot, Slackbot; not the phone maker
# Cubot). Plain words and no case folding in the pattern: 1-3 µs a browser's User-Agent, where an IGNORECASE
# pattern with a word-start lookahead took 21-36 µs (timeit).
SCANNERS = re.compile(r"""
    barracuda | mimecast | proofpoint | urldefense | safelinks | bingpreview | google-safety
  | existence\ discovery | headlesschrome | phantomjs
  | python-requests | python-urllib | python-httpx | aiohttp | go-http-client | okhttp | java/ | libwww-perl
  | curl/ | wget/ | crawler | spider | (?<!cu)bot\b
""", re.VERBOSE)


@dataclass(frozen=True)
class Click:
    """What a click token says: the issue, the paper's anchor, the link kind, when its copy's body was made."""

    slug: str
    paper: str
    kind: str
    made: int  # Unix seconds


def target(paper: Paper, kind: str, archive_url: str) -> str | None:
    """Where the paper's link of ``kind`` goes (None: it has none): what an untracked email links to, and the only
    place ``/r/`` redirects to."""
    if kind == "paper":
        return paper.url
    if kind == "code":
        return paper.code
    if kind == "archive":
        return f"{archive_url}#{paper.anchor}"
    return None


@dataclass(frozen=True)
class ClickLinks:
    """An issue's tracked links as one render of a group makes them: every reader of that render gets the same."""

    links: Links
    slug: str
    made: int  # Unix seconds: when the group's body was rendered

    @classmethod
    def at(cls, links: Links, slug: str, now: datetime) -> ClickLinks:
        return cls(links, slug, int(now.timestamp()))

    def url(self, paper: Paper, kind: str) -> str:
        value = f"{self.slug}.{paper.anchor}.{KINDS[kind]}.{self.made}"
        return f"{self.links.base_url}/r/{self.links.sign(CLICK, value)}"


def read(links: Links, token: str) -> Click:
    """The click a token names; ``BadToken`` for a tampered, foreign or malformed one (the signature is checked
    first, so nothing of an unsigned token is looked at)."""
    parts = links.unsign(CLICK, token).rsplit(".", 3)  # the anchor, letter and time have no dot; the slug may
    if len(parts) != 4:
        raise BadToken(CLICK)
    slug, paper, letter, made = parts
    if letter not in _BY_LETTER or not (made.isdigit() and made.isascii()) or not slug or not paper:
        raise BadToken(CLICK)
    return Click(slug, paper, _BY_LETTER[letter], int(made))


def not_counted(method: str, user_agent: str, made: int, now: datetime, ignore_seconds: float) -> str | None:
    """Why a click on a valid link is not counted (it is redirected all the same), or None: it counts."""
    if method != "GET":
        return "not a GET"
    if not user_agent.strip():
        return "no User-Agent"
    if SCANNERS.search(user_agent.lower()):
        return "a scanner's User-Agent"
    if now.timestamp() < made + 2 * ignore_seconds:
        return "too soon after delivery"
    return None


Key = tuple[int, str, str, date]  # issue id, paper, kind, day: a row of ``clicks``


def key(issue_id: int, click: Click, now: datetime) -> Key:
    return issue_id, click.paper, click.kind, now.astimezone(UTC).date()


def add(conn: Connection, counts: Mapping[Key, int]) -> None:
    """Add each count to its row (made at 0 when missing), all in one statement of this transaction.

    In key order: two processes adding to the same rows lock them in the same order, so PostgreSQL never finds
    them deadlocked. The UPSERT adds, so no process reads a count it then writes back: none is lost between them.
    On the cursor (store/oncursor.py): a batch of 16 rows and its commit took 300-360 µs of CPU through
    ``Connection.execute`` and 60 µs so (SQLite, timeit), the bulk of a click's cost in the web process.
    """
    if not counts:
        return
    dialect = conn.dialect
    day = sa.Date().dialect_impl(dialect).bind_processor(dialect) or (lambda d: d)  # SQLite keeps ISO text
    rows = [{"issue_id": i, "paper": p, "kind": k, "day": day(d), "clicks": n}
            for (i, p, k, d), n in sorted(counts.items())]
    _UPSERT[dialect.name].run_many(conn, rows, {})


def _upsert(insert: Callable[[sa.Table], Any]) -> OnCursor:
    """``INSERT … ON CONFLICT (the key) DO UPDATE SET clicks = clicks + excluded.clicks``, in one dialect's words."""
    c = t.clicks.c
    made = insert(t.clicks)
    return OnCursor(made.on_conflict_do_update(index_elements=[c.issue_id, c.paper, c.kind, c.day],
                                               set_={"clicks": c.clicks + made.excluded.clicks}),
                    wrap_errors=True)  # the writer tells the database's refusals (SQLAlchemyError) from its own bugs


_UPSERT = {"sqlite": _upsert(sqlite.insert), "postgresql": _upsert(postgresql.insert)}
