"""Identity: persons, identifiers, append-only identity edges and the merge log

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 21:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from ichigen.core.db import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "identity_persons",
        sa.Column("id", ID, nullable=False),
        sa.Column("merged_into", ID, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["merged_into"], ["identity_persons.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_identity_persons_merged_into", "identity_persons", ["merged_into"])
    op.create_table(
        "identity_identifiers",
        sa.Column("id", ID, nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["identity_persons.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("type", "value"),
    )
    op.create_index("ix_identity_identifiers_person_id", "identity_identifiers", ["person_id"])
    op.create_table(
        "identity_edges",
        sa.Column("id", ID, nullable=False),
        sa.Column("left_id", ID, nullable=False),
        sa.Column("right_id", ID, nullable=False),
        sa.Column("source_kind", sa.String(length=20), nullable=False),
        sa.Column("source_ref", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.Column("removed_by", sa.String(length=320), nullable=True),
        sa.ForeignKeyConstraint(["left_id"], ["identity_identifiers.id"]),
        sa.ForeignKeyConstraint(["right_id"], ["identity_identifiers.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_identity_edges_left_id", "identity_edges", ["left_id"])
    op.create_index("ix_identity_edges_right_id", "identity_edges", ["right_id"])
    op.create_table(
        "identity_merge_log",
        sa.Column("id", ID, nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("person_id", ID, nullable=False),
        sa.Column("other_person_id", ID, nullable=True),
        sa.Column("reason", sa.String(length=300), nullable=False),
        sa.Column("source_kind", sa.String(length=20), nullable=False),
        sa.Column("source_ref", sa.String(length=200), nullable=True),
        sa.Column("details", JSON, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_identity_merge_log_person_id_id", "identity_merge_log", ["person_id", "id"])


def downgrade() -> None:
    op.drop_table("identity_merge_log")
    op.drop_table("identity_edges")
    op.drop_table("identity_identifiers")
    op.drop_table("identity_persons")
