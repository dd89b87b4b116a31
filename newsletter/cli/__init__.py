"""The ``newsletter`` command: thin wrappers over the library, one group, an Example in each help.

    base         the group, its state, errors → one line, progress bars
    issues       issue list / check / approve, preview          (editors)
    subscribers  init, subscribers add / import / export / …    (operators)
    sending      send, report, worker, schedule                 (operators)
    site         demo, serve
    bounces      bounces receive / fetch / ingest / report           (operators)
    keys         keys status / rotate: the key that signs links      (operators)
    admin        admin add-user / users / token / audit: the console's users and API tokens (admins)
"""

from . import admin, bounces, issues, keys, sending, site, subscribers  # noqa: F401  (each registers its commands)
from .base import cli


def main() -> None:
    cli(prog_name="newsletter")


__all__ = ["cli", "main"]
