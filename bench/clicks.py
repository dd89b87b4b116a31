"""Tracked paper links keep pace and lose no click: `newsletter serve` (uvicorn on 127.0.0.1, the whole app: Host
check, security headers, token check, group commit into SQLite) under concurrent clients, against #25's target of
2,000 counted clicks/s.

    .venv/bin/python bench/clicks.py                        # 20,000 clicks over 16 connections, then the kill test
    .venv/bin/python bench/clicks.py --clicks 2000 --no-kill   # the quick run

The issue is sent with [tracking] clicks on to subscribers of several groups through the directory transport (no
relay needed); the signed /r/ links are read from the copies written (paper, code and "Also this week" links).
``ignore_first_seconds = 0``: a bench cannot wait for the scanners' window. First, for reference, a bare Starlette
redirect is served by the same uvicorn set-up and clicked as hard: what HTTP alone costs on this machine at that
moment (it is shared, and its load moves every figure). Then `newsletter serve` runs as its own process and the
clients, in this process (asyncio, one HTTP/1.1 keep-alive connection each, written by hand so the client costs
little of the two cores), follow the links round-robin with a browser's User-Agent. Every answer must be a 302 to
the link's paper; right after the last answer, before the server stops, the database must hold exactly as many
clicks as were answered (each answer waited for its batch's commit); again after SIGTERM.

The kill test: clients click as fast as they can while the server is killed with SIGKILL; every click answered
before the kill must be in the database (at most the batch in flight, never answered, may be there too).
Prints one line per figure and exits 1 unless every check held and the rate met 2,000/s.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = 2000.0
HOST = "127.0.0.1"
BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
_LINK = re.compile(r"http://127\.0\.0\.1:\d+(/r/[A-Za-z0-9._-]+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("NEWSLETTER_")}


def cli(config: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "newsletter", "--config", str(config), *args], env=env(),
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"newsletter {' '.join(args)} failed: {done.stderr}")


def setup(work: Path, port: int) -> tuple[Path, list[str]]:
    """A config in ``work``, the issue sent with tracking on to one subscriber per area and one of all; the
    distinct /r/ paths of the copies."""
    config = work / "config.toml"
    config.write_text(f'[newsletter]\nsecret_key = "bench-key-0123456789abcdef0123456"\n'
                      f'base_url = "http://{HOST}:{port}"\n'
                      f'[paths]\nissues = "{REPO / "issues"}"\ntemplates = "{REPO / "templates" / "email"}"\n'
                      f'[database]\nurl = "sqlite:///{work / "b.db"}"\n'
                      f'[transport]\nkind = "directory"\ndirectory = "{work / "out"}"\n'
                      f'[tracking]\nclicks = true\nignore_first_seconds = 0\n', encoding="utf-8")
    people = work / "people.csv"
    people.write_text("email,name,areas\nall@example.org,,\n" + "".join(
        f"{a.lower()}@example.org,,{a}\n" for a in ("LLM", "Vision", "RL", "Agents")))
    cli(config, "subscribers", "import", str(people))
    cli(config, "send", "latest")
    found: set[str] = set()
    for eml in (work / "out").rglob("*.eml"):
        message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        for part in message.walk():
            if part.get_content_maintype() == "text":
                found |= set(_LINK.findall(part.get_content()))
    return config, sorted(found)


def start_server(config: Path, port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), "serve", "--host", HOST,
                               "--port", str(port)], env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(port, server)
    return server


def _wait_for(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not start")


class Tally:
    def __init__(self) -> None:
        self.answered = 0          # 302 answers to a /r/ link
        self.other: dict[int, int] = {}
        self.locations: set[str] = set()
        self.broken = 0            # connections that ended without an answer (the kill test)


async def client(port: int, paths: list[str], count: int, offset: int, tally: Tally) -> None:
    """One keep-alive connection following ``count`` links, one request at a time."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        for n in range(count):
            path = paths[(offset + n) % len(paths)]
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: {BROWSER}\r\n"
                         f"Accept: text/html\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if length:
                await reader.readexactly(int(length.group(1)))
            if status == 302:
                tally.answered += 1
                tally.locations.add(re.search(rb"(?i)\r\nlocation: *([^\r]+)", head).group(1).decode())  # type: ignore[union-attr]
            else:
                tally.other[status] = tally.other.get(status, 0) + 1
    except (asyncio.IncompleteReadError, ConnectionError):
        tally.broken += 1
    finally:
        writer.close()


async def click_all(port: int, paths: list[str], total: int, connections: int) -> tuple[float, Tally]:
    tally = Tally()
    share = total // connections
    started = time.perf_counter()
    await asyncio.gather(*(client(port, paths, share, n * 7, tally) for n in range(connections)))
    return time.perf_counter() - started, tally


