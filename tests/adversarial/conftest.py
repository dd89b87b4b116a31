"""Every test here is an attack on one of the engine's edges, marked ``@pytest.mark.attack(edge=…, attack=…,
held=…)``: README's Security table is made from those marks (``table.py``), and a run writes the outcome of
each to ``build/adversarial.md``."""

from __future__ import annotations

from pathlib import Path

import pytest

from .table import EDGES

REPO = Path(__file__).resolve().parents[2]
_outcomes: dict[str, str] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "adversarial" not in item.path.parts or item.path.name == "test_readme_table.py":
            continue
        mark = item.get_closest_marker("attack")
        if mark is None or set(mark.kwargs) != {"edge", "attack", "held"} or mark.kwargs["edge"] not in EDGES:
            raise pytest.UsageError(f"{item.nodeid}: an adversarial test needs "
                                    f"@pytest.mark.attack(edge=one of {EDGES}, attack=…, held=…)")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "adversarial" in report.nodeid and (report.when == "call" or report.outcome != "passed"):
        _outcomes[report.nodeid] = "held" if report.passed else report.outcome


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _outcomes:
        out = REPO / "build" / "adversarial.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text("\n".join(f"- {v}: {k}" for k, v in sorted(_outcomes.items())) + "\n", encoding="utf-8")


from tests.test_feedback import sent  # noqa: E402,F401  (an issue sent to five subscribers with VERP on)
