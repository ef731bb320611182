"""Tasks with reminders and recurrence, and the in-app notifications reminders raise."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ichigen.core.db import Base, IdType, UTCDateTime


class Task(Base):
    """Something a user has to do, by a time, usually about a contact, company or deal."""

    __tablename__ = "tasks"
    __table_args__ = (
        # My day: a user's open tasks by due time.
        Index("ix_tasks_assignee_status_due", "assignee_id", "status", "due_at"),
        # Reminders due to fire.
        Index("ix_tasks_remind_at_reminded", "remind_at", "reminded_at"),
        Index("ix_tasks_record", "record_type", "record_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Due some time on the day of ``due_at`` rather than at that time.
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    #: low, normal, high or urgent.
    priority: Mapped[str] = mapped_column(String(10), default="normal")
    #: open, done or cancelled.
    status: Mapped[str] = mapped_column(String(10), default="open")
    assignee_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL")
    )
    created_by: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL")
    )
    #: contact, company, deal (or ticket): the record this task is about.
    record_type: Mapped[str | None] = mapped_column(String(10))
    record_id: Mapped[int | None] = mapped_column(IdType)
    #: An iCalendar RRULE (``FREQ=WEEKLY;BYDAY=MO``); completing the task creates the next.
    recurrence: Mapped[str | None] = mapped_column(String(500))
    #: The task this one repeats (the first of its series).
    series_id: Mapped[int | None] = mapped_column(IdType, index=True)
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Notification(Base):
    """A message to one user in the app (a task reminder, a deal assigned to them, …)."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user_read_id", "user_id", "read_at", "id"),
        # E-mail copies due to be sent (or sent again after a failure).
        Index("ix_notifications_email_next_at", "email_next_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    user_id: Mapped[int] = mapped_column(IdType, ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    title: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    link: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: When the e-mail copy was sent; none while unsent or when mail is off.
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: When to try sending the e-mail copy (again); none when no e-mail is due.
    email_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Attempts to send the e-mail copy so far; after a few failures it is given up.
    email_attempts: Mapped[int] = mapped_column(Integer, default=0)
