"""Profiles: tracked traits with their history, sync marks, and the merge log by action

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from ichigen.core.db import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "profile_traits",
        sa.Column("id", ID, nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", JSON, nullable=True),
        sa.Column("source_kind", sa.String(length=20), nullable=False),
        sa.Column("source_ref", sa.String(length=200), nullable=True),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("person_id", "name"),
    )
    op.create_table(
        "profile_trait_changes",
        sa.Column("id", ID, nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("value", JSON, nullable=True),
        sa.Column("source_kind", sa.String(length=20), nullable=False),
        sa.Column("source_ref", sa.String(length=200), nullable=True),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_profile_trait_changes_person_id_id", "profile_trait_changes", ["person_id", "id"]
    )
    op.create_table(
        "profile_sync_marks",
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("last_id", ID, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_identity_merge_log_action_id", "identity_merge_log", ["action", "id"])


def downgrade() -> None:
    op.drop_index("ix_identity_merge_log_action_id", table_name="identity_merge_log")
    op.drop_table("profile_sync_marks")
    op.drop_index("ix_profile_trait_changes_person_id_id", table_name="profile_trait_changes")
    op.drop_table("profile_trait_changes")
    op.drop_table("profile_traits")
