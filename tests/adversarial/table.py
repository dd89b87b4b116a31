"""The README's table of attacks, made from the ``@pytest.mark.attack(edge, attack, held)`` marks of the tests
in this folder (read as source, so the table needs no test run): ``python -m tests.adversarial.table``
prints it, and ``test_readme_table`` holds README to it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
EDGES = ("feedback", "secrets", "web", "relay", "content", "operators", "console")
BEGIN, END = "<!-- attacks: begin (python -m tests.adversarial.table) -->", "<!-- attacks: end -->"


@dataclass(frozen=True)
class Attack:
    edge: str
    attack: str
    held: str
    test: str  # file::function


def _mark(node: ast.expr) -> dict[str, str] | None:
    """The keywords of ``pytest.mark.attack(...)``, if ``node`` is that decorator."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "attack"):
        return None
    return {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}


def attacks(folder: Path = HERE) -> list[Attack]:
    found = []
    for path in sorted(folder.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                for deco in node.decorator_list:
                    if (mark := _mark(deco)) is not None:
                        found.append(Attack(mark["edge"], mark["attack"], mark["held"],
                                            f"{path.name}::{node.name}"))
    return sorted(found, key=lambda a: (EDGES.index(a.edge) if a.edge in EDGES else len(EDGES), a.test))


def markdown(found: list[Attack]) -> str:
    rows = ["| edge | attack tried | what holds | test |", "|---|---|---|---|"]
    rows += [f"| {a.edge} | {a.attack} | {a.held} | `{a.test}` |" for a in found]
    return "\n".join([BEGIN, *rows, END])


if __name__ == "__main__":
    print(markdown(attacks()))
