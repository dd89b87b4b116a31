"""The feedback loop through real MTAs: Postfix returns its DSNs to `bounces receive`, and `bounces fetch`
reads a real Dovecot IMAP mailbox."""

from __future__ import annotations

import imaplib
import smtplib
import time
from collections import deque
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from newsletter import store
from newsletter.config import load_config
from newsletter.feedback import receive
from newsletter.feedback.ingest import Feedback
from newsletter.links import verp_address
from newsletter.mailsink import free_port
from newsletter.store import tables as t

from .conftest import invoke, parse
from .mta import Imap, dovecot_imap, flush, postfix_relay
from .notices import arf, dsn, plain
from .smtpd import smtp_server

ISSUE = "2026-05-28"
DOMAIN = "bounces.test.example"
BOUNCES = f"bounces@{DOMAIN}"


def subscribers(config: Path) -> dict[str, tuple[str, int, str | None]]:
    engine = sa.create_engine(load_config(config).database_url)
    s = t.subscribers.c
    with engine.connect() as conn:
        found = {r.email: (r.status, r.bounce_score, r.status_reason)
                 for r in conn.execute(sa.select(s.email, s.status, s.bounce_score, s.status_reason))}
    engine.dispose()
    return found


def logged(config: Path) -> list[sa.Row]:
    engine = sa.create_engine(load_config(config).database_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.bounce_log).order_by(t.bounce_log.c.id)).all()
    engine.dispose()
    return rows


def outbox_ids(config: Path, column: str = "id") -> dict[str, Any]:
    engine = sa.create_engine(load_config(config).database_url)
    with engine.connect() as conn:
        found = {r[0]: r[1] for r in conn.execute(sa.select(t.outbox.c.email, t.outbox.c[column]))}
    engine.dispose()
    return found


