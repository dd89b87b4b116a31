"""README's Security table is the one the attack marks of tests/adversarial make."""

from pathlib import Path

from .table import attacks, markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_made_from_the_attack_tests() -> None:
    """README holds the table `python -m tests.adversarial.table` prints, so no attack is claimed untested."""
    found = attacks()
    assert len(found) >= 20, "the attacks of issue #21 are each a test"
    assert markdown(found) in README.read_text(encoding="utf-8"), \
        "README's Security table is stale: paste `python -m tests.adversarial.table` into it"
