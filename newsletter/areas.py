"""Areas, parsed in one place: a subscriber's choice, a command-line value, a stored field, a group.

A *group* is the set of areas a copy is rendered for: the configured order, canonical case, and
"nothing chosen" meaning every area. Subscribers store their choice ';'-joined ('' = all areas).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

ALL = "all"


class UnknownArea(ValueError):
    """A name that is not one of the configured areas; the message says which ones are."""


def parse(raw: str | Iterable[str], known: Sequence[str]) -> tuple[str, ...]:
    """``"LLM;rl"``, ``"LLM,RL"`` or a list → the chosen areas in configured order; () means all.

    Unknown names raise ``UnknownArea``; choosing every area is stored as () too.
    """
    items = raw.replace(",", ";").split(";") if isinstance(raw, str) else list(raw)
    by_fold = {a.casefold(): a for a in known}
    chosen = set()
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item.casefold() not in by_fold:
            raise UnknownArea(f"unknown area {item!r} (choose from {', '.join(known)})")
        chosen.add(by_fold[item.casefold()])
    return () if len(chosen) == len(known) else tuple(a for a in known if a in chosen)


def group(chosen: Iterable[str], known: Sequence[str]) -> tuple[str, ...]:
    """A choice as a group: configured order, canonical case, unknown names ignored; nothing = all."""
    folded = {a.strip().casefold() for a in chosen}
    return tuple(a for a in known if a.casefold() in folded) or tuple(known)


def stored_group(field: str, known: Sequence[str]) -> tuple[str, ...]:
    """The group of a stored ``areas`` field (``'LLM;RL'``, ``''`` for all)."""
    return group(split(field), known)


def join(areas: Sequence[str]) -> str:
    return ";".join(areas)


def split(stored: str) -> tuple[str, ...]:
    return tuple(a for a in stored.split(";") if a)


def group_key(areas: Sequence[str], known: Sequence[str]) -> str:
    """A stable file-name-safe name for a group: ``all`` or e.g. ``llm-rl``."""
    if set(areas) == set(known):
        return ALL
    return "-".join(a.casefold() for a in areas)


def all_groups(known: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of the areas (2^n − 1 groups), in configured order."""
    return [combo for size in range(1, len(known) + 1) for combo in itertools.combinations(known, size)]


def label(areas: Sequence[str]) -> str:
    return ", ".join(areas) if areas else "all areas"
