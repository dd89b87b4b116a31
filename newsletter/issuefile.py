"""An issue file as bytes, text and TOML, before any field is validated: its hash, every TOML mistake named by
line and key, and the text every field may not hold.

Why apart from ``content``: these checks run on the raw TOML values, so one pass finds them all. A file with
an invalid value (``date = 2026-13-01``) is still read: the bad line is named, blanked and the file parsed
again, so the rest of its mistakes show in the same run. Control characters are refused here, before the
models strip whitespace (``str.strip`` eats U+000B and U+001F) and before the renderer sees them (a U+000B
in a title broke the MJML compile with an error that named no field).

A ``Problem`` carries the path of the value it is about (``("papers", 0, "title")``), so ``content`` words it
like a pydantic error and drops the pydantic errors of a value already named here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ContentError

Loc = tuple[str | int, ...]

EXAMPLE = "EXAMPLE:"  # starts every placeholder of the draft `issue new` writes; check refuses it
MULTILINE = frozenset({"body", "summary"})  # Markdown fields: tab, newline and CR are text there
MAX_TOML_ERRORS = 20


@dataclass(frozen=True)
class Problem:
    """One mistake: the value it is about, what is wrong, and the file's line when the TOML parser knows it."""

    loc: Loc
    message: str
    line: int | None = None


@dataclass
class IssueFile:
    data: dict[str, Any]
    content_hash: str  # SHA-256 hex of the file's bytes: what `issue approve` approves
    problems: list[Problem] = field(default_factory=list)


def read_issue_file(path: Path) -> IssueFile:
    """The file's bytes, hash and TOML data; TOML mistakes become problems, an unreadable file a ``ContentError``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ContentError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")  # as read_text() did
    except UnicodeDecodeError:
        raise ContentError(f"{path}: not UTF-8 text") from None
    data, problems = parse_toml(text)
    return IssueFile(data, hashlib.sha256(raw).hexdigest(), problems)


# --- TOML, with every bad value named ----------------------------------------------------------------------

_BARE = r'[A-Za-z0-9_-]+|"[^"\n]*"|\'[^\'\n]*\''
_KEY_LINE = re.compile(rf"^\s*((?:{_BARE})(?:\s*\.\s*(?:{_BARE}))*)\s*=")
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def parse_toml(text: str) -> tuple[dict[str, Any], list[Problem]]:
    """Parse ``text``; a bad value on a ``key = value`` line is a problem naming line and key, and that line
    is blanked so the rest still parses. An error elsewhere (a header, inside a multi-line string) ends it."""
    lines = text.split("\n")
    problems: list[Problem] = []
    for _ in range(MAX_TOML_ERRORS):
        try:
            return tomllib.loads("\n".join(lines)), problems
        except tomllib.TOMLDecodeError as exc:
            problem = _toml_problem(lines, str(exc))
            if problem.loc or not problems:  # an unplaced error after a blanked line may be its echo
                problems.append(problem)
            if not problem.loc or problem.line is None:
                return {}, problems
            lines[problem.line - 1] = ""
    return {}, problems


def _toml_problem(lines: list[str], message: str) -> Problem:
    """The parser's message as a problem: on a key's line, past its ``=``, it is about that key's value."""
    found = _AT.search(message)
    reason = _AT.sub("", message)
    if not found:
        return Problem((), f"not valid TOML: {reason}")
    line, column = int(found[1]), int(found[2])
    text = lines[line - 1] if line <= len(lines) else ""
    key = _KEY_LINE.match(text)
    if not key or column <= key.end():
        return Problem((), f"not valid TOML: {reason} (column {column})", line)
    value = text[key.end():].split("#")[0].strip()
    return Problem(_table_at(lines, line) + _key_parts(key[1]), _bad_value(value, reason, column), line)


