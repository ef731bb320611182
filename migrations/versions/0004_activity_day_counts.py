"""Sales: activity counts per owner, day and kind, for the dashboard's activity per rep

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 20:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activity_day_counts",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("day", "owner_id", "kind"),
    )
    # The counts of the activities logged so far.
    if op.get_bind().dialect.name == "postgresql":
        day = "date(timezone('UTC', occurred_at))"
    else:
        day = "date(occurred_at)"
    op.execute(
        f"INSERT INTO activity_day_counts (day, owner_id, kind, count) "
        f"SELECT {day}, owner_id, kind, count(*) FROM activities "
        f"WHERE owner_id IS NOT NULL GROUP BY {day}, owner_id, kind"
    )


def downgrade() -> None:
    op.drop_table("activity_day_counts")
