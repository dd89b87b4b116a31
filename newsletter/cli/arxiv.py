"""``newsletter issue add ISSUE ARXIV_ID…``: papers from arXiv into an issue file, for the editor to edit."""

from __future__ import annotations

import click

from ..content import find_issue
from ..papers import add_papers
from .base import State, pass_state
from .issues import issue


@issue.command("add")
@click.argument("ref", metavar="ISSUE")
@click.argument("ids", metavar="ARXIV_ID…", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Print the TOML it would add; the issue file is not touched.")
@pass_state
def issue_add(state: State, ref: str, ids: tuple[str, ...], dry_run: bool) -> None:
    """Add papers to ISSUE by arXiv id: title, authors, abstract as summary, status and venue from the
    comments, code link, areas suggested from the categories ([arxiv] in config.toml). One request to
    arXiv for all ids, answers kept in [arxiv] cache_dir; any error writes nothing.

    Example: newsletter issue add 2026-05-28 2605.28760 arXiv:2605.28819v2
    """
    path = find_issue(state.config.path("issues"), ref)
    done = add_papers(path, ids, state.config, dry_run=dry_run)
    if dry_run:
        click.echo(done.text.lstrip("\n"), nl=False)
    for line in done.lines:
        click.echo(f"would be {line}" if dry_run and line.startswith("added") else line)
    if done.written:
        click.echo(f"{path.name}: check the suggestions, then `newsletter issue check {path.stem}`")
