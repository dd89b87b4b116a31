"""Claims with a heartbeat: a live worker keeps its rows however slow its batch, a dead one loses them."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import sqlalchemy as sa

from newsletter import store
from newsletter.clock import utcnow
from newsletter.config import load_config
from newsletter.send import outbox, pool
from newsletter.store import tables as t

from .conftest import invoke
from .smtpd import smtp_server

ISSUE = "2026-05-28"


def test_a_live_slow_worker_keeps_its_claims_past_the_lease(make_config, runner, monkeypatch):
    """A batch that takes twice the lease (rate-limited) is renewed by its heartbeat: another worker's recovery,
    run all along, finds nothing to take, and no row becomes unknown."""
    monkeypatch.setattr(pool, "LEASE", timedelta(seconds=1))
    with smtp_server() as (_, port):
        config = make_config(f"""
            [smtp]
            port = {port}
            connections = 1
            rate_per_second = 4
            """)
        for n in range(8):
            invoke(runner, config, "subscribers", "add", f"slow{n}@example.org")
        sender = threading.Thread(target=invoke, args=(runner, config, "send", ISSUE))
        engine = store.engine_for(load_config(config).database_url)
        recovered = []
        started = time.monotonic()
        sender.start()
        while sender.is_alive():  # as another worker on another host would, every 0.2 s
            with engine.begin() as conn:
                iid = conn.scalar(sa.select(t.issues.c.id))
                if iid is not None:
                    recovered.append(outbox.recover(conn, iid, utcnow(), lambda holder: True))
            time.sleep(0.2)
        sender.join()
        with engine.connect() as conn:
            states = sorted(conn.scalars(sa.select(t.outbox.c.state)))
        engine.dispose()
    assert time.monotonic() - started > 1.5  # the batch did outlive the lease
    assert sum(recovered) == 0 and states == ["sent"] * 8


def test_a_dead_workers_claims_are_taken_back_by_a_live_ones_heartbeat(make_config, runner, monkeypatch):
    """Rows claimed by a worker that stopped renewing (a lease run out, as after kill -9 on another host) go back
    to the queue within a lease and are delivered by the running send; its mid-transfer row becomes unknown."""
    monkeypatch.setattr(pool, "LEASE", timedelta(seconds=1))
    with smtp_server() as (handler, port):
        config = make_config(f"""
            [smtp]
            port = {port}
            connections = 1
            rate_per_second = 10
            """)
        for n in range(6):
            invoke(runner, config, "subscribers", "add", f"p{n}@example.org")
        invoke(runner, config, "send", ISSUE, "--enqueue")
        engine = store.engine_for(load_config(config).database_url)
        o = t.outbox.c
        with engine.begin() as conn:  # a worker elsewhere claimed three rows, began one, then vanished
            iid = conn.scalar(sa.select(t.issues.c.id))
            rows = outbox.claim(conn, iid, "elsewhere:1:0", 3, timedelta(seconds=1), utcnow())
            outbox.begin(conn, rows[0].id, "elsewhere:1:0", timedelta(seconds=1), utcnow(), "<m@x>")
        invoke(runner, config, "send", ISSUE)
        with engine.connect() as conn:
            states = dict(conn.execute(sa.select(o.email, o.state)).all())
        engine.dispose()
    assert states.pop(rows[0].email) == "unknown" and set(states.values()) == {"sent"}
    assert sorted(rcpt for rcpt, _ in handler.messages) == sorted(states)


def test_a_stop_mid_chunk_puts_the_rows_not_attempted_back_in_the_queue(make_config, runner):
    """With commit_every = 8, a stop (SIGTERM's event) between two messages of a chunk leaves no row `sending` or
    unknown: the rows marked but not attempted are queued again, and the next run sends each address once."""
    from newsletter.content import find_issue, load_issue
    from newsletter.send import Campaign, Mode

    with smtp_server() as (handler, port):
        config = make_config(f"""
            [smtp]
            port = {port}
            connections = 1
            commit_every = 8
            """)
        for n in range(20):
            invoke(runner, config, "subscribers", "add", f"c{n}@example.org")
        cfg = load_config(config)
        engine = store.connect(store.engine_for(cfg.database_url))
        path = find_issue(cfg.path("issues"), ISSUE)
        stop = threading.Event()
        handler.delay = 0.05
        campaign = Campaign(cfg, engine, load_issue(path, cfg.newsletter.areas), path=path, stop=stop)
        sender = threading.Thread(target=campaign.run, args=(Mode.SEND,))
        sender.start()
        deadline = time.monotonic() + 30
        while len(handler.messages) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()  # mid-way through the first chunk of 8
        sender.join(30)
        with engine.connect() as conn:
            states = sorted(conn.scalars(sa.select(t.outbox.c.state)))
        handler.delay = 0
        invoke(runner, config, "send", ISSUE)
        engine.dispose()
    assert 3 <= states.count("sent") < 8 and set(states) == {"sent", "queued"}
    assert handler.received == {f"c{n}@example.org": 1 for n in range(20)}
