"""Ingestion keeps pace with sending: `newsletter bounces ingest` over a folder of real DSNs.

    .venv/bin/python bench/ingest.py                # 5,000 notices
    .venv/bin/python bench/ingest.py --notices 500  # the suite's smoke run

An issue is sent to N subscribers through the directory transport (no relay needed), then one RFC
3464 DSN per message is written to a folder, addressed to that message's VERP sender (alternately
a hard 5.1.1 and a soft 5.2.2 failure), and `newsletter bounces ingest FOLDER` runs as a subprocess:
its wall time, notices per second, CPU time and peak RSS (os.wait4). Prints one line per figure;
exits 1 if the rate is under the issue's 1,000 notices/s or not every notice was applied.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.notices, the DSN writer the tests use
TARGET = 1000.0
BOUNCES = "bounces@bounces.example.org"


def dsn(to: str, rcpt: str, n: int) -> bytes:
    """A DSN laid out as Postfix writes one (tests/notices.py); alternately a hard 5.1.1 and a soft 5.2.2 failure."""
    from tests.notices import dsn as postfix_dsn

    status, diagnostic = ("5.1.1", "550 5.1.1 User unknown") if n % 2 else ("5.2.2", "552 5.2.2 Mailbox full")
    return postfix_dsn(to, rcpt, status, diagnostic)


def cli(config: Path, *args: str) -> tuple[float, float, float]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NEWSLETTER_")}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if status:
        raise SystemExit(f"newsletter {' '.join(args)} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notices", type=int, default=5000)
    parser.add_argument("--keep", type=Path, help="Work in this folder and keep it (to profile the ingest again).")
    args = parser.parse_args()
    import sqlalchemy as sa

    from newsletter.config import load_config
    from newsletter.links import links_for, verp_address
    from newsletter.store import engine_for
    from newsletter.store import tables as t

    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        config = work / "config.toml"
        config.write_text(f'[newsletter]\nsecret_key = "bench-key-0123456789abcdef0123456"\n'
                          f'[paths]\nissues = "{REPO / "issues"}"\n'
                          f'templates = "{REPO / "templates" / "email"}"\n'
                          f'[database]\nurl = "sqlite:///{work / "b.db"}"\n'
                          f'[transport]\nkind = "directory"\ndirectory = "{work / "out"}"\n'
                          f'[bounces]\naddress = "{BOUNCES}"\n', encoding="utf-8")
        people = work / "people.csv"
        people.write_text("email,name,areas\n" + "".join(f"r{i}@example.org,,\n" for i in range(args.notices)))
        cli(config, "subscribers", "import", str(people))
        cli(config, "send", "latest")
        cfg = load_config(config)
        engine = engine_for(cfg.database_url)
        links = links_for(cfg, engine)
        with engine.connect() as conn:
            rows = conn.execute(sa.select(t.outbox.c.id, t.outbox.c.email)).all()
        notices = work / "notices"
        notices.mkdir()
        for n, (row_id, email) in enumerate(rows):
            (notices / f"{n:06d}.eml").write_bytes(dsn(verp_address(BOUNCES, links.verp_token("r", row_id)), email, n))
        wall, cpu, rss = cli(config, "bounces", "ingest", str(notices))
        with engine.connect() as conn:
            applied = conn.scalar(sa.select(sa.func.count()).select_from(t.bounce_log)
                                  .where(~t.bounce_log.c.action.like("ignored%")))
        engine.dispose()
    rate = len(rows) / wall
    print(f"notices        {len(rows):,}\nwall s         {wall:.2f}\nnotices/s      {rate:,.0f}\n"
          f"CPU µs/notice  {cpu / len(rows) * 1e6:,.0f}\npeak RSS MB    {rss:.1f}\napplied        {applied:,}")
    ok = rate >= TARGET and applied == len(rows)
    print(("met" if ok else "MISSED") + f": at least {TARGET:,.0f} notices/s, every notice applied")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
