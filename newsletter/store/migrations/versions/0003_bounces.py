"""Bounces: the bounce log, and each subscriber's status reason and soft-bounce score.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)
REFERENCES = (("subscriber_id", "subscribers"), ("issue_id", "issues"), ("outbox_id", "outbox"))


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("status_reason", sa.Text))
        batch.add_column(sa.Column("bounce_score", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("last_bounce_at", When))
    op.create_table(
        "bounce_log",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("received_at", When, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(320)),
        sa.Column("domain", sa.String(255)),
        sa.Column("class", sa.String(8)),
        sa.Column("status", sa.String(16)),
        sa.Column("diagnostic", sa.Text),
        sa.Column("subscriber_id", sa.Integer),
        sa.Column("issue_id", sa.Integer),
        sa.Column("outbox_id", sa.Integer),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("raw", sa.LargeBinary),
        sa.Column("raw_until", When),
        sa.PrimaryKeyConstraint("id", name="pk_bounce_log"),
        *(sa.ForeignKeyConstraint([column], [f"{table}.id"], name=f"fk_bounce_log_{column}_{table}",
                                  ondelete="SET NULL") for column, table in REFERENCES),
    )
    op.create_index("ix_bounce_log_issue_id_kind", "bounce_log", ["issue_id", "kind"])
    op.create_index("ix_bounce_log_outbox_id_kind", "bounce_log", ["outbox_id", "kind"])
    op.create_index("ix_bounce_log_raw_until", "bounce_log", ["raw_until"])


def downgrade() -> None:
    for index in ("ix_bounce_log_raw_until", "ix_bounce_log_outbox_id_kind", "ix_bounce_log_issue_id_kind"):
        op.drop_index(index, table_name="bounce_log")
    op.drop_table("bounce_log")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("last_bounce_at")
        batch.drop_column("bounce_score")
        batch.drop_column("status_reason")
