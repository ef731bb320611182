"""Contacts: the history of duplicate scans, at most one running at a time

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ichigen.core.db import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    op.create_table(
        "contact_duplicate_scans",
        sa.Column("id", ID, nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("trigger", sa.String(length=10), nullable=False),
        sa.Column("started_by", sa.String(length=320), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=True),
        sa.Column("candidates", sa.Integer(), nullable=True),
        sa.Column("queued", sa.Integer(), nullable=True),
        sa.Column("updated", sa.Integer(), nullable=True),
        sa.Column("already_decided", sa.Integer(), nullable=True),
        sa.Column("withdrawn", sa.Integer(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # One running scan at a time, whichever process starts it.
    op.create_index(
        "uq_contact_duplicate_scans_running",
        "contact_duplicate_scans",
        ["status"],
        unique=True,
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )
    op.create_index(
        "ix_contact_duplicate_scans_status_finished_at",
        "contact_duplicate_scans",
        ["status", "finished_at"],
    )


def downgrade() -> None:
    op.drop_table("contact_duplicate_scans")
