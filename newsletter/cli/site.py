"""``newsletter demo`` (the main job) and ``newsletter serve`` (the web pages)."""

from __future__ import annotations

from pathlib import Path

import click

from ..demo import run_demo
from .base import State, cli, pass_state
from .sending import CliEvents, print_report


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("build/demo"),
              show_default=True, help="Folder for the demo database and the received .eml files.")
@pass_state
def demo(state: State, out: Path) -> None:
    """The main job end to end on the embedded defaults, with a local SMTP server of its own.

    A fresh SQLite database in OUT, the sample list imported, an aiosmtpd server started on a free
    loopback port that keeps each message as an .eml file, the latest issue sent, the report printed.

    Example: newsletter demo
    """
    done = run_demo(state.config, out, CliEvents, click.echo)
    print_report(done.report)
    click.echo(f"{done.received} messages received, saved as .eml files in {done.mail}")


@cli.command()
@click.option("--host", help="Address to listen on (default: [web] host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default: [web] port, 8000).")
@pass_state
def serve(state: State, host: str | None, port: int | None) -> None:
    """Serve the web pages: sign-up, confirm, unsubscribe, preferences, archive, editor preview.

    Warns in one line when [newsletter] base_url, which every link in the mails starts with, points
    at loopback or at HOST with another port than PORT (a different public host is taken for a proxy).

    Example: newsletter serve --host 127.0.0.1 --port 8000
    """
    from ..web import listen_mismatch
    from ..web import serve as run_web

    config = state.config
    host, port = host or config.web.host, port or config.web.port
    if problem := listen_mismatch(config.newsletter.base_url, host, port):
        click.echo(f"warning: {problem}", err=True)
    state.engine  # noqa: B018 (check the database, and migrate SQLite, before listening)
    run_web(config, host, port)