def counted(config: Path) -> int:
    import sqlalchemy as sa

    from newsletter.config import load_config
    from newsletter.store import engine_for
    from newsletter.store import tables as t

    engine = engine_for(load_config(config).database_url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(sa.select(sa.func.coalesce(sa.func.sum(t.clicks.c.clicks), 0))) or 0)
    finally:
        engine.dispose()


def speed(config: Path, paths: list[str], total: int, connections: int) -> dict[str, object]:
    """The rate phase: every click answered 302, each counted, before and after a clean stop."""
    port = int(re.search(r":(\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
    before = counted(config)
    server = start_server(config, port)
    cpu_before = _cpu(server.pid)
    wall, tally = asyncio.run(click_all(port, paths, total, connections))
    cpu = _cpu(server.pid) - cpu_before
    live = counted(config) - before
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    after = counted(config) - before
    sent = total // connections * connections
    result = {"clicks": sent, "connections": connections, "wall_s": round(wall, 3), "rate": round(sent / wall),
              "server_cpu_us": round(cpu / sent * 1e6), "answered_302": tally.answered, "other": tally.other,
              "in_db_before_stop": live, "in_db_after_stop": after, "targets": len(tally.locations)}
    print(f"{sent:,} clicks over {connections} connections in {wall:.2f} s: {sent / wall:,.0f} counted clicks/s, "
          f"server CPU {cpu / sent * 1e6:,.0f} µs a click; 302: {tally.answered:,}, other: {tally.other}; "
          f"in the database: {live:,} before the server stopped, {after:,} after")
    return result


BARE = """
from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Route
from newsletter.web.serving import server

async def follow(request):
    return RedirectResponse("https://arxiv.org/abs/2605.28293", 302)

server(Starlette(routes=[Route("/r/{token}", follow)]), "127.0.0.1", %d).run()
"""


def reference(paths: list[str], total: int, connections: int) -> dict[str, object]:
    """The same clients against a bare Starlette redirect under the same uvicorn (``serving.server``: h11, the access
    log as `serve` has it): what HTTP alone costs on this machine now, taken right before the app's run."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", BARE % port], env=env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    _wait_for(port, server)
    cpu_before = _cpu(server.pid)
    wall, tally = asyncio.run(click_all(port, paths, total, connections))
    cpu = _cpu(server.pid) - cpu_before
    server.send_signal(signal.SIGTERM)
    server.wait(30)
    sent = total // connections * connections
    print(f"bare redirect, same uvicorn: {sent / wall:,.0f} answers/s, server CPU {cpu / sent * 1e6:,.0f} µs each "
          f"(302: {tally.answered:,})")
    return {"rate": round(sent / wall), "server_cpu_us": round(cpu / sent * 1e6)}


def kill(config: Path, paths: list[str], connections: int) -> dict[str, object]:
    """SIGKILL while clients click: every answered click must be in the database."""
    port = int(re.search(r":(\d+)", config.read_text()).group(1))  # type: ignore[union-attr]
    before = counted(config)
    server = start_server(config, port)

    async def run() -> Tally:
        task = asyncio.ensure_future(click_all(port, paths, 10**7, connections))
        await asyncio.sleep(1.5)
        server.send_signal(signal.SIGKILL)
        return (await task)[1]

    tally = asyncio.run(run())
    server.wait(30)
    stored = counted(config) - before
    print(f"kill -9 while clicking: {tally.answered:,} answered, {stored:,} in the database "
          f"({stored - tally.answered} of the batch in flight, never answered); {tally.broken} connections cut")
    return {"answered": tally.answered, "in_db": stored, "cut": tally.broken}


def _cpu(pid: int) -> float:
    """User + system seconds of process ``pid`` so far (/proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-kill", action="store_true", help="leave out the SIGKILL test")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory() as tmp:
        config, paths = setup(Path(tmp), free_port())
        print(f"{len(paths)} distinct tracked links in the copies")
        bare = reference(paths, args.clicks, args.connections)
        fast = speed(config, paths, args.clicks, args.connections)
        print(f"the app: {int(fast['rate']) / int(bare['rate']):.0%} of the bare redirect's rate")  # type: ignore[call-overload]
        killed = None if args.no_kill else kill(config, paths, args.connections)
    ok = (fast["answered_302"] == fast["clicks"] == fast["in_db_before_stop"] == fast["in_db_after_stop"]
          and fast["rate"] >= TARGET and (killed is None or killed["in_db"] >= killed["answered"]))  # type: ignore[operator]
    print(json.dumps({"bare": bare, "speed": fast, "kill": killed}))
    print(("met" if ok else "MISSED") + f": at least {TARGET:,.0f} counted clicks/s, every answered click in the "
          "database (after a clean stop and after kill -9)")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
