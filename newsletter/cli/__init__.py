"""The ``newsletter`` command: thin wrappers over the library, one group, an Example in each help.

    base         the group, its state, errors → one line, progress bars
    issues       issue list / check / approve, preview          (editors)
    arxiv        issue add: papers from arXiv into an issue file (editors)
    subscribers  init, subscribers add / import / export / …    (operators)
    sending      send, report, worker, schedule                 (operators)
    control      pause / resume / cancel a running send         (operators)
    site         demo, serve
    bounces      bounces receive / fetch / ingest / report           (operators)
    keys         keys status / rotate: the key that signs links      (operators)
    dkim         dkim-record: the DNS TXT record of each DKIM key    (operators)
    admin        admin add-user / users / token / audit: the console's users and API tokens (admins)
"""

from . import admin, arxiv, bounces, control, dkim, issues, keys, sending, site, subscribers  # noqa: F401  (each registers its commands)
from .base import cli


def main() -> None:
    cli(prog_name="newsletter")


__all__ = ["cli", "main"]
