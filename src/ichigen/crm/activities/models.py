"""Activities (notes, calls, emails, meetings, completed tasks) and the records they are about."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from ichigen.core.db import Base, IdType, JsonType, UTCDateTime


class Activity(Base):
    """Something that happened with a customer: a note, call, email, meeting or done task."""

    __tablename__ = "activities"
    __table_args__ = (
        Index("ix_activities_kind_occurred_at", "kind", "occurred_at"),
        # An owner's activities (lists filtered by owner).
        Index("ix_activities_owner_id_occurred_at", "owner_id", "occurred_at"),
        # Lists of all activities, newest first, and date ranges (iCalendar export).
        Index("ix_activities_occurred_at_id", "occurred_at", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    #: note, call, email, meeting or task.
    kind: Mapped[str] = mapped_column(String(10))
    subject: Mapped[str] = mapped_column(String(500), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    #: When it happened; for a meeting, its start.
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: A meeting for whole days: ``occurred_at`` and ``ends_at`` are midnights (UTC) of dates.
    all_day: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: inbound or outbound, for calls and emails.
    direction: Mapped[str | None] = mapped_column(String(10))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    #: For calls: connected, left_voicemail, no_answer, busy, wrong_number.
    outcome: Mapped[str | None] = mapped_column(String(30))
    email_from: Mapped[str | None] = mapped_column(String(320))
    email_to: Mapped[list[str]] = mapped_column(JsonType, default=list)
    #: Meeting attendees: ``{"email": ..., "name": ...}``.
    attendees: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, default=list)
    location: Mapped[str | None] = mapped_column(String(500))
    #: The iCalendar UID of a meeting, so a re-import updates instead of duplicating.
    ical_uid: Mapped[str | None] = mapped_column(String(300), unique=True)
    owner_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL")
    )
    task_id: Mapped[int | None] = mapped_column(IdType)
    custom: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ActivityLink(Base):
    """An activity's tie to one record (contact, company, deal, ticket); one per record.

    ``occurred_at`` and ``kind`` repeat the activity's, so that a record's timeline is read
    newest first from this table's index alone.
    """

    __tablename__ = "activity_links"
    __table_args__ = (
        UniqueConstraint("activity_id", "record_type", "record_id"),
        Index(
            "ix_activity_links_record_occurred",
            "record_type",
            "record_id",
            "occurred_at",
            "activity_id",
        ),
        Index(
            "ix_activity_links_record_kind_occurred",
            "record_type",
            "record_id",
            "kind",
            "occurred_at",
            "activity_id",
        ),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    activity_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("activities.id", ondelete="CASCADE"), index=True
    )
    record_type: Mapped[str] = mapped_column(String(10))
    record_id: Mapped[int] = mapped_column(IdType)
    kind: Mapped[str] = mapped_column(String(10))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ActivityDayCount(Base):
    """How many activities of one kind one owner has on one day (UTC).

    The activities service keeps these with every write, so the dashboard's activity per rep
    reads a few rows per day however many activities there are;
    ``rebuild_activity_counts`` recomputes them after a bulk load that bypassed the service.
    Activities without an owner are not counted.
    """

    __tablename__ = "activity_day_counts"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    owner_id: Mapped[int] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
