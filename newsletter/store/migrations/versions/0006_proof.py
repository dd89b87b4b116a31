"""Proof before action: an approval holds the hash of the content it approved, and a quoted Message-ID
finds the message the engine sent (a bounce or complaint without a VERP token proves itself by it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        # SHA-256 of the issue file's bytes when it was approved; NULL (approved before 0006) must be approved again
        batch.add_column(sa.Column("content_hash", sa.String(64)))
    op.create_index("ix_outbox_message_id", "outbox", ["message_id"])
    with op.batch_alter_table("bounce_log") as batch:
        batch.add_column(sa.Column("proof", sa.String(16)))  # verp, message-id, signed-link, none (unproven)


def downgrade() -> None:
    with op.batch_alter_table("bounce_log") as batch:
        batch.drop_column("proof")
    op.drop_index("ix_outbox_message_id", table_name="outbox")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("content_hash")
