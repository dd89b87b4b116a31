"""Issue files → ``Issue`` / ``Paper`` records, with errors that name file, paper and field.

Every mistake of a file is reported at once, one line each (a ``ContentError`` whose lines are the
mistakes), so an editor fixes a file in one round rather than one round per mistake.

One TOML file per weekly issue, named by its date (``issues/2026-05-17.toml``). ``issuefile`` reads it
(bytes, hash, TOML mistakes by line and key, control characters, the draft's placeholders); pydantic does
the field validation; this module adds what needs the whole issue (duplicates, emptiness, the file name)
and the configured areas, and words every failure as one line. A value ``issuefile`` already named is
not named again by pydantic.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from .errors import ContentError, IssueNotFound
from .issuefile import EXAMPLE, Loc, Problem, read_issue_file, text_problems

ISSUE_SUFFIX = ".toml"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Section(_Record):
    heading: str = Field(min_length=1)
    body: str = Field(min_length=1)


class EditorialSection(Section):
    position: Literal["top", "bottom"] = "top"


class Week(_Record):
    start: dt.date
    end: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> Week:
        if self.end < self.start:
            raise ValueError("week ends before it starts")
        return self


class Paper(_Record):
    title: str = Field(min_length=1)
    authors: list[str] = Field(min_length=1)
    et_al: int | bool = False
    notable: list[str] = Field(default_factory=list)
    arxiv: str | None = None
    link: str | None = Field(default=None, pattern=r"^https?://\S+$")
    status: Literal["preprint", "accepted"] = "preprint"
    venue: str | None = None
    code: str | None = Field(default=None, pattern=r"^https?://\S+$")
    areas: list[str] = Field(min_length=1)
    keywords: list[str] = Field(default_factory=list)
    summary: str = ""
    sections: list[Section] = Field(default_factory=list)

    @field_validator("arxiv", mode="before")
    @classmethod
    def _arxiv_id(cls, value: object) -> object:
        return arxiv_id(value) if isinstance(value, str) else value

    @field_validator("areas")
    @classmethod
    def _known_areas(cls, areas: list[str], info: ValidationInfo) -> list[str]:
        known: Sequence[str] = (info.context or {}).get("areas", ())
        by_fold = {a.casefold(): a for a in known}
        for area in areas:
            if area.casefold() not in by_fold:
                raise ValueError(f"unknown area {area!r} (choose from {', '.join(known)})")
        canonical = [by_fold[a.casefold()] for a in areas]
        if len(set(canonical)) != len(canonical):
            raise ValueError("an area is listed twice")
        return canonical

    @model_validator(mode="after")
    def _venue_with_acceptance(self) -> Paper:
        if self.status == "accepted" and not self.venue:
            raise ValueError("venue: required when status = \"accepted\"")
        if self.status == "preprint" and self.venue:
            raise ValueError("venue: only with status = \"accepted\"")
        return self

    @property
    def url(self) -> str | None:
        """Where the title links: the explicit link, else the arXiv abstract page."""
        if self.link:
            return self.link
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else None

    @property
    def anchor(self) -> str:
        """A stable fragment id for this paper on the issue's archive page: the arXiv id, else the title.

        Kept short so the plain-text part's links stay on one readable line.
        """
        if self.arxiv:
            return "arxiv-" + self.arxiv.replace(".", "-")
        return "paper-" + (re.sub(r"[^a-z0-9]+", "-", self.title.casefold()).strip("-")[:40].strip("-") or "untitled")

    @property
    def byline(self) -> str:
        names = ", ".join(self.authors)
        if self.et_al is True:
            names += " et al."
        elif self.et_al:
            names += f" +{self.et_al} more"
        if self.notable:
            names += f" (incl. {', '.join(self.notable)})"
        return names

    @property
    def status_label(self) -> str:
        return f"Accepted: {self.venue}" if self.status == "accepted" else "Preprint"


_ARXIV = re.compile(r"^(?:arxiv:)?\s*(\d{2})(\d{2})\.(\d+)(v[1-9]\d*)?$", re.IGNORECASE)


def arxiv_id(text: str) -> str:
    """An arXiv id as editors paste it (``arXiv:2605.12345v2``), normalised (``2605.12345v2``), or a ValueError
    that says what is wrong in words: since 2015 (YYMM 1501) the number after the dot has five digits."""
    found = _ARXIV.match(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not an arXiv id (YYMM.NNNNN, e.g. 2605.01234, optionally arXiv: and v2)")
    year, month, number, version = found.groups()
    if not 1 <= int(month) <= 12:
        raise ValueError(f"{text!r}: month {month} does not exist (an arXiv id starts with YYMM)")
    digits = 5 if int(year + month) >= 1501 else 4
    if len(number) != digits:
        since = "since January 2015" if digits == 5 else "before 2015"
        raise ValueError(f"{text!r}: {since} the number after the dot has {digits} digits, not {len(number)}")
    return f"{year}{month}.{number}{(version or '').lower()}"


class Issue(_Record):
    slug: str
    content_hash: str  # SHA-256 of the file's bytes as loaded: an approval holds the one it approved
    title: str = Field(min_length=1)
    date: dt.date
    week: Week
    ready: StrictBool = False  # a TOML boolean: "yes" is a mistake, not true
    preheader: str = ""
    sections: list[EditorialSection] = Field(default_factory=list)
    papers: list[Paper] = Field(default_factory=list)

    @property
    def top_sections(self) -> list[EditorialSection]:
        return [s for s in self.sections if s.position == "top"]

    @property
    def bottom_sections(self) -> list[EditorialSection]:
        return [s for s in self.sections if s.position == "bottom"]


# --- loading ---------------------------------------------------------------------------------


def load_issue(path: Path, areas: Sequence[str]) -> Issue:
    """Read and validate one issue file; every mistake of it is one line of one ``ContentError``."""
    raw = read_issue_file(path)
    data = raw.data
    if not data and raw.problems:  # a TOML error that could not be stepped over: nothing more to check
        raise ContentError("\n".join(_line(path, data, p) for p in raw.problems))
    own = raw.problems + list(text_problems(data))  # mistakes of one value: pydantic's say the same
    found = own + _reserved(data) + _no_papers(data) + _file_name(path, data) + _duplicates(data)
    errors: list[ErrorDetails] = []
    try:
        issue = Issue.model_validate({**data, "slug": path.stem, "content_hash": raw.content_hash},
                                     context={"areas": list(areas)})
    except ValidationError as exc:
        errors = [e for e in exc.errors() if not any(_within(p.loc, tuple(e["loc"])) for p in own)]
    if lines := [_line(path, data, p) for p in found] + [_line(path, data, _problem(e)) for e in errors]:
        raise ContentError("\n".join(lines))
    return issue


def _within(outer: Loc, loc: Loc) -> bool:
    return bool(outer) and loc[:len(outer)] == outer


def _problem(err: ErrorDetails) -> Problem:
    """A pydantic error as a problem, in the editor's words."""
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = "missing (required)"
    elif err["type"] == "extra_forbidden":
        msg = "unknown field"
    return Problem(tuple(err["loc"]), msg)


