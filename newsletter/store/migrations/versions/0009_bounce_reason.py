"""Why a notice bounced, in Sisimai's words: bounce_log.reason holds the failed recipient's reason
(userunknown, hostunknown, hasmoved, notaccept, mailboxfull, filtered, blocked, policyviolation, securityerror,
expired, …; "feedback" for a complaint), which decided its class, so ``bounces report`` can count notices by it.
Rows logged before 0009 keep NULL: their reason was never read.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bounce_log") as batch:
        batch.add_column(sa.Column("reason", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("bounce_log") as batch:
        batch.drop_column("reason")
