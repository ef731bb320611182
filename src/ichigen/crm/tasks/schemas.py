"""Tasks: request and response shapes."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from ichigen.core.schemas import RecordId
from ichigen.crm.deals.schemas import DealRead

RecordType = Literal["contact", "company", "deal"]
Priority = Literal["low", "normal", "high", "urgent"]
Status = Literal["open", "done", "cancelled"]
#: Due tasks as My day groups them (``none``: no due date).
DueWindow = Literal["overdue", "today", "upcoming", "none"]
PRIORITIES: tuple[Priority, ...] = ("low", "normal", "high", "urgent")
STATUSES: tuple[Status, ...] = ("open", "done", "cancelled")
RECORD_TYPES: tuple[RecordType, ...] = ("contact", "company", "deal")

Title = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
Description = Annotated[str, Field(max_length=20_000)]
Rule = Annotated[str, StringConstraints(min_length=1, max_length=500, strip_whitespace=True)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=200)]

EXAMPLE: dict[str, Any] = {
    "title": "見積書を送る",
    "description": "Send the revised quote with the volume discount.",
    "due_at": "2026-03-10T10:00:00+09:00",
    "priority": "high",
    "assignee_id": 2,
    "record_type": "deal",
    "record_id": 17,
    "remind_at": "2026-03-10T09:30:00+09:00",
}


class TaskFields(BaseModel):
    """Fields a caller may set; every one is optional so PATCH can reuse them.

    Times must carry a UTC offset. ``all_day`` makes ``due_at`` a date: the calendar day of
    ``due_at`` as written (its offset decides the day), kept as midnight UTC of that day.
    """

    model_config = ConfigDict(extra="forbid")

    description: Description | None = None
    due_at: AwareDatetime | None = None
    all_day: bool | None = None
    priority: Priority | None = None
    assignee_id: RecordId | None = None
    record_type: RecordType | None = None
    record_id: RecordId | None = None
    #: When to remind the assignee (in the app, and by e-mail when SMTP is set up).
    remind_at: AwareDatetime | None = None
    #: An iCalendar RRULE such as ``FREQ=WEEKLY;BYDAY=MO`` (daily or coarser), evaluated in UTC.
    recurrence: Rule | None = None
    external_id: ExternalId | None = None


class TaskCreate(TaskFields):
    """A new task; the assignee defaults to whoever creates it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    title: Title


class TaskUpdate(TaskFields):
    """Changes to a task; fields left out stay as they are, ``null`` clears one."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"priority": "urgent"}]}
    )

    title: Title | None = None


class TaskRead(BaseModel):
    """A task as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    external_id: str | None
    title: str
    description: str
    due_at: datetime | None
    all_day: bool
    priority: Priority
    status: Status
    assignee_id: int | None
    created_by: int | None
    record_type: RecordType | None
    record_id: int | None
    recurrence: str | None
    #: The first task of the series this one repeats (none for a one-off).
    series_id: int | None
    remind_at: datetime | None
    reminded_at: datetime | None
    completed_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class TaskCompleted(BaseModel):
    """A completed task, and the next one of its series when it repeats."""

    task: TaskRead
    next_task: TaskRead | None = None
    #: The timeline entry the completion left on the task's record (none without a record).
    activity_id: int | None = None


class MyDay(BaseModel):
    """One user's day: tasks overdue, due today and in the next seven days, and deals whose
    next step is missing or late. Lists are bounded; the totals say how many there are."""

    today: date
    timezone: str
    overdue: list[TaskRead]
    overdue_total: int
    due_today: list[TaskRead]
    due_today_total: int
    upcoming: list[TaskRead]
    upcoming_total: int
    deals_needing_next_step: list[DealRead]


class MemberTasks(BaseModel):
    """One team member's open tasks (the first few by due time) and how many are overdue."""

    user_id: int
    name: str
    email: str
    open_total: int
    overdue_total: int
    tasks: list[TaskRead]


class TeamTasks(BaseModel):
    team_id: int
    name: str
    members: list[MemberTasks]


class NotificationRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    #: ``task_reminder`` for a task's reminder.
    kind: str
    title: str
    body: str
    link: str | None
    created_at: datetime
    read_at: datetime | None
    emailed_at: datetime | None


class UnreadCount(BaseModel):
    unread: int


class ReminderRun(BaseModel):
    """What one pass over due reminders did."""

    reminded: int = 0
    emailed: int = 0
    email_failed: int = 0
