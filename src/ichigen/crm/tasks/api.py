"""JSON API for tasks, My day, a team's tasks and the caller's notifications."""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Query, Response, status
from pydantic import AwareDatetime

from ichigen.auth.permissions import require
from ichigen.core.audit import AuditEntryRead, record_history
from ichigen.core.errors import FieldError, ValidationFailed
from ichigen.core.schemas import Page, RecordId
from ichigen.crm.tasks import service
from ichigen.crm.tasks.schemas import (
    DueWindow,
    MyDay,
    NotificationRead,
    Priority,
    RecordType,
    Status,
    TaskCompleted,
    TaskCreate,
    TaskRead,
    TaskUpdate,
    TeamTasks,
    UnreadCount,
)
from ichigen.web.deps import ApiActor, DbSession, IfMatch, etag, json_body

router = APIRouter(tags=["tasks"])

TimeZone = Annotated[
    str,
    Query(
        max_length=64,
        description="IANA time zone whose day counts (e.g. `Asia/Tokyo`); UTC by default.",
        examples=["Asia/Tokyo"],
    ),
]


def zone_of(name: str) -> ZoneInfo:
    """A time zone by its IANA name, or a 422 naming the ``tz`` parameter."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"Unknown time zone {name!r}.", [FieldError(("query", "tz"), "unknown time zone")]
        ) from None


@router.get("/tasks", response_model=Page[TaskRead])
def list_tasks(
    session: DbSession,
    actor: ApiActor,
    assignee_id: Annotated[RecordId | None, Query(description="Tasks of this user.")] = None,
    mine: Annotated[bool, Query(description="Tasks assigned to the caller.")] = False,
    unassigned: Annotated[bool, Query(description="Tasks assigned to nobody.")] = False,
    status: Annotated[list[Status], Query(description="Repeatable.")] = [],  # noqa: B006
    priority: Annotated[list[Priority], Query(description="Repeatable.")] = [],  # noqa: B006
    due_from: Annotated[AwareDatetime | None, Query(description="Due at or after.")] = None,
    due_to: Annotated[AwareDatetime | None, Query(description="Due before.")] = None,
    due: Annotated[
        DueWindow | None,
        Query(
            description="Overdue, due today or in the next seven days as My day counts them "
            "in `tz`, or without a due date."
        ),
    ] = None,
    tz: TimeZone = "UTC",
    record_type: RecordType | None = None,
    record_id: RecordId | None = None,
    sort: Annotated[
        str | None,
        Query(
            max_length=30,
            description="`due_at` (default; tasks without one last), `created_at`, "
            "`updated_at` or `id`; `-` for descending.",
        ),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Tasks, filtered by assignee, status, priority, due range and record; cursor-paged."""
    return json_body(
        service.list_tasks(
            session,
            actor,
            assignee_id=actor.user_id if mine else assignee_id,
            unassigned=unassigned,
            status=status,
            priority=priority,
            due_from=due_from,
            due_to=due_to,
            due=due,
            zone=zone_of(tz),
            record_type=record_type,
            record_id=record_id,
            sort=sort,
            cursor=cursor,
            limit=limit,
        )
    )


@router.post("/tasks", response_model=TaskRead, status_code=status.HTTP_201_CREATED)
def create_task(
    data: TaskCreate, session: DbSession, actor: ApiActor, response: Response
) -> TaskRead:
    """Create a task (assigned to the caller unless `assignee_id` is given)."""
    task = service.create_task(session, data, actor)
    response.headers["Location"] = f"/api/v1/tasks/{task.id}"
    response.headers["ETag"] = etag(task.version)
    return task


@router.get("/tasks/{task_id}", response_model=TaskRead)
def get_task(task_id: RecordId, session: DbSession, actor: ApiActor) -> Response:
    task = service.get_task(session, task_id, actor)
    return json_body(task, {"ETag": etag(task.version)})


