"""What a spam filter makes of an issue: SpamAssassin's local score of each group's real message.

Each group's message is built by the send path itself (render → compose → sign, as ``Mailer.copy``
makes a subscriber's copy) and written by the directory transport; ``spamassassin -L -t`` then
scores the file with local tests only (no DNS, no network checks, no Bayes learning), so the score
is what the content and headers earn, the same on every machine with the same rules.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .areas import all_groups, group_key
from .config import Config
from .content import Issue
from .links import sample_links
from .render import Renderer
from .send.compose import prepare
from .send.mailer import Mailer, Recipient
from .send.transport import DirectoryTransport

SAMPLE = Recipient(subscriber_id=1, email="reader@example.org", name="Ada")
_STATUS = re.compile(r"^X-Spam-Status:(.*?)\r?\n(?![ \t])", re.M | re.S)  # with its folded lines
_SCORE = re.compile(r"score=(-?[\d.]+)")
_TESTS = re.compile(r"tests=((?:[A-Z0-9_]+,\s*)*[A-Z0-9_]+|none)")
_RULE = re.compile(r"^\s*(-?\d+\.\d+)\s+([A-Z][A-Z0-9_]+)\s", re.M)


@dataclass(frozen=True)
class SpamScore:
    group: str                            # the group key, e.g. llm-rl
    score: float
    rules: tuple[tuple[str, float], ...]  # every rule that fired, with its points

    def line(self) -> str:
        fired = ", ".join(f"{name} {points:g}" for name, points in self.rules if points) or "no scored rule"
        return f"{self.group}: {self.score:.1f} ({fired})"


def spamassassin() -> str | None:
    """The spamassassin command, or None when it is not installed."""
    return shutil.which("spamassassin")


def write_copies(config: Config, issue: Issue, folder: Path, only: str | None = None) -> Iterator[tuple[str, Path]]:
    """(group key, .eml file) for every group that has papers (or the group ``only``): a subscriber's copy, as sent."""
    renderer = Renderer(config)
    links = sample_links(config)
    for areas in all_groups(renderer.areas):
        if only is not None and group_key(areas, renderer.areas) != only:
            continue  # rendering a group is the costly part: only the one asked for
        group = renderer.render(issue, areas)
        if group is None:
            continue
        target = folder / group.key
        mailer = Mailer(config, transport=functools.partial(DirectoryTransport, target))
        sender = dataclasses.replace(mailer.sender, campaign=issue.slug)  # as a send has it: with its Feedback-ID
        msg = mailer.copy(prepare(group, sender), links, SAMPLE, mailer.new_message_id())
        result = mailer.send_one(msg)
        files = list(target.glob("*.eml"))
        if len(files) != 1:
            raise RuntimeError(f"{group.key}: the directory transport wrote no message: {result.answer}")
        yield group.key, files[0]


def score_file(path: Path, group: str, command: str = "spamassassin") -> SpamScore:
    """SpamAssassin's local-only score of one message file."""
    with tempfile.TemporaryDirectory() as prefs:
        done = subprocess.run(
            [command, "-L", "-t", "-p", str(Path(prefs) / "user_prefs"), "--cf", "use_bayes 0",
             "--cf", "bayes_auto_learn 0"],
            input=path.read_bytes(), capture_output=True, timeout=120, check=False,
        )
    report = done.stdout.decode("utf-8", "replace")
    header = _STATUS.search(report)
    status = " ".join(header.group(1).split()) if header else ""
    score, tests = _SCORE.search(status), _TESTS.search(status)
    if done.returncode not in (0, 1) or not score or not tests:
        raise RuntimeError(f"spamassassin gave no score for {path}: {done.stderr.decode(errors='replace')[-300:]}")
    points = dict((name, float(p)) for p, name in _RULE.findall(report.partition("Content analysis details")[2]))
    names = [n.strip() for n in tests.group(1).split(",") if n.strip() not in ("", "none")]
    return SpamScore(group, float(score.group(1)), tuple((n, points.get(n, 0.0)) for n in names))


def score_issue(config: Config, issue: Issue) -> list[SpamScore]:
    """Every group's score, in group order (one spamassassin process per CPU); raises when it is not installed."""
    command = spamassassin()
    if command is None:
        raise RuntimeError("spamassassin is not installed")
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        copies = list(write_copies(config, issue, Path(tmp)))
        return list(pool.map(lambda copy: score_file(copy[1], copy[0], command), copies))
