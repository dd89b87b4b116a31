"""The schema, as SQLAlchemy Core tables: the one place that names tables and columns.

Core, not the ORM: every module reads and writes through named queries and hands dataclass
records across its boundary (``audience.Subscriber``, ``outbox.Row``), never live ORM rows.
The Alembic migrations in ``migrations/versions`` create exactly this; a test compares them.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
})

When = sa.DateTime(timezone=True)

SUBSCRIBER_STATUSES = ("pending", "active", "unsubscribed", "bounced", "blocked")
SOURCES = ("import", "web", "cli")

meta = sa.Table(
    "meta", metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

subscribers = sa.Table(
    "subscribers", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    # casefolded address: unique without regard to case (email-validator keeps the local part's case)
    sa.Column("email_key", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    # chosen areas joined by ';' in the configured order; '' = all areas
    sa.Column("areas", sa.String(200), nullable=False, default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Column("confirmed_at", When),
    sa.Column("unsubscribed_at", When),
    sa.Column("updated_at", When, nullable=False),
    # why the status is what it is, when the engine changed it (a bounce's diagnostic, a complaint)
    sa.Column("status_reason", sa.Text),
    # soft bounces: points within [bounces] soft_window_days, at most one a day (migration 0003)
    sa.Column("bounce_score", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_bounce_at", When),
    # the last confirmation link sent: at most one per [web] confirm interval, across processes (0004)
    sa.Column("confirm_sent_at", When),
    sa.CheckConstraint(f"status IN {SUBSCRIBER_STATUSES!r}", name="status"),
    sa.CheckConstraint(f"source IN {SOURCES!r}", name="source"),
)
sa.Index("ix_subscribers_status_id", subscribers.c.status, subscribers.c.id)

suppressions = sa.Table(
    "suppressions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    # HMAC-SHA256 of the casefolded address, keyed by meta 'suppression_key': the address itself is gone
    sa.Column("address_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("created_at", When, nullable=False),
)

issues = sa.Table(
    "issues", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(64), nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # sending | paused | sent
    sa.Column("pause_reason", sa.Text),
    sa.Column("created_at", When, nullable=False),
    sa.Column("started_at", When),
    sa.Column("finished_at", When),
)

outbox = sa.Table(
    "outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    # SET NULL: erasing a subscriber keeps the delivery log's counts; email/name are blanked then too
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="SET NULL")),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("group_key", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", When),
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("lease_until", When),
    sa.Column("last_code", sa.Integer),
    sa.Column("last_answer", sa.Text),
    sa.Column("message_id", sa.String(255)),
    sa.Column("created_at", When, nullable=False),
    sa.Column("updated_at", When, nullable=False),
    sa.Column("sent_at", When),
    sa.UniqueConstraint("issue_id", "subscriber_id"),
)
# the report and counts by state
sa.Index("ix_outbox_issue_id_state_id", outbox.c.issue_id, outbox.c.state, outbox.c.id)
# the claim: due rows of one issue in id order, from an index that holds only unclaimed due rows, so a claim reads
# about the rows it takes whatever the size of the queue (migration 0005; #16 measured 158-259 ms a claim at
# 1M rows without it, the planner reading every due row and sorting)
_DUE_ROWS = sa.and_(outbox.c.state.in_(("queued", "deferred")), outbox.c.claimed_by.is_(None))
sa.Index("ix_outbox_due", outbox.c.issue_id, outbox.c.id, sqlite_where=_DUE_ROWS, postgresql_where=_DUE_ROWS)

# a bounce or complaint without a VERP token proves itself by the Message-ID it quotes (migration 0006)
sa.Index("ix_outbox_message_id", outbox.c.message_id)

delivery_attempts = sa.Table(
    "delivery_attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("outbox_id", sa.Integer, sa.ForeignKey("outbox.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("at", When, nullable=False),
    sa.Column("code", sa.Integer),
    sa.Column("answer", sa.Text),
    sa.Column("outcome", sa.String(16), nullable=False),
)

# `newsletter issue approve`: an issue ready for the weekly send without editing its file (migration 0002)
approvals = sa.Table(
    "approvals", metadata,
    sa.Column("slug", sa.String(64), primary_key=True),
    sa.Column("approved_at", When, nullable=False),
    # SHA-256 of the issue file as approved: an edit after approval needs approving again (migration 0006)
    sa.Column("content_hash", sa.String(64)),
)

# Every notice `newsletter bounces` took in, with its verdict and what the policy did (migration 0003)
bounce_log = sa.Table(
    "bounce_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("received_at", When, nullable=False),
    sa.Column("source", sa.Text, nullable=False),             # smtp, lmtp, imap:<folder>, a file (#N in an mbox)
    # bounce | complaint | auto-reply | not-bounce | unknown | unsubscribe (mail to the List-Unsubscribe address)
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("recipient", sa.String(320)),
    sa.Column("domain", sa.String(255)),                      # the recipient's domain, for the report by domain
    sa.Column("class", sa.String(8)),                         # hard | soft
    sa.Column("status", sa.String(16)),                       # RFC 3463, e.g. 5.1.1
    sa.Column("diagnostic", sa.Text),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="SET NULL")),
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="SET NULL")),
    sa.Column("outbox_id", sa.Integer, sa.ForeignKey("outbox.id", ondelete="SET NULL")),
    sa.Column("action", sa.Text, nullable=False),             # what the policy did, in words
    sa.Column("raw", sa.LargeBinary),                         # the notice, kept [bounces] keep_raw_days
    sa.Column("raw_until", When),
    # how the notice proved whom it is about: verp, message-id, signed-link; 'none' = it named someone without
    # proof and changed nothing (for a person); NULL = nothing to prove (auto-reply, unknown…) (migration 0006)
    sa.Column("proof", sa.String(16)),
    # Sisimai's reason for the (first) failed recipient: userunknown, mailboxfull, blocked, …; "feedback" for a
    # complaint; NULL where none was read (migration 0009)
    sa.Column("reason", sa.String(32)),
)
sa.Index("ix_bounce_log_issue_id_kind", bounce_log.c.issue_id, bounce_log.c.kind)
sa.Index("ix_bounce_log_outbox_id_kind", bounce_log.c.outbox_id, bounce_log.c.kind)  # the replay check
sa.Index("ix_bounce_log_raw_until", bounce_log.c.raw_until)                           # forgetting raw notices

ROLES = ("editor", "operator", "admin")  # each may do what the ones before it may (accounts.py)

# The operator's console (migration 0007): its users, the API's tokens, and who did what
users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),        # Argon2id (argon2-cffi)
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", When),
    sa.Column("session_epoch", sa.Integer, nullable=False, server_default="0"),  # +1: every session ends
    sa.CheckConstraint(f"role IN {ROLES!r}", name="role"),
)

api_tokens = sa.Table(
    "api_tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # SHA-256 of a 256-bit random token
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(64), nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Column("last_used_at", When),
    sa.Column("revoked_at", When),
    sa.CheckConstraint(f"role IN {ROLES!r}", name="role"),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", When, nullable=False),
    sa.Column("actor", sa.String(80), nullable=False),     # user:<name>, token:<name>, cli
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(320), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

# A subscriber's status changes with their cause (a confirmation, a bounce's diagnostic, an operator's block)
subscriber_events = sa.Table(
    "subscriber_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("subscriber_id", sa.Integer, sa.ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", When, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("cause", sa.Text, nullable=False),
)
sa.Index("ix_subscriber_events_subscriber_id_id", subscriber_events.c.subscriber_id, subscriber_events.c.id)
# a subscriber's page: the messages sent to it, the notices about it
sa.Index("ix_outbox_subscriber_id", outbox.c.subscriber_id)
sa.Index("ix_bounce_log_subscriber_id", bounce_log.c.subscriber_id)

# Click counts per paper ([tracking] clicks, clicks.py; migration 0010): how often each link of an issue's paper was
# followed on a day, added to by the web process in batches. No column names a reader, by design.
clicks = sa.Table(
    "clicks", metadata,
    sa.Column("issue_id", sa.Integer, sa.ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("paper", sa.String(64), primary_key=True),  # the paper's anchor (content.Paper.anchor)
    sa.Column("kind", sa.String(16), primary_key=True),   # paper, code, archive
    sa.Column("day", sa.Date, primary_key=True),          # UTC
    sa.Column("clicks", sa.Integer, nullable=False),
)

# Tables in the same database that the migrations do not own: APScheduler's job store makes its own.
JOB_TABLE = "apscheduler_jobs"
NOT_OURS = frozenset({JOB_TABLE})
# Search indexes SQLAlchemy has no words for (migration 0008, audience/search.py): SQLite's FTS5 table and the
# shadow tables it keeps, PostgreSQL's pg_trgm indexes. Made by the migration alone, so left out of comparisons.
SEARCH_TABLE = "subscribers_search"
NOT_IN_METADATA = frozenset({SEARCH_TABLE, *(f"{SEARCH_TABLE}_{part}" for part in ("data", "idx", "config",
                                                                                      "docsize", "content")),
                             "ix_subscribers_email_key_trgm", "ix_subscribers_name_trgm"})


def ours(name: str | None, type_: str, _parent_names: object) -> bool:
    """Alembic's ``include_name``: leave tables the migrations do not own, and the search index, out of any
    comparison."""
    return not (type_ == "table" and name in NOT_OURS) and name not in NOT_IN_METADATA
