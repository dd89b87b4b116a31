"""What SpamAssassin (local tests only) makes of every group's real message, and ``issue check --spam``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from newsletter import spamcheck
from newsletter.config import load_config
from newsletter.content import find_issue, load_issue

from .conftest import AREAS, REPO, invoke, need

LIMIT = 1.0
HIDDEN_TEXT_RULES = {"HTML_FONT_LOW_CONTRAST", "FONT_INVIS_MSGID", "FONT_INVIS_DIRECT", "HTML_FONT_TINY_NORDNS"}


@pytest.fixture(scope="module")
def _spamassassin() -> None:
    if not spamcheck.spamassassin():
        need("spamassassin is not installed (bash .ci/run installs it through apt)")


def _issue(config_path: Path, ref: str):
    config = load_config(config_path)
    return config, load_issue(find_issue(config.path("issues"), ref), AREAS)


@pytest.mark.usefixtures("_spamassassin")
@pytest.mark.parametrize("ref", ["2026-05-17"])  # 2026-05-28's groups: through the CLI below (45 -> 32 s)
def test_every_group_scores_below_one(make_config, ref):
    """Every group's composed message of a shipped issue scores < 1.0, with no hidden-text rule."""
    config, issue = _issue(make_config(), ref)
    scores = spamcheck.score_issue(config, issue)
    assert len(scores) == 15
    high = [s.line() for s in scores if s.score >= LIMIT]
    assert not high, high
    hidden = [s.line() for s in scores if HIDDEN_TEXT_RULES & {name for name, _ in s.rules}]
    assert not hidden, hidden


@pytest.mark.usefixtures("_spamassassin")
def test_white_hidden_preheader_is_scored(make_config, tmp_path):
    """The score sees hidden white text: <mj-preview>'s white preheader trips HTML_FONT_LOW_CONTRAST."""
    templates = tmp_path / "templates"
    shutil.copytree(REPO / "templates" / "email", templates)
    base = templates / "base.mjml.j2"
    source = base.read_text(encoding="utf-8")
    assert "<mj-title>" in source
    base.write_text(source.replace("<mj-title>", "<mj-preview>{{ preheader }}</mj-preview><mj-title>"),
                    encoding="utf-8")
    config, issue = _issue(make_config(f'[paths]\nissues = "{REPO / "issues"}"\ntemplates = "{templates}"\n'),
                           "2026-05-17")
    key, path = next(spamcheck.write_copies(config, issue, tmp_path / "out"))
    score = spamcheck.score_file(path, key)
    assert "HTML_FONT_LOW_CONTRAST" in dict(score.rules), score.line()
    assert score.score > 0.5


@pytest.mark.usefixtures("_spamassassin")
def test_check_spam_prints_each_groups_score(make_config, runner):
    """issue check --spam prints one line per group, its score and the rules that fired; every group of the
    other shipped issue scores < 1.0 with no hidden-text rule."""
    out = invoke(runner, make_config(), "issue", "check", "2026-05-28", "--spam").output
    lines = [line.split() for line in out.splitlines() if line.strip().startswith("spam ")]
    assert len(lines) == 15, out
    assert {line[1] for line in lines} >= {"llm:", "rl:", "all:"}
    assert all(float(line[2]) < LIMIT for line in lines), out
    assert not [rule for rule in HIDDEN_TEXT_RULES if rule in out], out


def test_check_spam_without_spamassassin(make_config, runner, monkeypatch):
    """Without spamassassin, issue check --spam says so in one line and still checks the file."""
    monkeypatch.setattr(spamcheck, "spamassassin", lambda: None)
    out = invoke(runner, make_config(), "issue", "check", "latest", "--spam").output
    assert "spamassassin is not installed" in out
    assert "ok  2026-05-28.toml" in out
    assert not [line for line in out.splitlines() if line.strip().startswith("spam ")]