@router.patch("/tasks/{task_id}", response_model=TaskRead)
def update_task(
    task_id: RecordId,
    data: TaskUpdate,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> TaskRead:
    """Change a task; send `If-Match` with its ETag to refuse a change over someone else's."""
    task = service.update_task(session, task_id, data, actor, if_version=version)
    response.headers["ETag"] = etag(task.version)
    return task


@router.delete("/tasks/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_task(task_id: RecordId, session: DbSession, actor: ApiActor, version: IfMatch) -> None:
    service.delete_task(session, task_id, actor, if_version=version)


@router.post("/tasks/{task_id}/complete", response_model=TaskCompleted)
def complete_task(
    task_id: RecordId, session: DbSession, actor: ApiActor, version: IfMatch, response: Response
) -> TaskCompleted:
    """Mark a task done: it is logged on its record's timeline, and a repeating task's next
    occurrence is created. Completing a done task again changes nothing."""
    done = service.complete_task(session, task_id, actor, if_version=version)
    response.headers["ETag"] = etag(done.task.version)
    return done


@router.post("/tasks/{task_id}/reopen", response_model=TaskRead)
def reopen_task(
    task_id: RecordId, session: DbSession, actor: ApiActor, version: IfMatch, response: Response
) -> TaskRead:
    """Open a done or cancelled task again."""
    task = service.reopen_task(session, task_id, actor, if_version=version)
    response.headers["ETag"] = etag(task.version)
    return task


@router.post("/tasks/{task_id}/cancel", response_model=TaskRead)
def cancel_task(
    task_id: RecordId, session: DbSession, actor: ApiActor, version: IfMatch, response: Response
) -> TaskRead:
    """Cancel an open task (a repeating task's series ends with it)."""
    task = service.cancel_task(session, task_id, actor, if_version=version)
    response.headers["ETag"] = etag(task.version)
    return task


@router.get("/tasks/{task_id}/history", response_model=list[AuditEntryRead])
def task_history(task_id: RecordId, session: DbSession, actor: ApiActor) -> list[AuditEntryRead]:
    """The task's audit history, newest first."""
    require(actor, "audit", "read")
    service.get_task(session, task_id, actor)
    return record_history(session, "tasks", task_id)


@router.get("/my-day", response_model=MyDay)
def my_day(
    session: DbSession,
    actor: ApiActor,
    tz: TimeZone = "UTC",
    user_id: Annotated[
        RecordId | None, Query(description="Whose day (the caller's by default).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Tasks per list.")] = 20,
) -> Response:
    """Open tasks overdue, due today and due in the next seven days (days in `tz`), and open
    deals whose next step is missing or late."""
    zone = zone_of(tz)
    whose = user_id or actor.user_id
    if whose is None:
        raise ValidationFailed("Say whose day.", [FieldError(("query", "user_id"), "required")])
    return json_body(service.my_day(session, actor, whose, zone=zone, limit=limit))


@router.get("/teams/{team_id}/tasks", response_model=TeamTasks)
def team_tasks(
    team_id: RecordId,
    session: DbSession,
    actor: ApiActor,
    tz: TimeZone = "UTC",
    per_member: Annotated[int, Query(ge=0, le=100, description="Tasks listed per member.")] = 10,
) -> Response:
    """Each active member's open and overdue task counts and first open tasks."""
    return json_body(
        service.team_tasks(session, team_id, actor, zone=zone_of(tz), per_member=per_member)
    )


@router.get("/notifications", response_model=Page[NotificationRead])
def list_notifications(
    session: DbSession,
    actor: ApiActor,
    unread: Annotated[bool, Query(description="Only unread ones.")] = False,
    cursor: Annotated[str | None, Query(max_length=30)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """The caller's notifications (task reminders, …), newest first."""
    return json_body(
        service.list_notifications(session, actor, unread_only=unread, cursor=cursor, limit=limit)
    )


@router.get("/notifications/unread-count", response_model=UnreadCount)
def unread_count(session: DbSession, actor: ApiActor) -> UnreadCount:
    return UnreadCount(unread=service.unread_count(session, actor))


@router.post("/notifications/read-all", response_model=UnreadCount)
def mark_all_read(session: DbSession, actor: ApiActor) -> UnreadCount:
    """Mark every notification of the caller read; answers how many are still unread (0)."""
    service.mark_all_read(session, actor)
    return UnreadCount(unread=service.unread_count(session, actor))


@router.post("/notifications/{notification_id}/read", response_model=NotificationRead)
def mark_read(notification_id: RecordId, session: DbSession, actor: ApiActor) -> NotificationRead:
    return service.mark_read(session, notification_id, actor)
