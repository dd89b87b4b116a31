"""The first schema: subscribers, suppressions, issues, the outbox and its delivery attempts.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_meta"),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("areas", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.Column("confirmed_at", When),
        sa.Column("unsubscribed_at", When),
        sa.Column("updated_at", When, nullable=False),
        sa.CheckConstraint("status IN ('pending', 'active', 'unsubscribed', 'bounced', 'blocked')",
                           name="ck_subscribers_status"),
        sa.CheckConstraint("source IN ('import', 'web', 'cli')", name="ck_subscribers_source"),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email_key", name="uq_subscribers_email_key"),
    )
    op.create_index("ix_subscribers_status_id", "subscribers", ["status", "id"])
    op.create_table(
        "suppressions",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("created_at", When, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_suppressions"),
        sa.UniqueConstraint("address_hash", name="uq_suppressions_address_hash"),
    )
    op.create_table(
        "issues",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("pause_reason", sa.Text),
        sa.Column("created_at", When, nullable=False),
        sa.Column("started_at", When),
        sa.Column("finished_at", When),
        sa.PrimaryKeyConstraint("id", name="pk_issues"),
        sa.UniqueConstraint("slug", name="uq_issues_slug"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("issue_id", sa.Integer, nullable=False),
        sa.Column("subscriber_id", sa.Integer),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("group_key", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", When),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("lease_until", When),
        sa.Column("last_code", sa.Integer),
        sa.Column("last_answer", sa.Text),
        sa.Column("message_id", sa.String(255)),
        sa.Column("created_at", When, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.Column("sent_at", When),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], name="fk_outbox_issue_id_issues", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], name="fk_outbox_subscriber_id_subscribers",
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("issue_id", "subscriber_id", name="uq_outbox_issue_id_subscriber_id"),
    )
    op.create_index("ix_outbox_issue_id_state_id", "outbox", ["issue_id", "state", "id"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("outbox_id", sa.Integer, nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("code", sa.Integer),
        sa.Column("answer", sa.Text),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], name="fk_delivery_attempts_outbox_id_outbox",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_attempts"),
    )
    op.create_index("ix_delivery_attempts_outbox_id", "delivery_attempts", ["outbox_id"])


def downgrade() -> None:
    for name in ("delivery_attempts", "outbox", "issues", "suppressions", "subscribers", "meta"):
        op.drop_table(name)