def wait_for(condition, seconds: float, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for Postfix's notices"
        flush(tmp_path)
        time.sleep(0.5)


def test_postfix_dsns_reach_the_receiver_and_the_policy_applies(make_config, runner, tmp_path):
    """Through Postfix: 550 5.1.1 suppresses, 552 5.2.2 scores a soft bounce, a 4xx until expiry gives a delayed
    then a failed notice that count once; a vacation reply changes nothing, an ARF report unsubscribes, and mail
    to a List-Unsubscribe address unsubscribes exactly that subscriber."""
    people = ["ok@example.org", "gone@example.org", "full@example.org", "busy@example.org", "angry@example.org",
              "leaver@example.org", "away@example.org"]
    receiver_port = free_port()
    with smtp_server() as (downstream, down_port):
        downstream.rcpt["gone@example.org"] = deque(["550 5.1.1 <gone@example.org>: Recipient address rejected"])
        downstream.rcpt["full@example.org"] = deque(["552 5.2.2 <full@example.org>: Mailbox full"])
        downstream.rcpt["busy@example.org"] = deque(["421 4.4.5 Too busy, try later"] * 1000)
        with postfix_relay(tmp_path, down_port, DOMAIN, receiver_port, queue_lifetime="10s") as relay_port:
            config = make_config(f"""
                [newsletter]
                secret_key = "loop-secret-0123456789abcdef0123456789"
                [smtp]
                port = {relay_port}
                [bounces]
                address = "{BOUNCES}"
                """)
            for address in people:
                invoke(runner, config, "subscribers", "add", address)
            cfg = load_config(config)
            feedback = Feedback(cfg, store.engine_for(cfg.database_url))
            server = receive.start(feedback, "127.0.0.1", receiver_port)
            try:
                invoke(runner, config, "send", ISSUE)
                wait_for(lambda: len(logged(config)) >= 4, 90, tmp_path)  # gone, full, busy delayed + failed
                copies = {rcpt: data for rcpt, data in downstream.messages}
                mailto = parse(copies["leaver@example.org"])["List-Unsubscribe"].split(",")[1].strip(" <>")
                with smtplib.SMTP("127.0.0.1", relay_port) as smtp:  # as a reader's mail client would
                    smtp.sendmail("leaver@example.org", [mailto.removeprefix("mailto:").split("?")[0]],
                                  plain(mailto, "leaver@example.org", "unsubscribe", "unsubscribe"))
                rows = outbox_ids(config)
                away = verp_address(BOUNCES, feedback.links.verp_token("r", rows["away@example.org"]))
                with smtplib.SMTP("127.0.0.1", receiver_port) as smtp:
                    smtp.sendmail("away@example.org", [away], plain(away, "away@example.org", "Out of Office",
                                                                     "Back on Monday.", Auto_Submitted="auto-replied"))
                    quoted = outbox_ids(config, "message_id")["angry@example.org"]  # the copy complained about
                    smtp.sendmail("fbl@isp.example", [BOUNCES], arf(BOUNCES, "angry@example.org", quoted))
                wait_for(lambda: subscribers(config)["leaver@example.org"][0] == "unsubscribed", 30, tmp_path)
            finally:
                server.stop()
    found = subscribers(config)
    assert found["gone@example.org"][0] == "bounced" and "5.1.1" in (found["gone@example.org"][2] or "")
    assert found["full@example.org"][:2] == ("active", 1) and found["busy@example.org"][:2] == ("active", 1)
    assert found["angry@example.org"][0] == "unsubscribed" and found["leaver@example.org"][0] == "unsubscribed"
    assert found["ok@example.org"] == found["away@example.org"] == ("active", 0, None)
    kinds = [(r.kind, r.recipient) for r in logged(config)]
    assert ("auto-reply", "away@example.org") in kinds and ("complaint", "angry@example.org") in kinds
    busy = [r for r in logged(config) if r.recipient == "busy@example.org"]
    assert len(busy) == 2 and "counted already" in busy[1].action  # delayed, then failed: one point


def imap_config(make_config, imap: Imap, extra: str = "") -> Path:  # type: ignore[no-untyped-def]
    return make_config(f"""
        [bounces]
        address = "{BOUNCES}"
        imap_host = "{imap.host}"
        imap_port = {imap.port}
        imap_security = "none"
        imap_user = "{imap.user}"
        {extra}
        """)


def test_fetch_processes_an_imap_mailbox_and_leaves_nothing_it_did_not_store(make_config, runner, tmp_path,
                                                                              monkeypatch):
    """`bounces fetch` against Dovecot: each notice is applied and deleted (or moved); a second run finds none."""
    with dovecot_imap(tmp_path) as imap:
        config = imap_config(make_config, imap, 'imap_done = "Processed"')
        invoke(runner, config, "subscribers", "add", "reader@example.org")
        imap.deliver(dsn(BOUNCES, "nobody@example.org", "5.1.1", "550 5.1.1 User unknown"))
        imap.deliver(plain(BOUNCES, "reader@example.org", "Re: digest", "Thanks, great issue!"))
        monkeypatch.setenv("NEWSLETTER_BOUNCES__IMAP_PASSWORD", imap.password)
        out = invoke(runner, config, "bounces", "fetch").output
        again = invoke(runner, config, "bounces", "fetch").output
        client = imaplib.IMAP4(imap.host, imap.port)
        client.login(imap.user, imap.password)
        inbox, processed = client.select("INBOX")[1][0], client.select("Processed")[1][0]
        client.logout()
    assert "2 processed, 0 left in the mailbox" in out and "0 processed" in again
    assert (inbox, processed) == (b"0", b"2")
    assert [r.kind for r in logged(config)] == ["bounce", "not-bounce"]
    assert subscribers(config)["reader@example.org"][0] == "active"


def test_fetch_leaves_what_it_could_not_store_and_says_why_in_one_line(make_config, runner, tmp_path, monkeypatch):
    """A notice whose storing fails stays in Dovecot's INBOX and is reported (exit 1) while the others are
    processed; a refused login is one line naming the mailbox, with no traceback."""
    with dovecot_imap(tmp_path) as imap:
        config = imap_config(make_config, imap)
        invoke(runner, config, "subscribers", "add", "reader@example.org")
        engine = sa.create_engine(load_config(config).database_url)
        with engine.begin() as conn:  # the database refuses this one notice, as a full disk would
            conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON bounce_log WHEN NEW.diagnostic LIKE "
                                 "'%poison%' BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        engine.dispose()
        imap.deliver(dsn(BOUNCES, "nobody@example.org", "5.1.1", "550 5.1.1 poison"))
        imap.deliver(plain(BOUNCES, "reader@example.org", "Re: digest", "Thanks!"))
        monkeypatch.setenv("NEWSLETTER_BOUNCES__IMAP_PASSWORD", imap.password)
        out = invoke(runner, config, "bounces", "fetch", code=1).output
        client = imaplib.IMAP4(imap.host, imap.port)
        client.login(imap.user, imap.password)
        inbox = client.select("INBOX")[1][0]
        client.logout()
        monkeypatch.setenv("NEWSLETTER_BOUNCES__IMAP_PASSWORD", "wrong")
        refused = invoke(runner, config, "bounces", "fetch", code=1).output
    assert "left in the mailbox: IntegrityError" in out and "1 processed, 1 left in the mailbox" in out
    assert inbox == b"1" and [r.kind for r in logged(config)] == ["not-bounce"]
    assert len(refused.strip().splitlines()) == 1 and f"{imap.user}@{imap.host}" in refused
    assert "Traceback" not in refused and "wrong" not in refused
