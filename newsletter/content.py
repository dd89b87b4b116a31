"""Issue files → ``Issue`` / ``Paper`` records, with errors that name file, paper and field.

Every mistake of a file is reported at once, one line each (a ``ContentError`` whose lines are the
mistakes), so an editor fixes a file in one round rather than one round per mistake.

One TOML file per weekly issue, named by its date (``issues/2026-05-17.toml``). pydantic does the
field validation; this module adds what needs the whole issue (duplicates, emptiness, the file
name) and the configured areas, and words every failure as one line.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
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
    """Read and validate one issue file; any mistake becomes a one-line ``ContentError``."""
    data = _read(path)
    if not data.get("papers"):
        raise ContentError(f"{path}: the issue has no papers (add at least one [[papers]] table)")
    try:
        issue = Issue.model_validate({**data, "slug": path.stem}, context={"areas": list(areas)})
    except ValidationError as exc:
        raise ContentError("\n".join(_describe(path, data, err) for err in exc.errors())) from None
    if problems := _file_name(path, issue) + _duplicates(path, issue):
        raise ContentError("\n".join(problems))
    return issue


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ContentError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ContentError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ContentError(f"{path}: cannot read: {exc.strerror}") from None


def _describe(path: Path, data: dict[str, Any], err: ErrorDetails) -> str:
    """One mistake as one line: the file, the paper (number and title) or section, the field, what is wrong."""
    loc = list(err["loc"])
    where = [str(path)]
    if len(loc) >= 2 and loc[0] == "papers" and isinstance(loc[1], int):
        where.append(_paper_label(data["papers"], loc[1]))
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] == "sections" and isinstance(loc[1], int):
        where.append(f"section {loc[1] + 1}")
        loc = loc[2:]
    field = ".".join(_loc_part(p) for p in loc)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        msg = "missing (required)"
    elif err["type"] == "extra_forbidden":
        msg = "unknown field"
    return ": ".join(where + ([field] if field else []) + [msg])


def _loc_part(part: str | int) -> str:
    return f"[{part + 1}]" if isinstance(part, int) else part


def _paper_label(papers: list[Any], index: int) -> str:
    title = papers[index].get("title") if isinstance(papers[index], dict) else None
    return f"paper {index + 1} {title!r}" if title else f"paper {index + 1}"


def _file_name(path: Path, issue: Issue) -> list[str]:
    if path.stem != issue.date.isoformat():
        return [f"{path}: date: {issue.date} does not match the file name (want {issue.date}.toml)"]
    return []


def _duplicates(path: Path, issue: Issue) -> list[str]:
    seen: dict[str, int] = {}
    found = []
    for n, paper in enumerate(issue.papers, start=1):
        base = paper.arxiv.split("v")[0] if paper.arxiv else None  # 2605.01234v2 is 2605.01234
        keys = [("title", paper.title.casefold())] + ([("arXiv id", base)] if base else [])
        for kind, key in keys:
            first = seen.setdefault(f"{kind}:{key}", n)
            if first != n:
                found.append(f"{path}: paper {n} {paper.title!r}: duplicate of paper {first} (same {kind})")
    return found


# --- a new issue -----------------------------------------------------------------------------


NEW_ISSUE = """\
title = "{title}"
date = {date}
week = {{ start = {start}, end = {date} }}
ready = false                  # a draft: `newsletter issue approve {date}` or true here to send it
# preheader = "…"              # the inbox preview line; without it each group names its lead papers

[[sections]]
heading = "This week"
position = "top"               # or "bottom"
body = \"\"\"
A few lines on the week (Markdown).\"\"\"

[[papers]]
title = "The paper's title"
authors = ["First Author", "Second Author"]
# et_al = 12                   # or true: more authors than listed
arxiv = "arXiv:{yymm}.00001"   # as arXiv shows it; or link = "https://…"
status = "preprint"            # or "accepted", with venue = "ICML 2026"
# code = "https://github.com/…"
areas = ["{area}"]             # any of {areas}
keywords = ["one", "two"]

[[papers.sections]]
heading = "What it is"
body = \"\"\"
Two or three sentences for a reader in the field.\"\"\"
"""


def new_issue_text(date: dt.date, title: str, areas: Sequence[str]) -> str:
    """A draft for ``date``: its week filled in, one example paper, ``ready = false``; it passes ``issue check``."""
    return NEW_ISSUE.format(title=title.replace('"', "'"), date=date.isoformat(),
                            start=(date - dt.timedelta(days=6)).isoformat(), yymm=date.strftime("%y%m"),
                            area=areas[0], areas=", ".join(areas))


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