def _line(path: Path, data: dict[str, Any], problem: Problem) -> str:
    """One mistake as one line: the file, its line if known, the paper (number and title) or section, the field."""
    loc = list(problem.loc)
    where = [str(path)] + ([f"line {problem.line}"] if problem.line else [])
    if len(loc) >= 2 and loc[0] == "papers" and isinstance(loc[1], int):
        where.append(_paper_label(data.get("papers"), loc[1]))
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] == "sections" and isinstance(loc[1], int):
        where.append(f"section {loc[1] + 1}")
        loc = loc[2:]
    field = ".".join(_loc_part(p) for p in loc)
    return ": ".join(where + ([field] if field else []) + [problem.message])


def _loc_part(part: str | int) -> str:
    """A field name as printed: a name holding a control character is shown escaped, never raw."""
    if isinstance(part, int):
        return f"[{part + 1}]"
    return part if part.isprintable() else repr(part)[1:-1]


def _paper_label(papers: object, index: int) -> str:
    paper = papers[index] if isinstance(papers, list) and index < len(papers) else None
    title = paper.get("title") if isinstance(paper, dict) else None
    return f"paper {index + 1} {title!r}" if title else f"paper {index + 1}"


def _reserved(data: dict[str, Any]) -> list[Problem]:
    """``slug`` and ``content_hash`` come from the file's name and bytes, never from its text."""
    return [Problem((key,), "unknown field") for key in ("slug", "content_hash") if key in data]


def _no_papers(data: dict[str, Any]) -> list[Problem]:
    if data.get("papers"):
        return []
    return [Problem((), "the issue has no papers (add at least one [[papers]] table)")]


