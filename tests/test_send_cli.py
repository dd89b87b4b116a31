"""`send` on a terminal asks first, says when an issue was sent already; `sink` catches test sends (#17)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from newsletter.mailsink import free_port

from .conftest import invoke
from .smtpd import smtp_server

ISSUE = "2026-05-28"


def on_terminal(config: Path, *args: str, answer: str | None) -> tuple[int, str]:
    """Run `newsletter ARGS` with a real pseudo-terminal as its stdin and stdout; type ``answer`` at its question."""
    master, slave = os.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")} | {"COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), *args],
                            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    seen, asked = b"", False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        if answer is not None and not asked and b"[y/N]" in seen:
            os.write(master, answer.encode() + b"\n")
            asked = True
        if proc.poll() is not None and not ready:
            break
    os.close(master)
    return proc.wait(30), seen.decode(errors="replace")


def test_on_a_terminal_send_shows_what_goes_out_and_asks(make_config, runner):
    """On a terminal, `send` prints the issue, its groups and the recipients and asks; "n" sends nothing, "y"
    sends; --yes never asks; an issue already sent says so instead of sending or asking again."""
    with smtp_server() as (handler, port):
        config = make_config(f"[smtp]\nport = {port}\n")
        for n in range(3):
            invoke(runner, config, "subscribers", "add", f"t{n}@example.org", "--areas", "RL" if n else "LLM")
        code, out = on_terminal(config, "send", ISSUE, answer="n")
        assert code == 1 and "Aborted" in out and not handler.messages
        assert "Top-conf Paper Digest" in out and f"Send {ISSUE} to 3 subscriber(s)" in out and f":{port}?" in out
        code, out = on_terminal(config, "send", ISSUE, answer="y")
        assert code == 0 and sorted(handler.received) == ["t0@example.org", "t1@example.org", "t2@example.org"]
        code, again = on_terminal(config, "send", ISSUE, "--yes", answer=None)
        assert code == 0 and f"{ISSUE} was sent already" in again and "[y/N]" not in again
    assert set(handler.received.values()) == {1}


def test_without_a_terminal_send_does_not_ask(make_config, runner):
    """Scripts (no terminal) are never asked: the send just goes."""
    with smtp_server() as (handler, port):
        config = make_config(f"[smtp]\nport = {port}\n")
        invoke(runner, config, "subscribers", "add", "script@example.org")
        out = invoke(runner, config, "send", ISSUE).output
    assert "[y/N]" not in out and list(handler.received) == ["script@example.org"]


def test_sink_keeps_a_test_send_and_a_refused_test_send_names_the_relay(make_config, runner, tmp_path):
    """`newsletter sink` on the [smtp] port writes a test copy as an .eml file; with no relay, the test send's
    error names host and port and points at `sink`, without a bare None."""
    port = free_port()
    config = make_config(f"[smtp]\nport = {port}\n")
    refused = invoke(runner, config, "send", ISSUE, "--test-to", "ed@example.org", code=1).output
    assert f"127.0.0.1:{port}" in refused and "newsletter sink" in refused and "None" not in refused
    out = tmp_path / "caught"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    sink = subprocess.Popen([sys.executable, "-m", "newsletter", "--config", str(config), "sink", "--out", str(out)],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert sink.stdout is not None and f"Receiving mail on 127.0.0.1:{port}" in sink.stdout.readline()
        invoke(runner, config, "send", ISSUE, "--test-to", "ed@example.org")
    finally:
        sink.send_signal(signal.SIGTERM)
        assert sink.wait(30) == 0
        if sink.stdout is not None:
            sink.stdout.close()
    caught = list(out.glob("*.eml"))
    assert len(caught) == 1 and b"[Test]" in caught[0].read_bytes()
