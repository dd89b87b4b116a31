"""How the feedback classifier reads a folder of real notices, judged against Sisimai: the figures issue #24 states.

    python bench/classify_corpus.py FOLDER                # every *.eml in FOLDER, in two halves and in all
    python bench/classify_corpus.py FOLDER --misses       # also one line per miss, by the Sisimai module that read it

Sisimai (Debian's libsisimai-perl 4.25.15, through tests/sisimai_reference.pl) reads every file; then ``classify``
does. On the notices Sisimai calls a bounce it prints the share where we find Sisimai's first recipient (per
notice, as tests/test_feedback_classify.py counts) and every recipient (per record); the share where we also agree
on hard or soft (a recipient not found is a disagreement); and the share where we give Sisimai's reason. A
recipient counts as found under Sisimai's address or under its alias (a DSN's Original-Recipient, the address
the engine sent to, which classify reports). On Sisimai's ARF reports ("feedback") it counts how many we call a
complaint; on its auto-replies ("vacation", and files named rfc3834-*) how many we take for a bounce; on what
Sisimai cannot read at all, how many we call a bounce. The sorted file list is cut in two: tune on the first half,
and the second half shows how much of the tuning carries over to notices not looked at. Speed is CPU time
(``time.process_time``), which the other jobs on a shared machine disturb less than wall time.

Measured on Sisimai's set-of-emails maildir/bsd (629 notices, not in this repository), issue #24's classifier:
recipient found 99.5 %, hard/soft 99.1 %, reason 97.9 %, complaints 17/17, auto-replies taken for a bounce 0/7
(second half alone: 99.0 %, 98.4 %, 96.1 %); before it: 92.8 %, 83.2 %, no reasons, 13/17, 0/7.

Two corpora never looked at before, measured untuned first (2026-12-04; neither in this repository):
Mail::DeliveryStatus::BounceParser's t/corpus (129 notices; 117 Sisimai calls a bounce) 98.3 %, 98.3 %, 95.7 %,
no complaints, 0/2 auto-replies taken for a bounce; PHP-Bounce-Handler's eml/ (79; 67 bounces) 95.5 %, 95.5 %,
95.5 %, 10/10 complaints. Two general fixes followed (blank lines above the headers, message/xdelivery-status):
98.3 %, 98.3 %, 96.6 % and 100 %, 100 %, 100 %; set-of-emails and tests/data/feedback unchanged.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parent.parent
SISIMAI = REPO / "tests" / "sisimai_reference.pl"
sys.path.insert(0, str(REPO))

from newsletter.feedback import Kind, Verdict, classify  # noqa: E402  (the repository's own package)

NOT_BOUNCES = ("feedback", "vacation")


@dataclass
class Tally:
    """What one set of files came to, and a line for each miss."""

    bounces: int = 0
    found: int = 0
    agreed: int = 0
    reasons: int = 0
    records: int = 0
    records_found: int = 0
    records_agreed: int = 0
    complaints: int = 0
    complaints_seen: int = 0
    auto_replies: int = 0
    auto_as_bounce: int = 0
    unread: int = 0
    unread_as_bounce: int = 0
    misses: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def lines(self, title: str) -> list[str]:
        def pct(n: int, d: int) -> str:
            return f"{n / d:.1%} ({n}/{d})" if d else "-"
        return [f"{title}:",
                f"  recipient found    {pct(self.found, self.bounces)}   every recipient "
                f"{pct(self.records_found, self.records)}",
                f"  hard/soft agrees   {pct(self.agreed, self.bounces)}   every recipient "
                f"{pct(self.records_agreed, self.records)}",
                f"  reason agrees      {pct(self.reasons, self.bounces)}",
                f"  complaints         {self.complaints_seen}/{self.complaints} recognised",
                f"  auto-replies       {self.auto_as_bounce}/{self.auto_replies} taken for a bounce",
                f"  Sisimai reads none {self.unread_as_bounce}/{self.unread} called a bounce by us"]


def reference(paths: list[Path]) -> dict[Path, dict[str, object]]:
    """Sisimai's record of each file, 200 files to a run of the Perl script."""
    out: dict[Path, dict[str, object]] = {}
    for start in range(0, len(paths), 200):
        chunk = paths[start:start + 200]
        done = subprocess.run(["perl", str(SISIMAI), *map(str, chunk)], capture_output=True, text=True,
                              check=True, stdin=subprocess.DEVNULL)
        out.update(zip(chunk, (json.loads(line) for line in done.stdout.splitlines()), strict=True))
    return out


