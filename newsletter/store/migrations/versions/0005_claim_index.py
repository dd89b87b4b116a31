"""Claim index: the outbox's unclaimed due rows of an issue in id order, and nothing else (a partial index).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

DUE = sa.text("state IN ('queued', 'deferred') AND claimed_by IS NULL")


def upgrade() -> None:
    op.create_index("ix_outbox_due", "outbox", ["issue_id", "id"], sqlite_where=DUE, postgresql_where=DUE)


def downgrade() -> None:
    op.drop_index("ix_outbox_due", table_name="outbox")