def _file_name(path: Path, data: dict[str, Any]) -> list[Problem]:
    """Told with the other mistakes: read from the TOML value, not from a validated issue."""
    date = data.get("date")
    if isinstance(date, dt.date) and not isinstance(date, dt.datetime) and path.stem != date.isoformat():
        return [Problem(("date",), f"{date} does not match the file name (want {date}.toml)")]
    return []


def _duplicates(data: dict[str, Any]) -> list[Problem]:
    """The same paper twice (same title, or same arXiv id in any version), from the raw values."""
    papers = data.get("papers")
    seen: dict[str, int] = {}
    found = []
    for n, paper in enumerate(papers if isinstance(papers, list) else [], start=1):
        for kind, key in _identities(paper):
            first = seen.setdefault(f"{kind}:{key}", n)
            if first != n:
                found.append(Problem(("papers", n - 1), f"duplicate of paper {first} (same {kind})"))
    return found


def _identities(paper: object) -> list[tuple[str, str]]:
    if not isinstance(paper, dict):
        return []
    title, arxiv = paper.get("title"), paper.get("arxiv")
    keys = [("title", title.strip().casefold())] if isinstance(title, str) and title.strip() else []
    try:
        base = arxiv_id(arxiv).split("v")[0] if isinstance(arxiv, str) else None  # 2605.01234v2 is 2605.01234
    except ValueError:
        base = None
    return keys + ([("arXiv id", base)] if base else [])


# --- a new issue -----------------------------------------------------------------------------


NEW_ISSUE = """\
# A draft: replace every value that starts with {example} (`newsletter issue check {date}` names those left).
title = {title}
date = {date}
week = {{ start = {start}, end = {date} }}
ready = false                  # a draft: `newsletter issue approve {date}` or true here to send it
# preheader = "…"              # the inbox preview line; without it each group names its lead papers

[[sections]]
heading = "This week"
position = "top"               # or "bottom"
body = \"\"\"
{example} a few lines on the week (Markdown).\"\"\"

[[papers]]
title = "{example} the paper's title"
authors = ["{example} First Author", "{example} Second Author"]
# et_al = 12                   # or true: more authors than listed
arxiv = "{example} arXiv:{yymm}.01234"  # as arXiv shows it; or link = "https://…"
status = "preprint"            # or "accepted", with venue = "ICML 2026"
# code = "https://github.com/…"
areas = ["{area}"]             # any of {areas}
keywords = ["{example} keyword"]

[[papers.sections]]
heading = "What it is"
body = \"\"\"
{example} two or three sentences for a reader in the field.\"\"\"
"""


def new_issue_text(date: dt.date, title: str, areas: Sequence[str]) -> str:
    """A draft for ``date``: its week filled in, ``ready = false``, and one example paper whose values start
    with ``EXAMPLE:``, which ``issue check`` refuses until replaced: a draft sent as written would mail
    placeholders (and an arXiv id of some other paper) to the list."""
    return NEW_ISSUE.format(title=json.dumps(title, ensure_ascii=False), date=date.isoformat(),
                            start=(date - dt.timedelta(days=6)).isoformat(), yymm=date.strftime("%y%m"),
                            area=areas[0], areas=", ".join(areas), example=EXAMPLE)


# --- finding ---------------------------------------------------------------------------------


def issue_files(issues_dir: Path) -> list[Path]:
    """Every issue file, oldest first (names are ISO dates, so name order is date order)."""
    if not issues_dir.is_dir():
        raise IssueNotFound(f"{issues_dir}: no issues folder")
    return sorted(issues_dir.glob("*" + ISSUE_SUFFIX))


def find_issue(issues_dir: Path, ref: str) -> Path:
    """ISSUE on the command line: a file stem (``2026-05-17``), a path, or ``latest``."""
    files = issue_files(issues_dir)
    if ref == "latest":
        if not files:
            raise IssueNotFound(f"{issues_dir}: no issue files (*.toml)")
        return files[-1]
    as_path = Path(ref)
    if as_path.suffix == ISSUE_SUFFIX and as_path.is_file():
        return as_path
    for path in files:
        if path.stem == ref:
            return path
    known = ", ".join(p.stem for p in files[-5:]) or "none"
    raise IssueNotFound(f"no issue {ref!r} in {issues_dir} (latest: {known})")
