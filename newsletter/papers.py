"""arXiv records as ``[[papers]]`` of an issue file: ``newsletter issue add`` and the live preview's form.

What arXiv does not say is guessed and marked as a guess, for the editor to decide: the areas (from the
categories through ``[arxiv] areas``, and from words of title and abstract through ``[arxiv] keywords``),
the status and venue (from the comments, "Accepted at ICML 2025", or the journal reference), the code link
(the first github.com/<owner>/<repo> of abstract or comments). Every paper written validates as a ``Paper``
first, so the file still passes ``issue check``.

The file is appended to, never re-serialised: its bytes before the new papers stay exactly as they were.
tomlkit renders the new tables (it escapes what TOML needs, ``\"\"\"`` and control characters included, and
writes comments) but a tomlkit round trip of a whole issue file is not byte-exact: 0.13-0.15 drop the space
before ``}`` after a date in an inline table, which every issue's ``week = { … }`` line has. A new
``[[papers]]`` at the end adds to the array wherever the last one was; the result is parsed again before
it replaces the file (a temporary file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import ValidationError
from tomlkit.items import Table

from .arxiv import Client, Record, base_id, client_for
from .config import ArxivSection, Config
from .content import Paper, arxiv_id
from .errors import ArxivError, ContentError
from .issuefile import scrub

GUESSED = "areas: suggested, check"

# --- status and venue, from arXiv's comments ------------------------------------------------------------------

_YEAR = re.compile(r"\b(?:19|20)\d{2}\b")
_ACRONYM = re.compile(r"\b[A-Z][A-Za-z]*[A-Z][A-Za-z]*(?:\s*'?|-)(?:19|20)\d{2}\b|(?<=\()[A-Z]{2,}[A-Za-z]*(?=\))")
_CLAIM = re.compile(r"\b(?:accepted|to appear|published|presented|camera[- ]ready(?: version)?)\b(?P<rest>[^;\n]*)",
                    re.IGNORECASE)
_FILLER = re.compile(r"^(?:[\s:,-]+|(?:as|an?|the|for|in|at|to|by|on|of|publication|presentation|version|"
                     r"conference|paper|oral|spotlight|poster|main|long|short|full|track)\b)+", re.IGNORECASE)
_BARE = re.compile(r"(?:^|[.;]\s+)(?P<venue>[A-Z][A-Za-z]*[A-Z][A-Za-z]*\s*'?(?:19|20)\d{2})\b"
                   r"(?!\s*(?:submission|under review|submitted|rebuttal))")
_SENTENCE_END = re.compile(r"(?<=\w)\.(?:\s|$)")
_WORKSHOP = re.compile(r"\s+workshops?\b", re.IGNORECASE)
_LINK = re.compile(r"https?:|www\.|github|\.(?:com|org|io)\b", re.IGNORECASE)  # "code will be published at <url>"


def venue(comment: str, journal_ref: str = "") -> str | None:
    """Where the paper is accepted, by its comments: "Accepted at ICML 2025", "To appear in … (CVPR 2025)",
    "Published as a conference paper at ICLR 2025", "NeurIPS 2024 (Spotlight)"; else its journal reference.
    None for a preprint ("Submitted to NeurIPS 2025", "Under review", "12 pages")."""
    for claim in _CLAIM.finditer(comment):
        if found := _venue_in(claim["rest"]):
            return found
    if bare := _BARE.search(comment):
        return bare["venue"] + (" Workshop" if _WORKSHOP.match(comment, bare.end()) else "")
    return scrub(journal_ref) or None


def _venue_in(rest: str) -> str | None:
    """The venue a claim names: up to its year ("Findings of ACL 2025"), shortened to the acronym when long
    ("Proceedings of the 42nd International Conference on Machine Learning (ICML 2025)" → "ICML 2025")."""
    text = _SENTENCE_END.split(_FILLER.sub("", rest), maxsplit=1)[0]
    year = _YEAR.search(text)
    span = (text[:year.end()] if year else re.split(r"[,(]", text)[0]).strip(" ,:-")
    if span.count("(") > span.count(")"):
        span += ")"
    if year and _WORKSHOP.match(text, year.end()):
        span += " Workshop"
    if len(span) > 40 and (short := _ACRONYM.search(text)):
        return short[0]
    return scrub(span) if 2 <= len(span) <= 80 and not _LINK.search(span) else None


# --- code link and areas --------------------------------------------------------------------------------------

# github.com standing alone (after a space, a bracket, start of text), never inside another URL or a
# javascript: one; the link written is rebuilt from owner and name, so nothing else of the text gets through
_GITHUB = re.compile(r"(?<![\w.:/@%-])(?:https?://)?(?:www\.)?github\.com/(?P<owner>[A-Za-z0-9][A-Za-z0-9-]{0,38})/"
                     r"(?P<repo>[A-Za-z0-9._-]{1,100})", re.IGNORECASE)
_NOT_REPOS = frozenset({"orgs", "topics", "features", "sponsors", "settings", "marketplace", "about", "apps"})


def code_link(*texts: str) -> str | None:
    """The first GitHub repository named in ``texts``, as https://github.com/<owner>/<repo>."""
    for text in texts:
        for found in _GITHUB.finditer(text):
            repo = found["repo"].rstrip(".").removesuffix(".git")
            if found["owner"].casefold() not in _NOT_REPOS and repo.strip("._-"):
                return f"https://github.com/{found['owner']}/{repo}"
    return None


