"""Contacts: merges (undoable) and the duplicate review queue

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from ichigen.core.db import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "contact_merges",
        sa.Column("id", ID, nullable=False),
        sa.Column("survivor_id", ID, nullable=False),
        sa.Column("merged_id", ID, nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("pair_id", ID, nullable=True),
        sa.Column("merged_at", UTCDateTime(), nullable=False),
        sa.Column("merged_by", sa.String(length=320), nullable=False),
        sa.Column("undone_at", UTCDateTime(), nullable=True),
        sa.Column("undone_by", sa.String(length=320), nullable=True),
        sa.Column("contacts", JSON, nullable=False),
        sa.Column("moved", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_contact_merges_survivor_id_id", "contact_merges", ["survivor_id", "id"])
    op.create_index("ix_contact_merges_merged_id_id", "contact_merges", ["merged_id", "id"])
    op.create_table(
        "contact_duplicate_pairs",
        sa.Column("id", ID, nullable=False),
        sa.Column("left_contact_id", ID, nullable=False),
        sa.Column("right_contact_id", ID, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("match_probability", sa.Float(), nullable=False),
        sa.Column("match_weight", sa.Float(), nullable=False),
        sa.Column("contributions", JSON, nullable=False),
        sa.Column("found_at", UTCDateTime(), nullable=False),
        sa.Column("scanned_at", UTCDateTime(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(length=320), nullable=True),
        sa.Column("merge_id", ID, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("left_contact_id", "right_contact_id"),
    )
    op.create_index(
        "ix_contact_duplicate_pairs_status_probability",
        "contact_duplicate_pairs",
        ["status", "match_probability"],
    )
    op.create_index(
        "ix_contact_duplicate_pairs_right_contact_id",
        "contact_duplicate_pairs",
        ["right_contact_id"],
    )


def downgrade() -> None:
    op.drop_table("contact_duplicate_pairs")
    op.drop_table("contact_merges")