def judge(tally: Tally, path: Path, record: dict[str, object], verdict: Verdict) -> None:
    """Count one file in ``tally``."""
    ours = {r.address.lower(): r for r in verdict.recipients}
    if not record["verdict"]:
        tally.unread += 1
        tally.unread_as_bounce += verdict.kind is Kind.BOUNCE
        if verdict.kind is Kind.BOUNCE:
            tally.misses["(Sisimai reads none)"].append(
                f"{path.name}: we: bounce {[r.address for r in verdict.recipients][:3]} [{verdict.reason[:60]}]")
        return
    reason = str(record["reason"])
    if reason == "feedback":
        tally.complaints += 1
        tally.complaints_seen += verdict.kind is Kind.COMPLAINT
        if verdict.kind is not Kind.COMPLAINT:
            tally.misses["ARF"].append(f"{path.name}: not a complaint: {verdict.kind} {verdict.reason}")
        return
    if reason == "vacation" or path.name.startswith("rfc3834"):
        tally.auto_replies += 1
        tally.auto_as_bounce += verdict.kind is Kind.BOUNCE
        return
    records = [r for r in cast(list[dict[str, object]], record["records"]) if r["reason"] not in NOT_BOUNCES]
    for i, each in enumerate(records):
        mine = ours.get(str(each["recipient"])) or ours.get(str(each.get("alias") or "-"))
        hit, same = mine is not None, mine is not None and mine.hard is bool(each["hard"])
        tally.records += 1
        tally.records_found += hit
        tally.records_agreed += same
        if i:
            continue
        tally.bounces += 1
        tally.found += hit
        tally.agreed += same
        tally.reasons += mine is not None and mine.reason == each["reason"]
        if not same or mine is None or mine.reason != each["reason"]:
            said = "not found" if mine is None else f"{mine.reason} ({mine.klass})"
            tally.misses[str(each["agent"])].append(
                f"{path.name}: Sisimai {each['recipient']} {each['reason']} "
                f"({'hard' if each['hard'] else 'soft'}, {each['deliverystatus']}, {each['command'] or '-'}); "
                f"we: {said}{'' if mine else ' in ' + str(sorted(ours)[:3])} [{verdict.reason[:60]}]"
                f"{'' if mine is None or same else ' HARD/SOFT'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--misses", action="store_true", help="list each miss, by Sisimai module")
    args = parser.parse_args()
    paths = sorted(args.folder.glob("*.eml"))
    records = reference(paths)
    halves, whole = (Tally(), Tally()), Tally()
    spent = 0.0
    for i, path in enumerate(paths):
        raw = path.read_bytes()
        began = time.process_time()
        verdict = classify(raw)
        spent += time.process_time() - began
        for tally in (halves[i >= len(paths) // 2], whole):
            judge(tally, path, records[path], verdict)
    half = len(paths) // 2
    print(f"{len(paths)} files in {args.folder}; classify {len(paths) / max(spent, 1e-9):,.0f} messages/s (CPU time)")
    for title, tally in ((f"first half (tuned on, {half} files)", halves[0]),
                         (f"second half ({len(paths) - half} files)", halves[1]), ("all", whole)):
        print("\n".join(tally.lines(title)))
    by_agent = Counter({agent: len(lines) for agent, lines in whole.misses.items()})
    print("misses by Sisimai module: " + ", ".join(f"{a} {n}" for a, n in by_agent.most_common()))
    if args.misses:
        for agent, _ in by_agent.most_common():
            print(f"--- {agent}")
            print("\n".join(f"  {line}" for line in whole.misses[agent]))


if __name__ == "__main__":
    main()