def suggest_areas(record: Record, settings: ArxivSection, areas: Sequence[str]) -> list[str]:
    """Configured areas the categories map to, plus those whose keywords the title or abstract holds (for a
    paper in ``keyword_categories``), in the configured order; none may be an empty list."""
    known = {a.casefold(): a for a in areas}
    found = {settings.areas[c].casefold() for c in record.categories if c in settings.areas}
    if set(record.categories) & set(settings.keyword_categories):
        text = f"{record.title} {record.abstract}"
        found |= {area.casefold() for word, area in settings.keywords.items() if _has_word(text, word)}
    return [known[a.casefold()] for a in areas if a.casefold() in found & set(known)]


def _has_word(text: str, word: str) -> bool:
    """A whole word or phrase; an all-capitals one (RL) in capitals only, so "rl" in a URL is no match."""
    flags = 0 if word.isupper() else re.IGNORECASE
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags) is not None


# --- a record as a paper ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Draft:
    """A paper as it will be written, and what is only a guess about it."""

    asked: str  # the id as asked, normalised: what `arxiv` gets
    record: Record
    fields: dict[str, Any]
    areas_guessed: bool

    def line(self) -> str:
        """One line for the editor: what was added, and what to check."""
        status = f"accepted, {self.fields['venue']}" if self.fields["status"] == "accepted" else "preprint"
        guess = f"; {GUESSED}" if self.areas_guessed else ""
        return f"added {self.asked} {self.fields['title'][:70]!r} ({', '.join(self.fields['areas'])}; {status}{guess})"


def draft(record: Record, asked: str, config: Config) -> Draft:
    """The paper's fields, checked as ``issue check`` checks them: a record that makes no valid paper is an
    error here, before anything is written."""
    settings, areas = config.arxiv, config.newsletter.areas
    authors = [name for a in record.authors if (name := scrub(a))]
    shown = authors[:settings.max_authors]
    accepted = venue(record.comment, record.journal_ref)
    suggested = suggest_areas(record, settings, areas)
    fields: dict[str, Any] = {
        "title": scrub(record.title), "authors": shown, "et_al": len(authors) - len(shown), "arxiv": asked,
        "status": "accepted" if accepted else "preprint", "venue": accepted,
        "code": code_link(record.abstract, record.comment), "areas": suggested or [areas[0]],
        "summary": scrub(record.abstract)}
    fields = {k: v for k, v in fields.items() if v not in (None, 0)}
    try:
        Paper.model_validate(fields, context={"areas": list(areas)})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ArxivError(f"{asked}: arXiv's record makes no valid paper ({where}: {first['msg']})") from None
    return Draft(asked, record, fields, not suggested)


def paper_table(item: Draft) -> Table:
    """The ``[[papers]]`` table, in the order of the shipped issues, with the guesses and arXiv's extras
    (categories, DOI, journal reference: no fields of an issue) as comments."""
    record, fields = item.record, item.fields
    table = tomlkit.table()
    cats = ", ".join(record.categories) or "none"
    table.add(tomlkit.comment(f"from arXiv {scrub(record.id)} ({scrub(cats)}): areas, status and summary are "
                              "suggestions, check them"))
    for key in ("title", "authors", "et_al", "arxiv", "status", "venue", "code"):
        if key in fields:
            table.add(key, fields[key])
    areas = tomlkit.array()
    areas.extend(fields["areas"])
    if item.areas_guessed:
        areas.comment(GUESSED)
    table.add("areas", areas)
    if fields.get("summary"):
        table.add("summary", tomlkit.string(fields["summary"], multiline=True))
    for label, value in (("doi", record.doi), ("journal_ref", record.journal_ref)):
        if value := scrub(value):
            table.add(tomlkit.comment(f"{label}: {value}"))
    return table


