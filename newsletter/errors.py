"""The exception tree.

Every error a user can cause by what they wrote or asked (a config value, an issue file, a list
file, a command-line argument, a link) is a ``NewsletterError``: the CLI prints its message on one
line and exits non-zero, with no traceback (``cli/base.py``, the one place that maps them). Anything
else is a bug and keeps its traceback.

    NewsletterError              a user's mistake, told in one line that names file, line or field
    ├── ConfigError              config.toml or a NEWSLETTER_* environment variable
    ├── ContentError             an issue file in issues/ (TOML syntax, a paper's field, duplicates)
    │   └── NotReady             a draft asked to go to the whole list (not ready, not approved)
    ├── IssueNotFound            ISSUE names no file in issues/
    ├── RenderError              a template: Jinja2 syntax, an MJML tag MJML does not define
    ├── AudienceError            a subscriber command: unknown address, bad value, bad list file
    ├── DatabaseError            the database cannot be reached or is not at this code's schema
    ├── BadToken                 a signed link that was tampered with, has expired or is foreign
    ├── SendFault                a fault of the whole send (login or sender refused, a run of
    │                            errors): the send pauses, the rest stays queued
    ├── NothingToSend            a send that would reach no one (empty list, nobody new): refused,
    │                            nothing recorded, the issue stays as it was
    ├── ActionRefused            an operator's pause, resume, cancel or send that the issue's state does not
    │                            allow, or whose typed confirmation is wrong: nothing done
    ├── MailboxError             the bounce mailbox (IMAP) cannot be reached, logged into or written
    ├── ArxivError               arXiv cannot be reached, answers an error or has no such paper
    │                            (`issue add`): nothing is written
    └── AccountError             a console user or API token: a wrong password, a locked account, a bad
                                 role or name

One message's failure is never an exception that leaves the send: it is a ``Result`` recorded
on that message's outbox row (``send/pool.py``).
"""

from __future__ import annotations


class NewsletterError(Exception):
    """A mistake in what the user wrote; its message is the whole story, on one line."""


class ConfigError(NewsletterError):
    pass


class ContentError(NewsletterError):
    pass


class NotReady(ContentError):
    """``send`` of an issue that is neither ``ready = true`` nor approved."""


class IssueNotFound(NewsletterError):
    pass


class RenderError(NewsletterError):
    pass


class AudienceError(NewsletterError):
    """A subscriber command cannot do what was asked (unknown address, bad value, bad file)."""


class DatabaseError(NewsletterError):
    """The database cannot be reached or is not at the schema this code expects."""


class BadToken(NewsletterError):
    """A tampered, expired or foreign token."""


class SendFault(NewsletterError):
    """Not one message's fate but the whole send's: it pauses with this one-line reason."""


class NothingToSend(NewsletterError):
    """A send that would reach no one: refused before anything is recorded, so the issue can still go out."""


class ActionRefused(NewsletterError):
    """An operator's action on a send that does not fit it now (pausing a sent issue, a mistyped date)."""


class MailboxError(NewsletterError):
    """``bounces fetch``: the IMAP server refused us or went away; nothing was deleted that was not stored."""


class ArxivError(NewsletterError):
    """``issue add``: arXiv was not reached, answered an error, or does not know an id; the issue file is untouched."""


class AccountError(NewsletterError):
    """A console user or API token cannot do what was asked (wrong password, locked, bad role, unknown)."""