def _bad_value(value: str, reason: str, column: int) -> str:
    """Why a value is refused, in words: a date that does not exist says so, others quote the parser."""
    for date in re.findall(r"\b\d{4}-\d{2}-\d{2}\b", value):  # also inside { start = …, end = … }
        try:
            dt.date.fromisoformat(date)
        except ValueError as exc:
            return f"not valid TOML: {date} is not a date ({exc})"
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value[:40]) + ("…" if len(value) > 40 else "")
    return f"not valid TOML: {shown} ({reason}, column {column})"


def _key_parts(key: str) -> Loc:
    return tuple(part.strip().strip("\"'") for part in re.findall(rf"{_BARE}", key))


def _table_at(lines: list[str], line: int) -> Loc:
    """Where line ``line`` sits: the last table header above it, with the index of each ``[[array]]`` entry."""
    counts: dict[str, int] = {}
    current: Loc = ()
    for text in lines[:line - 1]:
        header = _HEADER.match(text)
        if not header:
            continue
        names = _key_parts(header[2])
        name = ".".join(str(n) for n in names)
        if header[1] == "[[":
            counts[name] = counts.get(name, 0) + 1
            for nested in [k for k in counts if k.startswith(name + ".")]:
                del counts[nested]
        current = _indexed(names, counts)
    return current


def _indexed(names: Loc, counts: dict[str, int]) -> Loc:
    """``papers.sections`` → ``("papers", 1, "sections", 0)``: each array-of-tables name with its entry."""
    loc: list[str | int] = []
    for n in range(len(names)):
        loc.append(names[n])
        prefix = ".".join(str(p) for p in names[:n + 1])
        if prefix in counts:
            loc.append(counts[prefix] - 1)
    return tuple(loc)


# --- what no text may hold ------------------------------------------------------------------------------------


def _class(*ranges: tuple[int, int]) -> str:
    return "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges)


_C0_C1 = ((0x00, 0x08), (0x0B, 0x0C), (0x0E, 0x1F), (0x7F, 0x9F))
_NONCHARACTERS = ((0xFDD0, 0xFDEF), *((p * 0x10000 + 0xFFFE, p * 0x10000 + 0xFFFF) for p in range(17)))
_IN_TEXT = re.compile(f"[{_class(*_C0_C1, *_NONCHARACTERS)}]")                              # Markdown fields
_IN_LINE = re.compile(f"[{_class(*_C0_C1, (0x09, 0x0A), (0x0D, 0x0D), *_NONCHARACTERS)}]")  # everything else


def text_problems(value: object, loc: Loc = ()) -> Iterator[Problem]:
    """Every string and key of the data holding a control character (tab, newline and CR are allowed in
    Markdown fields only), a noncharacter (U+FFFE, U+FDD0…), or a placeholder of the ``issue new`` draft."""
    if isinstance(value, dict):
        for key, item in value.items():
            if (bad := _IN_LINE.search(key)) is not None:
                yield Problem((*loc, key), f"the field's name contains {_character(bad[0])}")
            else:
                yield from text_problems(item, (*loc, key))
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from text_problems(item, (*loc, n))
    elif isinstance(value, str):
        named = [p for p in loc if isinstance(p, str)]
        pattern = _IN_TEXT if named and named[-1] in MULTILINE else _IN_LINE
        if (bad := pattern.search(value)) is not None:
            yield Problem(loc, f"contains {_character(bad[0])}")
        elif value.strip().startswith(EXAMPLE):
            yield Problem(loc, f"replace the example value ({EXAMPLE} …)")


def scrub(text: str) -> str:
    """``text`` on one line without what no field may hold (control characters, noncharacters): for text from
    outside, such as arXiv's metadata, written into an issue file that must then pass ``issue check``."""
    return " ".join(_IN_LINE.sub(lambda bad: " " if bad[0].isspace() else "", text).split())


def _character(char: str) -> str:
    code = ord(char)
    kind = "a noncharacter" if code >= 0xFDD0 else "a control character"
    return f"{kind} U+{code:04X}"
