"""The main job end to end on the embedded defaults, with a local SMTP server of its own.

A fresh SQLite database in OUT, the sample list imported, an aiosmtpd server started on a free
loopback port that keeps each message as an .eml file, and the latest issue sent through the very
pipeline a real send uses (``send.Campaign``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import audience, mailsink, store
from .config import Config
from .content import find_issue, load_issue
from .send import Campaign, Events, Mode, Report


@dataclass(frozen=True)
class Demo:
    report: Report
    received: int
    mail: Path


def run_demo(config: Config, out: Path, events: Callable[[str], Events], say: Callable[[str], None]) -> Demo:
    """Send the latest issue to the sample list through a local server; ``say`` narrates each step."""
    out = out.resolve()
    mail = out / "mail"
    for stale in [out / "newsletter.db", out / "newsletter.db-wal", out / "newsletter.db-shm", *mail.glob("*.eml")]:
        stale.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)  # the database and the .eml files hold addresses
    handler = mailsink.EmlHandler(mail)
    server = mailsink.start(handler)
    try:
        config = demo_config(config, out / "newsletter.db", server.port)
        engine = store.engine_for(config.database_url)
        store.migrate(engine)
        sample = config.path("subscribers") / "sample.csv"
        with engine.begin() as conn:
            imported = audience.import_csv(conn, sample, config.newsletter.areas)
        say(f"Imported {imported.added} subscribers from {sample}.")
        path = find_issue(config.path("issues"), "latest")
        item = load_issue(path, config.newsletter.areas)
        say(f"Sending {item.slug} ({item.title}) to a local SMTP server on 127.0.0.1:{server.port}.")
        run = Campaign(config, engine, item, path=path, events=events(item.slug)).run(Mode.SEND)
        engine.dispose()
    finally:
        server.stop()
    assert run.report is not None
    return Demo(run.report, sum(handler.received.values()), mail)


def demo_config(config: Config, database: Path, port: int) -> Config:
    """The config with the demo's own database and local relay (no login, no TLS, no rate limit)."""
    smtp = config.smtp.model_copy(update={"host": "127.0.0.1", "port": port, "security": "none", "username": "",
                                          "rate_per_second": 0, "rate_per_hour": 0})
    return config.model_copy(update={"database": config.database.model_copy(update={"url": f"sqlite:///{database}"}),
                                     "smtp": smtp, "transport": config.transport.model_copy(update={"kind": "smtp"})})
