"""`bounces fetch` against a mailbox a stranger filled, served by tests/imapd.py (a real IMAP server on a socket
that can lie about sizes and leave UIDs out): no message stops the run, and none is downloaded past max_size."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from newsletter.config import load_config
from newsletter.store import tables as t

from ..conftest import invoke
from ..imapd import Mailbox, imap_server
from ..notices import dsn

BOUNCES = "bounces@bounces.test.example"
HELD = "newsletter-held"


@pytest.fixture
def imap(make_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Mailbox, Path]]:
    """A running fake IMAP server and a config that reads its INBOX in the clear."""
    with imap_server() as box:
        config = make_config(f"""
            [newsletter]
            secret_key = "fetch-test-secret-at-least-32-bytes-long"
            [bounces]
            address = "{BOUNCES}"
            imap_host = "127.0.0.1"
            imap_port = {box.port}
            imap_security = "none"
            imap_user = "{box.user}"
            """)
        monkeypatch.setenv("NEWSLETTER_BOUNCES__IMAP_PASSWORD", box.password)
        yield box, config


def nesting_bomb(depth: int = 3000) -> bytes:
    """A multipart nested ``depth`` levels deep (about 60 bytes a level): Python's email package recurses per level."""
    head = (f"From: someone@example.net\r\nTo: {BOUNCES}\r\nSubject: nested\r\nMIME-Version: 1.0\r\n").encode()
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth))
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\r\n\r\nx" + closing


def bounce(n: int) -> bytes:
    return dsn(BOUNCES, f"gone{n}@example.org", "5.1.1", f"550 5.1.1 <gone{n}@example.org>: User unknown")


def logged(config: Path) -> list[tuple[str, str]]:
    engine = sa.create_engine(load_config(config).database_url)
    with engine.connect() as conn:
        rows = [(r.source, r.kind) for r in conn.execute(sa.select(t.bounce_log).order_by(t.bounce_log.c.id))]
    engine.dispose()
    return rows


@pytest.mark.attack(edge="feedback", attack="IMAP: 3,000-level nested MIME", held="run completes; moved aside")
def test_a_nesting_bomb_between_two_dsns_is_moved_aside_and_blocks_no_run(imap: tuple[Mailbox, Path],
                                                                           runner: CliRunner) -> None:
    """A 3,000-level nested multipart between two DSNs: both handled, the bomb held whole, the next run clean."""
    box, config = imap
    bomb = nesting_bomb()
    assert 150_000 < len(bomb) < 250_000
    first, middle, last = box.deliver(bounce(1)), box.deliver(bomb), box.deliver(bounce(2))
    out = invoke(runner, config, "bounces", "fetch").output
    again = invoke(runner, config, "bounces", "fetch").output
    assert f"imap:INBOX/{middle}: moved to {HELD}: logged as unknown: unreadable message (RecursionError)" in out
    assert f"2 processed, 0 left in the mailbox, 1 moved to {HELD}" in out
    assert box.uids("INBOX") == [] and box.raw(HELD) == [bomb]
    assert logged(config) == [(f"imap:INBOX/{first}", "bounce"), (f"imap:INBOX/{middle}", "unknown"),
                              (f"imap:INBOX/{last}", "bounce")]
    assert f"0 processed, 0 left in the mailbox, 0 moved to {HELD}" in again


@pytest.mark.attack(edge="feedback", attack="IMAP: FETCH answer without a UID", held="one line; the rest handled")
def test_a_fetch_answer_without_a_uid_is_one_line_and_the_others_are_handled(imap: tuple[Mailbox, Path],
                                                                            runner: CliRunner) -> None:
    """A FETCH answer without a UID is one line and left (exit 1); the other messages are handled and deleted."""
    box, config = imap
    first, nameless, last = box.deliver(bounce(1)), box.deliver(bounce(2), no_uid=True), box.deliver(bounce(3))
    out = invoke(runner, config, "bounces", "fetch", code=1).output
    lines = [line for line in out.splitlines() if "no UID" in line]
    assert lines == ["imap:INBOX/?: left in the mailbox: message #2: the server's FETCH answer has no UID, "
                     "so it can be neither moved nor deleted"]
    assert "Traceback" not in out and f"2 processed, 1 left in the mailbox, 0 moved to {HELD}" in out
    assert box.uids("INBOX") == [nameless]
    assert logged(config) == [(f"imap:INBOX/{first}", "bounce"), (f"imap:INBOX/{last}", "bounce")]


@pytest.mark.attack(edge="feedback", attack="IMAP: 300 MB message", held="never downloaded; moved aside")
def test_a_message_of_300_mb_is_never_downloaded_and_moved_aside(imap: tuple[Mailbox, Path],
                                                                 runner: CliRunner) -> None:
    """A message whose RFC822.SIZE says 300 MB is never downloaded but moved to imap_held; the DSNs around it go."""
    box, config = imap
    first, huge, last = (box.deliver(bounce(1)), box.deliver(bounce(2), size=300 << 20),
                         box.deliver(bounce(3)))
    out = invoke(runner, config, "bounces", "fetch").output
    assert (f"imap:INBOX/{huge}: moved to {HELD}: {300 << 20} bytes, over [bounces] max_size (41943040); "
            "not downloaded") in out
    assert box.bodies == [("INBOX", first), ("INBOX", last)]
    assert box.uids("INBOX") == [] and len(box.uids(HELD)) == 1
    assert [kind for _, kind in logged(config)] == ["bounce", "bounce"]


@pytest.mark.attack(edge="feedback", attack="IMAP: messages over max_size", held="skipped by RFC822.SIZE")
def test_max_size_is_the_operators_to_set(imap: tuple[Mailbox, Path], runner: CliRunner) -> None:
    """[bounces] max_size holds back one byte over it, undownloaded, lets exactly it through, and marks none seen."""
    box, config = imap
    size = len(bounce(1))
    config.write_text(config.read_text(encoding="utf-8").replace("[bounces]", f"[bounces]\nmax_size = {size}"),
                      encoding="utf-8")
    fits, over = box.deliver(bounce(1)), box.deliver(bounce(2) + b"x")
    out = invoke(runner, config, "bounces", "fetch").output
    assert f"imap:INBOX/{over}: moved to {HELD}: {size + 1} bytes, over [bounces] max_size ({size})" in out
    assert box.bodies == [("INBOX", fits)] and box.raw(HELD) == [bounce(2) + b"x"]
    assert not any("BODY[]" in c and "PEEK" not in c for c in box.commands)


@pytest.mark.attack(edge="feedback", attack="IMAP: FETCH answer without the body", held="moved aside; rest handled")
def test_a_fetch_answer_without_its_body_moves_that_message_aside(imap: tuple[Mailbox, Path],
                                                                 runner: CliRunner) -> None:
    """A FETCH answer without the body: asked once more alone, then held; the DSNs in its batch are handled."""
    box, config = imap
    first, empty, last = box.deliver(bounce(1)), box.deliver(bounce(2), no_body=True), box.deliver(bounce(3))
    out = invoke(runner, config, "bounces", "fetch").output
    assert f"imap:INBOX/{empty}: moved to {HELD}: the server's answer holds no body for it" in out
    assert box.bodies == [("INBOX", first), ("INBOX", empty), ("INBOX", last), ("INBOX", empty)]
    assert box.uids("INBOX") == [] and len(box.uids(HELD)) == 1
    assert logged(config) == [(f"imap:INBOX/{first}", "bounce"), (f"imap:INBOX/{last}", "bounce")]
