"""`newsletter subscribers import` of one file into a fresh PostgreSQL schema and into SQLite, in one run (#23).

    .venv/bin/python bench/import_pg.py                    # 100,000 rows
    .venv/bin/python bench/import_pg.py --rows 5000        # a quick look

Each import is the CLI in a process of its own (bench/run.py's ``measured``: wall seconds, CPU seconds, peak
RSS) into an empty, migrated database, so the figures are what an operator waits for, start-up included.
Prints both and the ratio PostgreSQL / SQLite, and one met/MISSED line for the target (PostgreSQL < 10 s);
exits 0 either way (a measurement). ``--json PATH`` also writes the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.postgres import pg_config  # noqa: E402
from bench.run import measured, write_config, write_list  # noqa: E402
from bench.workers import fresh_schema, newsletter  # noqa: E402

TARGET = 10.0  # seconds for 100,000 rows on PostgreSQL


def run(pg_url: str, rows: int, work: Path) -> dict[str, Any]:
    """The same list imported into PostgreSQL, then SQLite; each database made by `newsletter init` first."""
    people = work / "list.csv"
    write_list(people, rows)
    results: dict[str, Any] = {"rows": rows, "cores": os.cpu_count()}
    (work / "postgres").mkdir()
    with fresh_schema(pg_url) as url:
        config = pg_config(work / "postgres", url, 25)
        newsletter(config, "init")
        results["postgres"] = measured(["subscribers", "import", str(people)], config)
    (work / "sqlite").mkdir()
    config = write_config(work / "sqlite", 25)
    newsletter(config, "init")
    results["sqlite"] = measured(["subscribers", "import", str(people)], config)
    results["ratio"] = round(results["postgres"]["seconds"] / results["sqlite"]["seconds"], 2)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pg-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    for key in [k for k in os.environ if k.upper().startswith("NEWSLETTER_")]:
        del os.environ[key]  # the shell's overrides must not redirect the runs
    with tempfile.TemporaryDirectory(prefix="nl-bench-import-") as tmp:
        results = run(args.pg_url, args.rows, Path(tmp))
    pg, lite = results["postgres"], results["sqlite"]
    for name, r in (("PostgreSQL", pg), ("SQLite", lite)):
        print(f"{name:<11} import {args.rows:,} rows: {r['seconds']:.2f} s wall, {r['cpu_seconds']:.2f} s CPU, "
              f"{r['peak_rss_mb']} MB peak RSS")
    print(f"PostgreSQL / SQLite: {results['ratio']:.2f}")
    if args.rows == 100_000:
        print(f"PostgreSQL < {TARGET:g} s: {'met' if pg['seconds'] < TARGET else 'MISSED'} ({pg['seconds']:.2f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
