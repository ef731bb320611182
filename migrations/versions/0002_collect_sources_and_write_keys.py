"""Collect: event sources and their write keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 14:36:02.454689
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import ichigen.core.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sources",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("rate_limit_per_second", sa.Integer(), nullable=True),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", ichigen.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", ichigen.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
        sa.UniqueConstraint("name", name=op.f("uq_sources_name")),
    )
    op.create_table(
        "source_write_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "source_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", ichigen.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", ichigen.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["source_id"],
            ["sources.id"],
            name=op.f("fk_source_write_keys_source_id_sources"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_write_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_source_write_keys_key_hash")),
    )
    with op.batch_alter_table("source_write_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_source_write_keys_source_id"), ["source_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("source_write_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_source_write_keys_source_id"))

    op.drop_table("source_write_keys")
    op.drop_table("sources")
