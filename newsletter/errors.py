"""The exception tree.

Every error a user can cause by what they wrote (a config value, an issue file, a list file, a
command-line argument) is a ``NewsletterError``: the CLI prints its message on one line and exits
non-zero, with no traceback. Anything else is a bug and keeps its traceback.

    NewsletterError              a user's mistake, told in one line that names file, line or field
    ├── ConfigError              config.toml or a NEWSLETTER_* environment variable
    ├── ContentError             an issue file in issues/ (TOML syntax, a paper's field, duplicates)
    ├── IssueNotFound            ISSUE names no file in issues/
    ├── RenderError              a template: Jinja2 syntax, an MJML tag MJML does not define
    └── SendFault                a fault of the whole send (login or sender refused, a run of
                                 errors): the send pauses, the rest stays queued
"""

from __future__ import annotations


class NewsletterError(Exception):
    """A mistake in what the user wrote; its message is the whole story, on one line."""


class ConfigError(NewsletterError):
    pass


class ContentError(NewsletterError):
    pass


class IssueNotFound(NewsletterError):
    pass


class RenderError(NewsletterError):
    pass


class SendFault(NewsletterError):
    """Not one message's fate but the whole send's: it pauses with this one-line reason."""
