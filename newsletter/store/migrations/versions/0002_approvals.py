"""Approvals: an issue marked ready by `newsletter issue approve`, without editing its file.

The first scheduler kept approvals as ``meta`` rows keyed ``approved:<slug>`` (a key that can
outgrow ``meta.key``'s 64 characters); they move here, and back on downgrade.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

PREFIX = "approved:"


def upgrade() -> None:
    approvals = op.create_table(
        "approvals",
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("slug", name="pk_approvals"),
    )
    meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    conn = op.get_bind()
    old = conn.execute(sa.select(meta.c.key, meta.c.value).where(meta.c.key.startswith(PREFIX))).all()
    for key, value in old:
        conn.execute(approvals.insert().values(slug=key[len(PREFIX):][:64], approved_at=_when(value)))
    conn.execute(meta.delete().where(meta.c.key.startswith(PREFIX)))


def _when(value: str) -> datetime:
    """The old rows' ISO timestamp; an unreadable one becomes the migration's own time."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return datetime.now(UTC)


def downgrade() -> None:
    approvals = sa.table("approvals", sa.column("slug", sa.String),
                         sa.column("approved_at", sa.DateTime(timezone=True)))
    meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.Text))
    conn = op.get_bind()
    for slug, approved_at in conn.execute(sa.select(approvals.c.slug, approvals.c.approved_at)).all():
        conn.execute(meta.insert().values(key=PREFIX + slug, value=approved_at.isoformat()))
    op.drop_table("approvals")
