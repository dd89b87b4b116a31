"""How fast the feedback classifier sorts what comes back: the whole corpus of tests/data/feedback, N times.

    python bench/feedback.py                 # 50 rounds
    python bench/feedback.py --rounds 5

One process, one thread, the files read into memory first and one warm-up round not counted, so the figure
is ``classify`` alone (parsing included) on real notices. Prints messages/s overall and the mean time per
message by kind; the overall figure is the one quoted in newsletter/feedback/classify.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "feedback"
sys.path.insert(0, str(REPO))

from newsletter.feedback import classify  # noqa: E402  (the repository's own package, without installing it)


def corpus() -> list[tuple[str, bytes]]:
    return [(path.parent.name, path.read_bytes()) for path in sorted(CORPUS.glob("*/*.eml"))]


def measure(messages: list[tuple[str, bytes]], rounds: int) -> tuple[float, dict[str, float]]:
    """Wall seconds for all rounds, and the mean seconds per message of each kind (by the corpus folder)."""
    per_kind: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    started = time.perf_counter()
    for _ in range(rounds):
        for kind, raw in messages:
            begin = time.perf_counter()
            classify(raw)
            per_kind[kind] += time.perf_counter() - begin
            count[kind] += 1
    total = time.perf_counter() - started
    return total, {kind: per_kind[kind] / count[kind] for kind in per_kind}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50, help="times the whole corpus is classified")
    args = parser.parse_args()
    messages = corpus()
    measure(messages, 1)  # warm-up: imports, regex compilation, the first parse
    total, per_kind = measure(messages, args.rounds)
    done = len(messages) * args.rounds
    print(f"{done:,} messages ({len(messages)} files x {args.rounds}) in {total:.2f} s: "
          f"{done / total:,.0f} messages/s, {total / done * 1e3:.2f} ms each")
    for kind, seconds in sorted(per_kind.items()):
        print(f"  {kind:<11} {seconds * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
