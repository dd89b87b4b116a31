"""Provider webhooks keep pace: signed SES (through SNS) and Mailgun notifications through the ASGI app into the
database, against #24's target of 1,000 notifications/s.

    .venv/bin/python bench/hooks.py                       # 5,000 notifications, one at a time and 16 in flight
    .venv/bin/python bench/hooks.py --notifications 200   # the quick run

An issue is sent to N subscribers through the directory transport (no relay needed); then one notification per
copy is made, alternately an SES hard bounce (SNS SignatureVersion 1, RSA-2048, the certificate served by a fake
fetcher: no network) and a Mailgun permanent failure (HMAC), each quoting that copy's Message-ID, as the providers
echo it. They are POSTed to /hooks/ses and /hooks/mailgun straight into the ASGI app, as uvicorn would hand them
over (the whole app: Host check, security headers, body cap, verification, the feedback path, SQLite), split
between the phases of --in-flight
(1: one request after the other; 16: as providers deliver, several connections at once). Prints one line per
figure and exits 1 unless every notification was applied and the last phase met 1,000/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.hookkit: the signed payloads the tests use
TARGET = 1000.0
BOUNCES = "bounces@bounces.example.org"
HOST = "https://news.example.org"


def cli(config: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("NEWSLETTER_")}
    done = subprocess.run([sys.executable, "-m", "newsletter", "--config", str(config), *args], env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"newsletter {' '.join(args)} failed: {done.stderr}")


def setup(work: Path, count: int) -> Path:
    """A config in ``work`` and an issue sent to ``count`` subscribers (copies written as files)."""
    config = work / "config.toml"
    config.write_text(f'[newsletter]\nsecret_key = "bench-key-0123456789abcdef0123456"\nbase_url = "{HOST}"\n'
                      f'[paths]\nissues = "{REPO / "issues"}"\ntemplates = "{REPO / "templates" / "email"}"\n'
                      f'[database]\nurl = "sqlite:///{work / "b.db"}"\n'
                      f'[transport]\nkind = "directory"\ndirectory = "{work / "out"}"\n'
                      f'[bounces]\naddress = "{BOUNCES}"\n', encoding="utf-8")
    people = work / "people.csv"
    people.write_text("email,name,areas\n" + "".join(f"r{i}@example.org,,\n" for i in range(count)))
    cli(config, "subscribers", "import", str(people))
    cli(config, "send", "latest")
    return config


def notifications(rows: list[tuple[str, str]], sns: Any) -> list[tuple[str, bytes]]:
    """One signed notification per copy: SES and Mailgun alternately, each quoting the copy's Message-ID."""
    from tests import hookkit

    made = []
    for n, (email, mid) in enumerate(rows):
        if n % 2:
            made.append(("mailgun", hookkit.mailgun(hookkit.mailgun_failed(email, mid))))
        else:
            made.append(("ses", sns.notification(hookkit.ses_bounce(email, mid))))
    return made


async def post(app: Any, path: str, body: bytes) -> int:
    """One POST straight into the ASGI app (what uvicorn hands it), its status: the app's cost and nothing else.

    Not httpx's ASGITransport: it tries ``import sniffio`` on every request, and without sniffio installed that
    failed import cost 0.2 ms a request here, a fifth of what is measured."""
    sent: list[dict[str, Any]] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return chunks.pop() if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "https",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", HOST.removeprefix("https://").encode()), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("203.0.113.7", 50000), "server": ("127.0.0.1", 443)}
    await app(scope, receive, send)
    return int(sent[0]["status"])


async def post_all(app: Any, items: list[tuple[str, bytes]], in_flight: int) -> tuple[float, dict[int, int]]:
    """Wall seconds to POST every item with ``in_flight`` requests at a time, and the answers' status counts."""
    statuses: dict[int, int] = {}
    queue = iter(items)

    async def worker() -> None:
        for provider, body in queue:
            status = await post(app, f"/hooks/{provider}", body)
            statuses[status] = statuses.get(status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - started, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=5000)
    parser.add_argument("--in-flight", default="1,16", help="requests at a time, one phase each (comma-separated)")
    args = parser.parse_args()
    phases = [int(p) for p in args.in_flight.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        ok = run(Path(tmp), args.notifications, phases)
    raise SystemExit(0 if ok else 1)


def run(work: Path, count: int, phases: list[int]) -> bool:
    import sqlalchemy as sa

    from newsletter.config import load_config
    from newsletter.feedback.providers import sns as sns_module
    from newsletter.store import engine_for
    from newsletter.store import tables as t
    from newsletter.web import create_app
    from tests import hookkit

    config = setup(work, count)
    signer = hookkit.Sns()
    os.environ.update(hookkit.environment(hookkit.Sendgrid().public))
    sns_module.https_get = signer.fetcher  # the certificate from memory: no network
    cfg = load_config(config)
    engine = engine_for(cfg.database_url)
    with engine.connect() as conn:
        rows = [(r.email, r.message_id) for r in conn.execute(sa.select(t.outbox.c.email, t.outbox.c.message_id))]
    items = notifications(rows, signer)
    app = create_app(cfg, engine)
    share = -(-len(items) // len(phases))
    rate, results = 0.0, []
    for n, in_flight in enumerate(phases):
        part = items[n * share:(n + 1) * share]
        before = resource.getrusage(resource.RUSAGE_SELF)
        wall, statuses = asyncio.run(post_all(app, part, in_flight))
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        rate = len(part) / wall
        results.append({"in_flight": in_flight, "notifications": len(part), "wall_s": wall, "rate": rate,
                        "cpu_us": cpu / len(part) * 1e6, "statuses": statuses})
        print(f"in flight {in_flight:<3}  {len(part):,} notifications in {wall:.2f} s: {rate:,.0f}/s, "
              f"CPU {cpu / len(part) * 1e6:,.0f} µs each, answers {statuses}")
    with engine.connect() as conn:
        b = t.bounce_log.c
        applied = conn.scalar(sa.select(sa.func.count()).where(b.proof == "message-id", ~b.action.like("ignored%")))
        bounced = conn.scalar(sa.select(sa.func.count()).where(t.subscribers.c.status == "bounced"))
    engine.dispose()
    print(f"applied        {applied:,}\nsuppressed     {bounced:,}\npeak RSS MB    "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f}")
    print(json.dumps({"phases": results, "applied": applied}))
    ok = rate >= TARGET and applied == len(items) == bounced
    print(("met" if ok else "MISSED") + f": at least {TARGET:,.0f} notifications/s, every notification applied")
    return ok


if __name__ == "__main__":
    main()