def tables_text(drafts: Sequence[Draft]) -> str:
    """The new papers as TOML: ``[[papers]]`` tables, a blank line before each."""
    parts = []
    for item in drafts:
        doc, papers = tomlkit.document(), tomlkit.aot()
        papers.append(paper_table(item))
        doc.append("papers", papers)
        parts.append("\n" + tomlkit.dumps(doc))
    return "".join(parts)


# --- the issue file -----------------------------------------------------------------------------------------------


@dataclass
class Added:
    """What ``add_papers`` did: one line per id, and the TOML it added (or would add, on a dry run)."""

    lines: list[str] = field(default_factory=list)
    text: str = ""
    written: bool = False


def normalise(ids: Sequence[str]) -> list[str]:
    """The ids as ``content`` stores them, each paper once (2605.01234 and 2605.01234v2 are one paper)."""
    chosen: dict[str, str] = {}
    for text in (part for raw in ids for part in re.split(r"[\s,]+", raw) if part):
        try:
            arxiv = arxiv_id(text)
        except ValueError as exc:
            raise ArxivError(f"{exc}: nothing added") from None
        chosen.setdefault(base_id(arxiv), arxiv)
    if not chosen:
        raise ArxivError("name at least one arXiv id (e.g. 2605.01234)")
    return list(chosen.values())


def add_papers(path: Path, ids: Sequence[str], config: Config, client: Client | None = None,
               dry_run: bool = False) -> Added:
    """Add the papers of ``ids`` at the end of the issue file ``path``; one already in it is skipped.

    All or nothing: any error (an unknown id, no network, a record that makes no valid paper) leaves the
    file as it was. The file is read again after arXiv has answered, so a save made meanwhile is kept.
    """
    asked, done = normalise(ids), Added()
    present = _present(_read(path)[0])
    for arxiv in asked:
        if base_id(arxiv) in present:
            done.lines.append(f"skipped {arxiv}: already in the issue (paper {present[base_id(arxiv)]})")
    todo = [a for a in asked if base_id(a) not in present]
    if not todo:
        return done
    try:
        records = (client or client_for(config)).fetch(todo)
    except ArxivError as exc:
        raise ArxivError(f"{exc}; {path.name} is unchanged") from None
    drafts = [draft(records[a], a, config) for a in todo]
    done.text = tables_text(drafts)
    if not dry_run:
        _append(path, done.text, todo)
        done.written = True
    done.lines += [d.line() for d in drafts]
    return done


def _read(path: Path) -> tuple[dict[str, Any], str]:
    """The file's TOML and its text exactly as stored (line endings untouched)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ContentError(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ContentError(f"{path}: not valid TOML ({exc}): fix it first (`newsletter issue check`)") from None


def _present(data: dict[str, Any]) -> dict[str, int]:
    """The arXiv ids already in the issue (without version) → the paper's number, counted from 1."""
    papers = data.get("papers", [])
    if not isinstance(papers, list):
        return {}
    present: dict[str, int] = {}
    for n, paper in enumerate(papers, start=1):
        try:
            present.setdefault(base_id(arxiv_id(paper["arxiv"])), n)
        except (KeyError, TypeError, ValueError):  # no id, or one `issue check` names: not ours to judge
            continue
    return present


def _append(path: Path, addition: str, ids: Sequence[str]) -> None:
    """Append ``addition`` (the papers of ``ids``) to the file as it is now, checked to parse with that many
    more papers, at once; refused if one of them was added meanwhile."""
    data, text = _read(path)
    if meanwhile := [a for a in ids if base_id(a) in _present(data)]:
        raise ContentError(f"{', '.join(meanwhile)}: added to {path.name} meanwhile; it is unchanged: run again")
    papers, count = data.get("papers", []), len(ids)
    if "\r\n" in text:  # a file saved with Windows line endings keeps them
        addition = addition.replace("\n", "\r\n")
    joined = text + ("" if not text or text.endswith("\n") else "\n") + addition
    try:
        after = tomllib.loads(joined).get("papers")
    except tomllib.TOMLDecodeError as exc:
        raise ContentError(f"{path}: the new papers would not parse here ({exc}); {path.name} is unchanged") from None
    if not isinstance(papers, list) or not isinstance(after, list) or len(after) != len(papers) + count:
        raise ContentError(f"{path}: `papers` is not a list of [[papers]] tables; {path.name} is unchanged")
    _replace(path.resolve(), joined, hashlib.sha256(text.encode()).digest())


def _replace(path: Path, text: str, was: bytes) -> None:
    """Write a temporary file beside ``path`` and rename it over ``path``, keeping its mode; refused if the
    file changed since it was read (an editor's save in between is not overwritten)."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        if hashlib.sha256(path.read_bytes()).digest() != was:
            raise ContentError(f"{path}: changed while the papers were added; {path.name} is unchanged: try again")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
