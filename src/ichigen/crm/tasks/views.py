"""Pages for tasks: My day, the task list with filters, a task with its history, the form,
a team's tasks, notifications, and the partial of a record's open tasks.

Record pages embed the partial with ``<div hx-get="/tasks/for/deal/{{ deal.id }}"
hx-trigger="load"></div>``. Completing a task is one click: in HTMX its row leaves the list
and a toast says so (with an undo); as a plain form post it comes back to the page.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, tzinfo
from typing import Annotated, Any, Literal

from fastapi import Query, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserRead
from ichigen.core.audit import record_history
from ichigen.core.clock import utcnow
from ichigen.core.errors import Conflict, FieldError, NotFound, PreconditionFailed, ValidationFailed
from ichigen.core.schemas import Page, RecordId
from ichigen.crm.tasks import service
from ichigen.crm.tasks.schemas import (
    PRIORITIES,
    STATUSES,
    DueWindow,
    MyDay,
    TaskCreate,
    TaskRead,
    TaskUpdate,
)
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.templating import (
    ChangeFormatter,
    Form,
    SignedIn,
    Ui,
    field_errors,
    form_text,
    history_rows,
    local_path,
    query_string,
    register_flash_messages,
    ui_router_for,
)

router = ui_router_for()
PAGE_SIZE = 50
#: Open tasks a record's partial lists.
RECORD_LIMIT = 20

PRIORITY_LABELS: dict[str, str] = {
    "low": N_("Low"),
    "normal": N_("Normal"),
    "high": N_("High"),
    "urgent": N_("Urgent"),
}
STATUS_LABELS: dict[str, str] = {
    "open": N_("Open"),
    "done": N_("Done"),
    "cancelled": N_("Cancelled"),
}
RECORD_LABELS: dict[str, str] = {
    "contact": N_("Contact"),
    "company": N_("Company"),
    "deal": N_("Deal"),
}
RECORD_PATHS: dict[str, str] = {"contact": "/contacts", "company": "/companies", "deal": "/deals"}
DUE_LABELS: dict[str, str] = {
    "overdue": N_("Overdue"),
    "today": N_("Due today"),
    "upcoming": N_("Next 7 days"),
    "none": N_("No due date"),
}
SORT_LABELS: dict[str, str] = {
    "due_at": N_("Due soonest"),
    "-due_at": N_("Due latest"),
    "-created_at": N_("Newest"),
}
#: Repeat rules the form offers by name; any other rule is written out as an RRULE.
REPEAT_CHOICES: dict[str, str] = {
    "FREQ=DAILY": N_("Every day"),
    "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR": N_("Every weekday"),
    "FREQ=WEEKLY": N_("Every week"),
    "FREQ=WEEKLY;INTERVAL=2": N_("Every two weeks"),
    "FREQ=MONTHLY": N_("Every month"),
    "FREQ=MONTHLY;BYMONTHDAY=-1": N_("On the last day of every month"),
    "FREQ=YEARLY": N_("Every year"),
}
FIELD_LABELS: dict[str, str] = {
    "title": N_("Title"),
    "description": N_("Description"),
    "due_at": N_("Due"),
    "all_day": N_("All day"),
    "priority": N_("Priority"),
    "status": N_("Status"),
    "assignee_id": N_("Assignee"),
    "record_type": N_("Record type"),
    "record_id": N_("Related to"),
    "recurrence": N_("Repeats"),
    "remind_at": N_("Reminder"),
    "completed_at": N_("Completed"),
    "reminded_at": N_("Reminder sent"),
    "series_id": N_("Series"),
    "external_id": N_("External ID"),
}
#: History entries of the task's own actions (create, update and delete read as everywhere).
HISTORY_ACTIONS: dict[str, str] = {
    "complete": N_("Completed"),
    "reopen": N_("Reopened"),
    "cancel": N_("Cancelled"),
    "remind": N_("Reminded"),
}
#: Form fields by service field.
ERROR_FIELDS = {"due_at": "due_date", "all_day": "due_time", "record_type": "record_id"}
#: The form's fields, and how much of each is read.
FORM_FIELDS = {
    "title": 600,
    "description": 20_000,
    "priority": 20,
    "assignee_id": 20,
    "record_type": 20,
    "record_id": 20,
    "due_date": 20,
    "due_time": 20,
    "remind_at": 30,
    "recurrence": 600,
    "recurrence_custom": 600,
}

register_flash_messages(
    {
        "task_created": N_("Task created."),
        "task_saved": N_("Changes saved."),
        "task_deleted": N_("Task deleted."),
        "task_completed": N_("Task completed."),
        "task_reopened": N_("Task reopened."),
        "task_cancelled": N_("Task cancelled."),
        "notifications_read": N_("All notifications marked read."),
    }
)

Text = Annotated[str, Query(max_length=200)]
RecordKind = Literal["contact", "company", "deal"]


# ----------------------------------------------------------------------------- shared


def _is_overdue(item: TaskRead, now: datetime, zone: tzinfo) -> bool:
    if item.status != "open" or item.due_at is None:
        return False
    if item.all_day:
        return item.due_at.date() < now.astimezone(zone).date()
    return item.due_at < now


def rows_context(ui: Ui, session: DbSession, items: list[TaskRead]) -> dict[str, Any]:
    """What task rows show besides the tasks: people's and records' names, labels."""
    people = auth_service.users_by_id(session, {t.assignee_id for t in items if t.assignee_id})
    now, zone = utcnow(), ui.timezone
    return {
        "people": {i: u.name for i, u in people.items()},
        "record_names": service.record_labels(
            session, ((t.record_type, t.record_id) for t in items)
        ),
        "record_labels": RECORD_LABELS,
        "record_paths": RECORD_PATHS,
        "priority_labels": PRIORITY_LABELS,
        "status_labels": STATUS_LABELS,
        "is_overdue": lambda item: _is_overdue(item, now, zone),
        "can_write": ui.can("tasks", "write"),
    }


def _back(form: FormData, fallback: str) -> str:
    return local_path(form_text(form, "next", 2000)) or fallback


def _version(form: FormData) -> int | None:
    value = form_text(form, "version", 20)
    return int(value) if value.isdigit() else None


def _toast(ui: Ui, message: str, *, undo: int | None = None, error: bool = False) -> Response:
    """An HTMX answer holding only a toast, swapped out of band into the page's ``#toast``:
    what was swapped in (the task's row) is left empty, so the row leaves the list."""
    return ui.render("tasks/_toast.html", {"message": message, "undo": undo, "error": error})


# ----------------------------------------------------------------------------- My day


def _sections(day: MyDay) -> list[dict[str, Any]]:
    return [
        {
            "key": "overdue",
            "title": N_("Overdue"),
            "empty": N_("Nothing overdue."),
            "tasks": day.overdue,
            "total": day.overdue_total,
        },
        {
            "key": "today",
            "title": N_("Today"),
            "empty": N_("Nothing else due today."),
            "tasks": day.due_today,
            "total": day.due_today_total,
        },
        {
            "key": "upcoming",
            "title": N_("Next 7 days"),
            "empty": N_("Nothing due in the next seven days."),
            "tasks": day.upcoming,
            "total": day.upcoming_total,
        },
    ]


@router.get("/my-day")
def my_day(ui: SignedIn, session: DbSession) -> Response:
    """The signed-in user's day: overdue, today, the next seven days, deals to move on."""
    day = service.my_day(session, ui.actor, ui.user.id, zone=ui.timezone)
    context = rows_context(ui, session, [*day.overdue, *day.due_today, *day.upcoming])
    context.update(day=day, sections=_sections(day))
    return ui.render("tasks/my_day.html", context)


# ----------------------------------------------------------------------------- list


@dataclass
class ListParams:
    """The list's filters and sort, as they appear in the URL."""

    assignee: str = "me"
    status: str = "open"
    priority: str = ""
    due: str = ""
    sort: str = "due_at"

    def as_query(self) -> dict[str, Any]:
        values: dict[str, Any] = {"priority": self.priority, "due": self.due}
        if self.assignee != "me":
            values["assignee"] = self.assignee
        if self.status != "open":
            values["status"] = self.status
        if self.sort != "due_at":
            values["sort"] = self.sort
        return values


_DUE_WINDOWS: dict[str, DueWindow] = {
    "overdue": "overdue",
    "today": "today",
    "upcoming": "upcoming",
    "none": "none",
}


def _list_page(
    ui: Ui, session: DbSession, params: ListParams, cursor: str | None
) -> Page[TaskRead]:
    assignee_id: int | None = None
    if params.assignee == "me":
        assignee_id = ui.user.id
    elif params.assignee.isdigit():
        assignee_id = int(params.assignee)
    return service.list_tasks(
        session,
        ui.actor,
        assignee_id=assignee_id,
        unassigned=params.assignee == "none",
        status=() if params.status == "all" else (params.status,),
        priority=(params.priority,) if params.priority else (),
        due=_DUE_WINDOWS.get(params.due),
        zone=ui.timezone,
        sort=params.sort,
        cursor=cursor,
        limit=PAGE_SIZE,
    )


@router.get("/tasks")
def task_list(
    ui: SignedIn,
    session: DbSession,
    assignee: Text = "me",
    status: Text = "open",
    priority: Text = "",
    due: Text = "",
    sort: Text = "due_at",
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """Tasks by assignee, status, priority and due window; HTMX asks for parts of it."""
    params = ListParams(
        assignee if assignee in ("me", "any", "none") or assignee.isdigit() else "me",
        status if status in (*STATUSES, "all") else "open",
        priority if priority in PRIORITIES else "",
        due if due in DUE_LABELS else "",
        sort if sort in SORT_LABELS else "due_at",
    )
    page = _list_page(ui, session, params, cursor)
    context = rows_context(ui, session, page.items)
    context.update(page=page, params=params, query=params.as_query())
    if ui.htmx_target == "load-more":
        return ui.render("tasks/_rows.html", context)
    if ui.htmx_target == "results":
        ui.extra_headers["HX-Push-Url"] = "/tasks" + query_string(params.as_query())
        return ui.render("tasks/_results.html", context)
    context.update(
        people_choices=auth_service.list_users(session, include_inactive=False),
        due_labels=DUE_LABELS,
        sort_labels=SORT_LABELS,
    )
    return ui.render("tasks/list.html", context)


# ----------------------------------------------------------------------------- team


@router.get("/tasks/team")
def team_view(
    ui: SignedIn, session: DbSession, team: Annotated[int | None, Query(ge=1, le=2**62)] = None
) -> Response:
    """A team's members with their open and overdue tasks."""
    teams = auth_service.list_teams(session)
    chosen = team or ui.user.team_id or (teams[0].id if teams else None)
    view = (
        service.team_tasks(session, chosen, ui.actor, zone=ui.timezone, per_member=5)
        if chosen is not None
        else None
    )
    context = rows_context(ui, session, [t for m in view.members for t in m.tasks] if view else [])
    context.update(teams=teams, view=view, chosen=chosen)
    return ui.render("tasks/team.html", context)


# ----------------------------------------------------------------------------- the form


@dataclass
class TaskForm:
    """The form as shown: values as typed, errors by field, the version it was read at."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    version: int | None = None
    stale: bool = False


def form_from_task(ui: Ui, item: TaskRead | None, **preset: str) -> TaskForm:
    """The form filled from a task, or a new one (assigned to the user, due today).

    Times show in the reader's time zone; a task due on a day has no time.
    """
    zone = ui.timezone
    if item is None:
        today = utcnow().astimezone(zone).date().isoformat()
        return TaskForm(
            values={"assignee_id": str(ui.user.id), "priority": "normal", "due_date": today}
            | preset
        )
    values = {
        "title": item.title,
        "description": item.description,
        "priority": item.priority,
        "assignee_id": str(item.assignee_id or ""),
        "record_type": item.record_type or "",
        "record_id": str(item.record_id or ""),
    }
    if item.due_at is not None:
        local = item.due_at if item.all_day else item.due_at.astimezone(zone)
        values["due_date"] = local.date().isoformat()
        values["due_time"] = "" if item.all_day else local.strftime("%H:%M")
    if item.remind_at is not None:
        values["remind_at"] = item.remind_at.astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    if item.recurrence in REPEAT_CHOICES:
        values["recurrence"] = item.recurrence or ""
    elif item.recurrence:
        values.update(recurrence="custom", recurrence_custom=item.recurrence)
    return TaskForm(values=values, version=item.version)


def _parse(text: str, pattern: str, name: str, errors: list[FieldError]) -> datetime | None:
    try:
        return datetime.strptime(text, pattern) if text else None
    except ValueError:
        errors.append(FieldError((name,), N_("Enter a valid date or time.")))
        return None


def task_record(
    ui: Ui, form: FormData, errors: list[FieldError], *, creating: bool
) -> tuple[dict[str, Any], TaskForm]:
    """The service record a submitted form stands for, and the form to show it again.

    A due date without a time makes an all-day task; times are in the reader's time zone.
    """
    zone = ui.timezone
    values = {name: form_text(form, name, limit) for name, limit in FORM_FIELDS.items()}
    day = _parse(values["due_date"], "%Y-%m-%d", "due_date", errors)
    clock = _parse(values["due_time"], "%H:%M", "due_time", errors)
    if clock is not None and day is None and not values["due_date"]:
        errors.append(FieldError(("due_date",), N_("Give the day of the due time.")))
    due_at = None
    if day is not None:
        due_at = (
            datetime.combine(day.date(), clock.time(), zone)
            if clock is not None
            else datetime.combine(day.date(), time(), UTC)
        )
    remind = _parse(values["remind_at"], "%Y-%m-%dT%H:%M", "remind_at", errors)
    rule = values["recurrence_custom"] if values["recurrence"] == "custom" else values["recurrence"]
    record: dict[str, Any] = {
        "title": values["title"],
        "description": values["description"],
        "priority": values["priority"] or "normal",
        "assignee_id": values["assignee_id"] or None,
        "record_type": values["record_type"] or None,
        "record_id": values["record_id"] or None,
        "due_at": due_at,
        "all_day": due_at is not None and clock is None,
        "remind_at": remind.replace(tzinfo=zone) if remind is not None else None,
        "recurrence": rule or None,
    }
    if creating:
        record = {k: v for k, v in record.items() if v is not None}
    return record, TaskForm(values=values, version=_version(form))


def translated_errors(ui: Ui, errors: list[FieldError]) -> dict[str, list[str]]:
    by_field: dict[str, list[str]] = {}
    for name, messages in field_errors(errors, ERROR_FIELDS).items():
        by_field.setdefault(name, []).extend(ui.gettext(m) for m in messages)
    return by_field


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    return [FieldError(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()]


def _render_form(
    ui: Ui, session: DbSession, item: TaskRead | None, form: TaskForm, status_code: int = 200
) -> Response:
    record_type, record_id = form.values.get("record_type", ""), form.values.get("record_id", "")
    record_name = ""
    if record_type in RECORD_LABELS and record_id.isdigit() and len(record_id) < 19:
        ref = (record_type, int(record_id))
        record_name = service.record_labels(session, [ref]).get(ref, "")
    return ui.render(
        "tasks/form.html",
        {
            "item": item,
            "form": form,
            "record_name": record_name,
            "people_choices": _assignable(session, item),
            "priority_labels": PRIORITY_LABELS,
            "record_labels": RECORD_LABELS,
            "repeat_choices": REPEAT_CHOICES,
            "labels": FIELD_LABELS,
            "zone": str(ui.timezone),
        },
        status_code=status_code,
    )


def _assignable(session: DbSession, item: TaskRead | None) -> list[UserRead]:
    """Active users, and the task's assignee even if no longer active (so that saving the
    form unchanged keeps them)."""
    people = auth_service.list_users(session, include_inactive=False)
    if item is not None and item.assignee_id and all(p.id != item.assignee_id for p in people):
        people.append(auth_service.get_user(session, item.assignee_id))
    return people


def _save_problems(
    ui: Ui, form: TaskForm, exc: ValidationError | ValidationFailed | Conflict
) -> int:
    """Put a failed save's problems next to their fields; the status to answer with."""
    if isinstance(exc, ValidationError):
        form.errors = translated_errors(ui, _pydantic_errors(exc))
        return 422
    form.errors = translated_errors(ui, exc.errors)
    return exc.status


@router.get("/tasks/new")
def new_task(
    ui: SignedIn,
    session: DbSession,
    record_type: RecordKind | None = None,
    record_id: RecordId | None = None,
) -> Response:
    """An empty form (about a record when the link says which)."""
    preset = {"record_type": record_type or "", "record_id": str(record_id)} if record_id else {}
    return _render_form(ui, session, None, form_from_task(ui, None, **preset))


@router.post("/tasks/new")
def create_task(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """Create the task, or show the form again with each problem next to its field."""
    problems: list[FieldError] = []
    record, shown = task_record(ui, form, problems, creating=True)
    try:
        if problems:
            raise ValidationFailed("The task has invalid fields.", problems)
        created = service.create_task(session, TaskCreate.model_validate(record), ui.actor)
    except (ValidationError, ValidationFailed, Conflict) as exc:
        return _render_form(ui, session, None, shown, _save_problems(ui, shown, exc))
    return ui.redirect(f"/tasks/{created.id}", flash="task_created")


# ----------------------------------------------------------------------------- a record's tasks


def _record_partial(
    ui: Ui,
    session: DbSession,
    record_type: str,
    record_id: int,
    quick: TaskForm,
    status_code: int = 200,
    toast: str = "",
) -> Response:
    items = service.record_tasks(session, record_type, record_id, ui.actor, limit=RECORD_LIMIT)
    context = rows_context(ui, session, items)
    context.update(
        items=items,
        record_type=record_type,
        record_id=record_id,
        quick=quick,
        toast=toast,
        people_choices=auth_service.list_users(session, include_inactive=False),
    )
    return ui.render("tasks/_record_tasks.html", context, status_code=status_code)


@router.get("/tasks/for/{record_type}/{record_id}")
def record_tasks(
    ui: SignedIn, session: DbSession, record_type: RecordKind, record_id: RecordId
) -> Response:
    """The open tasks of a contact, company or deal, with a form to add one (a partial)."""
    return _record_partial(ui, session, record_type, record_id, TaskForm())


@router.post("/tasks/for/{record_type}/{record_id}")
def quick_add(
    ui: SignedIn, session: DbSession, form: Form, record_type: RecordKind, record_id: RecordId
) -> Response:
    """Add a task about the record from the partial's short form; answers with the partial."""
    problems: list[FieldError] = []
    record, shown = task_record(ui, form, problems, creating=True)
    record.update(record_type=record_type, record_id=record_id)
    try:
        if problems:
            raise ValidationFailed("The task has invalid fields.", problems)
        created = service.create_task(session, TaskCreate.model_validate(record), ui.actor)
    except (ValidationError, ValidationFailed, Conflict) as exc:
        status = _save_problems(ui, shown, exc)
        return _record_partial(ui, session, record_type, record_id, shown, status)
    toast = ui.gettext("Added “%(title)s”.", title=created.title)
    return _record_partial(ui, session, record_type, record_id, TaskForm(), toast=toast)


# ----------------------------------------------------------------------------- notifications


@router.get("/notifications")
def notifications(
    ui: SignedIn,
    session: DbSession,
    cursor: Annotated[str | None, Query(max_length=30)] = None,
) -> Response:
    """The user's notifications, newest first, unread ones marked."""
    page = service.list_notifications(session, ui.actor, cursor=cursor, limit=PAGE_SIZE)
    context = {"page": page, "unread": service.unread_count(session, ui.actor)}
    if ui.htmx_target == "load-more":
        return ui.render("tasks/_notification_rows.html", context)
    return ui.render("tasks/notifications.html", context)


@router.get("/notifications/badge")
def notification_badge(ui: SignedIn, session: DbSession) -> Response:
    """The bell of the top bar with the number of unread notifications (polled)."""
    return ui.render("tasks/_badge.html", {"unread": service.unread_count(session, ui.actor)})


@router.post("/notifications/read-all")
def read_all(ui: SignedIn, session: DbSession) -> Response:
    service.mark_all_read(session, ui.actor)
    return ui.redirect("/notifications", flash="notifications_read")


@router.post("/notifications/{notification_id}/open")
def open_notification(ui: SignedIn, session: DbSession, notification_id: RecordId) -> Response:
    """Mark a notification read and go where it points."""
    read = service.mark_read(session, notification_id, ui.actor)
    return ui.redirect(local_path(read.link) or "/notifications")


# ----------------------------------------------------------------------------- one task


@router.get("/tasks/{task_id}")
def task_detail(ui: SignedIn, session: DbSession, task_id: RecordId) -> Response:
    """A task: its fields, what it is about, the actions on it, and its history."""
    item = service.get_task(session, task_id, ui.actor)
    history = record_history(session, "tasks", task_id, limit=200) if ui.can("audit") else []
    user_ids = {item.assignee_id or 0, item.created_by or 0}
    for entry in history:
        user_ids.update(v for v in entry.changes.get("assignee_id", []) if isinstance(v, int))
    users = auth_service.users_by_id(session, user_ids - {0})
    formatter = ChangeFormatter(
        ui,
        FIELD_LABELS,
        (),
        {
            "assignee_id": {i: u.name for i, u in users.items()},
            "priority": PRIORITY_LABELS,
            "status": STATUS_LABELS,
            "record_type": RECORD_LABELS,
        },
        translated=("priority", "status", "record_type"),
    )
    context = rows_context(ui, session, [item])
    context.update(
        item=item,
        assignee=users.get(item.assignee_id or 0),
        creator=users.get(item.created_by or 0),
        repeat_label=REPEAT_CHOICES.get(item.recurrence or ""),
        labels=FIELD_LABELS,
        history=[
            replace(row, action=ui.gettext(HISTORY_ACTIONS[row.kind]))
            if row.kind in HISTORY_ACTIONS
            else row
            for row in history_rows(formatter, history)
        ],
    )
    return ui.render("tasks/detail.html", context)


@router.get("/tasks/{task_id}/edit")
def edit_task(ui: SignedIn, session: DbSession, task_id: RecordId) -> Response:
    """The task's form, holding the version it was read at."""
    item = service.get_task(session, task_id, ui.actor)
    return _render_form(ui, session, item, form_from_task(ui, item))


@router.post("/tasks/{task_id}/edit")
def update_task(ui: SignedIn, session: DbSession, form: Form, task_id: RecordId) -> Response:
    """Save the changes unless someone else saved theirs since the form was opened."""
    item = service.get_task(session, task_id, ui.actor)
    problems: list[FieldError] = []
    record, shown = task_record(ui, form, problems, creating=False)
    try:
        if problems:
            raise ValidationFailed("The task has invalid fields.", problems)
        service.update_task(
            session, task_id, TaskUpdate.model_validate(record), ui.actor, if_version=shown.version
        )
    except (ValidationError, ValidationFailed, Conflict) as exc:
        return _render_form(ui, session, item, shown, _save_problems(ui, shown, exc))
    except PreconditionFailed:
        shown.stale = True
        return _render_form(ui, session, item, shown, 409)
    return ui.redirect(f"/tasks/{task_id}", flash="task_saved")


def _stale(ui: Ui, task_id: int) -> Response:
    if ui.is_htmx:
        message = ui.gettext("Someone else changed this task; reload the page.")
        response = _toast(ui, message, error=True)
        response.headers["HX-Reswap"] = "none"  # the row stays
        return response
    return ui.redirect(f"/tasks/{task_id}")


@router.post("/tasks/{task_id}/complete")
def complete_task(ui: SignedIn, session: DbSession, form: Form, task_id: RecordId) -> Response:
    """Complete a task with one click; the toast names a repeating task's next date."""
    try:
        done = service.complete_task(session, task_id, ui.actor, if_version=_version(form))
    except PreconditionFailed:
        return _stale(ui, task_id)
    if not ui.is_htmx:
        return ui.redirect(_back(form, f"/tasks/{task_id}"), flash="task_completed")
    message = ui.gettext("Completed “%(title)s”.", title=done.task.title)
    following = done.next_task
    if following is not None and following.due_at is not None:
        due = following.due_at if following.all_day else following.due_at.astimezone(ui.timezone)
        message += " " + ui.gettext("The next one is due %(date)s.", date=due.date().isoformat())
    return _toast(ui, message, undo=task_id)


@router.post("/tasks/{task_id}/reopen")
def reopen_task(ui: SignedIn, session: DbSession, form: Form, task_id: RecordId) -> Response:
    """Open a task again (the toast's undo); the page reloads to show it where it belongs."""
    try:
        service.reopen_task(session, task_id, ui.actor, if_version=_version(form))
    except PreconditionFailed:
        return _stale(ui, task_id)
    if ui.is_htmx:
        return Response(status_code=204, headers={"HX-Refresh": "true"})
    return ui.redirect(_back(form, f"/tasks/{task_id}"), flash="task_reopened")


@router.post("/tasks/{task_id}/cancel")
def cancel_task(ui: SignedIn, session: DbSession, form: Form, task_id: RecordId) -> Response:
    try:
        item = service.cancel_task(session, task_id, ui.actor, if_version=_version(form))
    except PreconditionFailed:
        return _stale(ui, task_id)
    if not ui.is_htmx:
        return ui.redirect(_back(form, f"/tasks/{task_id}"), flash="task_cancelled")
    return _toast(ui, ui.gettext("Cancelled “%(title)s”.", title=item.title), undo=task_id)


@router.get("/tasks/{task_id}/delete")
def confirm_delete(ui: SignedIn, session: DbSession, task_id: RecordId) -> Response:
    item = service.get_task(session, task_id, ui.actor)
    return ui.render("tasks/delete.html", {"item": item, "stale": False})


@router.post("/tasks/{task_id}/delete")
def delete_task(ui: SignedIn, session: DbSession, form: Form, task_id: RecordId) -> Response:
    """Delete the task as it was shown."""
    try:
        service.delete_task(session, task_id, ui.actor, if_version=_version(form))
    except PreconditionFailed:
        item = service.get_task(session, task_id, ui.actor)
        return ui.render("tasks/delete.html", {"item": item, "stale": True}, 409)
    except NotFound:
        pass  # already gone: a second click of the same button
    return ui.redirect("/tasks", flash="task_deleted")
