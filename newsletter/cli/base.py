"""What every command shares: the group, its state, the one place errors become one line, progress."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from sqlalchemy.engine import Engine

from .. import areas as area_names
from .. import store
from ..config import Config, load_config
from ..errors import NewsletterError

console = Console(highlight=False)
F = TypeVar("F", bound=Callable[..., Any])


class Group(click.Group):
    """Turns a user's mistake (NewsletterError) into a one-line error and exit 1, no traceback.

    The one place that maps the exception tree (errors.py) to the command line.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NewsletterError as exc:
            raise click.ClickException(str(exc)) from None


class State:
    """What every command may need, made on first use."""

    def __init__(self, config_file: str | None) -> None:
        self.config_file = config_file
        self._config: Config | None = None
        self._engine: Engine | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_file)
        return self._config

    @property
    def engine(self) -> Engine:
        """The database, checked to be at the latest schema (SQLite is migrated on the spot)."""
        if self._engine is None:
            self._engine = store.connect(store.engine_for(self.config.database_url))
        return self._engine

    def close(self) -> None:
        """Give the database connections back when the command ends (PostgreSQL notices leaks)."""
        if self._engine is not None:
            self._engine.dispose()

    @property
    def areas(self) -> list[str]:
        return self.config.newsletter.areas


pass_state = click.make_pass_decorator(State)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="NEWSLETTER_CONFIG",
              help="Config file (default: ./config.toml; env NEWSLETTER_CONFIG).")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None) -> None:
    """Weekly email digest of curated machine-learning papers."""
    ctx.obj = State(config_file)
    ctx.call_on_close(ctx.obj.close)


def group_option(config: Config, value: str | None, param: str = "--areas") -> tuple[str, ...] | None:
    """``--areas LLM,RL`` → the group, checked against the configured areas."""
    if value is None:
        return None
    try:
        chosen = area_names.parse(value, config.newsletter.areas)
    except area_names.UnknownArea as exc:
        raise click.BadParameter(str(exc), param_hint=param) from None
    return area_names.group(chosen, config.newsletter.areas)


class Refused(click.ClickException):
    """A destructive command a script ran without ``--yes``: one line, exit 2 (how it was called), nothing done."""

    exit_code = 2


def yes_option(help_text: str = "Do not ask for confirmation.") -> Callable[[F], F]:
    """``--yes``/``-y``, alike on every command that asks."""
    return click.option("--yes", "-y", is_flag=True, help=help_text)


def ask_first(yes: bool, refuse: str | None = None) -> bool:
    """Whether to ask before going on: on a terminal, unless --yes; a script (no terminal) is never asked.

    A script that runs a destructive command (``refuse``: what it would do) without --yes is refused in
    one line, exit 2, instead of Click's bare ``Aborted!``: reading "y" from a pipe is not consent.
    """
    if yes:
        return False
    if sys.stdin.isatty():
        return True
    if refuse is not None:
        raise Refused(f"not a terminal, so not asked: pass --yes to {refuse}")
    return False


def confirm(question: str, yes: bool, refuse: str) -> None:
    """``ask_first`` for a destructive command, then the question; "n" (or no answer) aborts."""
    if ask_first(yes, refuse):
        click.confirm(question, abort=True)


def db_label(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def log_to_stdout() -> None:
    """The long-running commands (schedule, worker) log one line per event to stdout."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def stop_on_signals(stop: threading.Event | None = None) -> threading.Event:
    """The event SIGTERM and Ctrl-C set, for the long-running commands (worker, sink, bounces receive)."""
    stop = stop or threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


@contextmanager
def progress(label: str, total: int | None = None, rate: bool = False) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on a terminal; silent when output goes to a file or a test runner.

    ``rate``: the callback gets increments (messages done) and the bar shows rate and ETA;
    otherwise it gets the running total (rows read).
    """
    if not console.is_terminal:
        yield lambda _n: None
        return
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if rate:
        columns += [_RateColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=total)
        if rate:
            yield lambda n: bar.advance(task, n)
        else:
            yield lambda n: bar.update(task, completed=n)


class _RateColumn(ProgressColumn):
    """Messages per second, from rich's own moving estimate."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} msg/s" if task.speed else "", style="progress.data.speed")
