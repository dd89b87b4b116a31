"""Click counts per paper ([tracking] clicks): one row per issue, paper (its anchor), link kind and UTC day, whose
``clicks`` the web process adds to in batches. No column names a reader, by design: what is counted is which link
of an issue was followed, never who followed it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clicks",
        sa.Column("issue_id", sa.Integer, nullable=False),
        sa.Column("paper", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("clicks", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("issue_id", "paper", "kind", "day", name="pk_clicks"),
        sa.ForeignKeyConstraint(["issue_id"], ["issues.id"], name="fk_clicks_issue_id_issues", ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("clicks")
