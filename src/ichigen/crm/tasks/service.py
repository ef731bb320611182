"""Tasks: the rules for every read and write that others may call.

A task is due at a time, or on a day (``all_day``: ``due_at`` holds midnight UTC of that
date). It may be about one contact, company or deal, may remind its assignee at
``remind_at``, and may repeat by an iCalendar RRULE: completing an occurrence creates the
next one. Completing a task about a record logs a ``task`` activity on that record's
timeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from dateutil.rrule import rrulestr
from sqlalchemy import and_, case, func, select, update
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import OWNERSHIP_BOUND, Role, can, require
from ichigen.core.audit import Actor, diff, record_change
from ichigen.core.clock import utcnow
from ichigen.core.db import session_settings
from ichigen.core.errors import (
    BadRequest,
    Conflict,
    FieldError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.core.query import apply_sort_and_cursor, decode_cursor, encode_cursor, parse_sort
from ichigen.core.schemas import Page
from ichigen.crm.activities import service as activities_service
from ichigen.crm.activities.schemas import ActivityCreate, RecordRef
from ichigen.crm.companies import service as companies_service
from ichigen.crm.contacts import service as contacts_service
from ichigen.crm.deals import service as deals_service
from ichigen.crm.deals.schemas import DealRead
from ichigen.crm.tasks.models import Notification, Task
from ichigen.crm.tasks.queries import (
    MY_DAY_SPANS,
    SORT_FIELDS,
    DueSpan,
    first_open_in_my_day,
    my_day_parameters,
    open_in_my_day,
    open_tasks_of,
)
from ichigen.crm.tasks.schemas import (
    DueWindow,
    MemberTasks,
    MyDay,
    NotificationRead,
    TaskCompleted,
    TaskCreate,
    TaskRead,
    TaskUpdate,
    TeamTasks,
)

ENTITY = "tasks"
_AUDITED = (
    "external_id",
    "title",
    "description",
    "due_at",
    "all_day",
    "priority",
    "status",
    "assignee_id",
    "record_type",
    "record_id",
    "recurrence",
    "series_id",
    "remind_at",
    "completed_at",
)
_DEFAULTS: dict[str, Any] = {
    "description": "",
    "due_at": None,
    "all_day": False,
    "priority": "normal",
    "assignee_id": None,
    "record_type": None,
    "record_id": None,
    "remind_at": None,
    "recurrence": None,
    "external_id": None,
}
#: The ranges of ``day_ranges`` that ``list_tasks(due=…)`` picks.
_WINDOWS = {"overdue": "overdue", "today": "due_today", "upcoming": "upcoming"}
#: Tasks per list of My day (the totals count them all).
MY_DAY_LIMIT = 20
#: Deals needing a next step that My day lists.
DEALS_LIMIT = 10
#: Fields that may not be null: sending null puts back the default.
_NOT_NULL = ("description", "all_day", "priority")


# ----------------------------------------------------------------------------- recurrence

_RULE_PARTS = frozenset(
    {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}
)
_FREQUENCIES = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
_MAX_REPEAT = 1000
#: The longest each month can be (February in leap years).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_PROBE = datetime(2000, 1, 1, tzinfo=UTC)
#: Rules are tried for a date from this year on: their search stops by itself at the end of
#: the year 9999, and 400 years hold every weekday-and-leap-year pattern the calendar has.
_PROBE_FROM_YEAR = 9599


def _numbers(value: str, key: str, low: int, high: int) -> list[int]:
    try:
        numbers = [int(v) for v in value.split(",")]
    except ValueError:
        raise ValueError(f"{key} must list whole numbers") from None
    if any(not low <= n <= high or n == 0 for n in numbers):
        raise ValueError(f"{key} must list numbers from {low} to {high}, not 0")
    return numbers


def _check_days_exist(parts: dict[str, str], freq: str) -> None:
    """Refuse the rules that can never match a day (30 February, the second of one day),
    which would otherwise be searched for to the end of the calendar."""
    days = _numbers(parts["BYMONTHDAY"], "BYMONTHDAY", -31, 31) if "BYMONTHDAY" in parts else []
    months = _numbers(parts["BYMONTH"], "BYMONTH", 1, 12) if "BYMONTH" in parts else []
    if days and months and not any(abs(d) <= _MONTH_DAYS[m - 1] for d in days for m in months):
        raise ValueError("no month of BYMONTH has a day of BYMONTHDAY")
    if "BYSETPOS" in parts:
        positions = _numbers(parts["BYSETPOS"], "BYSETPOS", -366, 366)
        if freq == "DAILY":
            raise ValueError("BYSETPOS needs FREQ=WEEKLY, MONTHLY or YEARLY")
        weekdays = len(parts.get("BYDAY", "").split(",")) if "BYDAY" in parts else 1
        if freq == "WEEKLY" and any(abs(p) > weekdays for p in positions):
            raise ValueError("BYSETPOS picks more days than a week of BYDAY has")


def normalise_recurrence(text: str) -> str:
    """A recurrence rule in canonical form (``FREQ`` first, upper case, no ``RRULE:``).

    Only whole-day rules (``FREQ`` daily, weekly, monthly or yearly) without ``DTSTART``:
    a task repeats from its own due time. ``UNTIL`` may be a date (the end of that day, UTC).
    Raises ``ValueError`` with a message for the user.
    """
    rule = text.strip()
    if rule.upper().startswith("RRULE:"):
        rule = rule[6:]
    if any(ch in rule for ch in "\r\n"):
        raise ValueError("give one RRULE line, without DTSTART")
    parts: dict[str, str] = {}
    for item in rule.upper().split(";"):
        if not item.strip():
            continue
        key, sep, value = (p.strip() for p in item.partition("="))
        if not sep or not value:
            raise ValueError(f"'{item}' is not NAME=VALUE")
        if key not in _RULE_PARTS:
            raise ValueError(f"{key} is not supported in a task's recurrence")
        if key in parts:
            raise ValueError(f"{key} is given twice")
        parts[key] = value
    freq = parts.pop("FREQ", None)
    if freq not in _FREQUENCIES:
        raise ValueError("FREQ must be DAILY, WEEKLY, MONTHLY or YEARLY")
    if "COUNT" in parts and "UNTIL" in parts:
        raise ValueError("give COUNT or UNTIL, not both")
    for key in ("INTERVAL", "COUNT"):
        if key in parts and not (parts[key].isdigit() and 1 <= int(parts[key]) <= _MAX_REPEAT):
            raise ValueError(f"{key} must be a whole number from 1 to {_MAX_REPEAT}")
    if "UNTIL" in parts and re.fullmatch(r"\d{8}", parts["UNTIL"]):
        parts["UNTIL"] += "T235959Z"
    _check_days_exist(parts, freq)
    canonical = ";".join([f"FREQ={freq}", *(f"{k}={v}" for k, v in parts.items())])
    try:
        rrulestr(canonical, dtstart=_PROBE)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise ValueError(f"not a valid RRULE: {exc}") from None
    return canonical


def rule_count(rule: str) -> int | None:
    """The ``COUNT`` of a canonical rule: how many tasks its series has in all."""
    found = re.search(r"(?:^|;)COUNT=(\d+)", rule)
    return int(found.group(1)) if found else None


def rule_matches_some_day(rule: str, due_at: datetime) -> bool:
    """Whether a canonical rule, counted from ``due_at``, gives any date at all (leaving
    ``COUNT`` and ``UNTIL`` aside); cheap also for rules that never do."""
    start = due_at.astimezone(UTC).replace(microsecond=0)
    if start.year < _PROBE_FROM_YEAR:
        start = start.replace(year=start.year + 400 * -((start.year - _PROBE_FROM_YEAR) // 400))
    unbounded = ";".join(p for p in rule.split(";") if not p.startswith(("COUNT=", "UNTIL=")))
    return rrulestr(unbounded, dtstart=start).after(start) is not None


def next_occurrence(rule: str, due_at: datetime) -> datetime | None:
    """The first time a canonical rule gives after ``due_at``, counting from ``due_at``
    (in UTC, so daylight saving never moves it). ``COUNT`` is left to the caller (it counts
    the tasks of a series); ``UNTIL`` applies. A monthly rule from the 31st skips months
    without one, as RFC 5545 says; ``BYMONTHDAY=-1`` is "the last day of each month".
    """
    start = due_at.astimezone(UTC)
    found = rrulestr(rule, dtstart=start).replace(count=None).after(start)
    return found if isinstance(found, datetime) else None


# ----------------------------------------------------------------------------- reads


def _snapshot(row: Task) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _AUDITED}


def _read(row: Task) -> TaskRead:
    return TaskRead.model_validate(row)


def _get_row(session: Session, task_id: int) -> Task:
    row = session.get(Task, task_id)
    if row is None:
        raise NotFound(f"Task {task_id} does not exist.")
    return row


def get_task(session: Session, task_id: int, actor: Actor) -> TaskRead:
    """One task."""
    require(actor, ENTITY, "read")
    return _read(_get_row(session, task_id))


def list_tasks(
    session: Session,
    actor: Actor,
    *,
    assignee_id: int | None = None,
    unassigned: bool = False,
    status: Iterable[str] = (),
    priority: Iterable[str] = (),
    due_from: datetime | None = None,
    due_to: datetime | None = None,
    due: DueWindow | None = None,
    zone: tzinfo = UTC,
    record_type: str | None = None,
    record_id: int | None = None,
    sort: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[TaskRead]:
    """A page of tasks, filtered, sorted by due time (default, tasks without one last) or by
    creation or change time, cursor-paged. ``due_to`` is exclusive; ``due`` picks the tasks
    overdue, due today or in the next seven days as My day counts them in ``zone`` (or those
    without a due date)."""
    require(actor, ENTITY, "read")
    stmt = select(Task)
    if due == "none":
        stmt = stmt.where(Task.due_at.is_(None))
    elif due is not None:
        stmt = stmt.where(day_ranges(utcnow(), zone)[_WINDOWS[due]].condition())
    if assignee_id is not None:
        stmt = stmt.where(Task.assignee_id == assignee_id)
    elif unassigned:
        stmt = stmt.where(Task.assignee_id.is_(None))
    statuses, priorities = list(status), list(priority)
    if statuses:
        stmt = stmt.where(Task.status.in_(statuses))
    if priorities:
        stmt = stmt.where(Task.priority.in_(priorities))
    if due_from is not None:
        stmt = stmt.where(Task.due_at >= due_from)
    if due_to is not None:
        stmt = stmt.where(Task.due_at < due_to)
    if record_id is not None and record_type is None:
        raise BadRequest(
            "Give record_type with record_id.",
            [FieldError(("query", "record_type"), "needed with record_id")],
        )
    if record_type is not None:
        stmt = stmt.where(Task.record_type == record_type)
    if record_id is not None:
        stmt = stmt.where(Task.record_id == record_id)
    secret = session_settings(session).secret_key
    order = parse_sort(sort, SORT_FIELDS, "due_at")
    after = decode_cursor(secret, order, cursor) if cursor else None
    stmt = apply_sort_and_cursor(stmt, order, Task.id, after).limit(limit + 1)
    rows = list(session.scalars(stmt))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(secret, order, getattr(last, order.name), last.id)
    return Page[TaskRead](items=[_read(r) for r in rows], next_cursor=next_cursor)


def record_tasks(
    session: Session, record_type: str, record_id: int, actor: Actor, *, limit: int = 50
) -> list[TaskRead]:
    """A record's open tasks, soonest due first (tasks without a due time last)."""
    require(actor, ENTITY, "read")
    stmt = (
        select(Task)
        .where(Task.record_type == record_type, Task.record_id == record_id, Task.status == "open")
        .order_by(Task.due_at.is_(None), Task.due_at, Task.id)
        .limit(limit)
    )
    return [_read(r) for r in session.scalars(stmt)]


def record_labels(
    session: Session, refs: Iterable[tuple[str | None, int | None]]
) -> dict[tuple[str, int], str]:
    """The names to show for records tasks are about, by ``(record_type, record_id)``."""
    wanted: dict[str, set[int]] = {}
    for record_type, record_id in refs:
        if record_type is not None and record_id is not None:
            wanted.setdefault(record_type, set()).add(record_id)
    labels: dict[tuple[str, int], str] = {}
    for record_id, name in contacts_service.contact_names(
        session, wanted.get("contact", set())
    ).items():
        labels["contact", record_id] = name
    for record_id, ref in companies_service.company_refs(
        session, wanted.get("company", set())
    ).items():
        labels["company", record_id] = ref.name
    for record_id, name in deals_service.deal_names(session, wanted.get("deal", set())).items():
        labels["deal", record_id] = name
    return labels


# ----------------------------------------------------------------------------- rules


def _owner_team(session: Session, user_id: int | None) -> int | None:
    if user_id is None:
        return None
    try:
        return auth_service.get_user(session, user_id).team_id
    except NotFound:
        return None


def _require_task_access(session: Session, actor: Actor, row: Task) -> None:
    """Sales and support change tasks assigned to them, to a teammate or to nobody, and
    tasks they created; other roles with write access change any task."""
    require(actor, ENTITY, "write")
    if Role(actor.role) not in OWNERSHIP_BOUND or actor.user_id is None:
        return
    if row.assignee_id in (None, actor.user_id) or row.created_by == actor.user_id:
        return
    if actor.team_id is not None and _owner_team(session, row.assignee_id) == actor.team_id:
        return
    raise PermissionDenied(
        "This task is assigned to someone outside your team; a "
        f"{actor.role} user may change only their own, their team's and unassigned tasks, "
        "and tasks they created."
    )


def _check_version(row: Task, if_version: int | None) -> None:
    if if_version is not None and if_version != row.version:
        raise PreconditionFailed(
            f"Task {row.id} was changed by someone else (now version {row.version}); "
            "reload it and try again."
        )


def _record_exists(session: Session, record_type: str, record_id: int) -> bool:
    if record_type == "contact":
        return bool(contacts_service.existing_contact_ids(session, [record_id]))
    if record_type == "company":
        return bool(companies_service.existing_company_ids(session, [record_id]))
    return bool(deals_service.existing_deal_ids(session, [record_id]))


def _check(
    session: Session,
    values: dict[str, Any],
    changed: set[str],
    errors: list[FieldError],
    before: dict[str, Any] | None = None,
) -> None:
    """Normalise and check a task's values in place; ``changed`` names the fields given.

    The assignee and the record are checked only when they differ from ``before`` (the
    task as stored): a task keeps a since-deactivated assignee or a since-deleted record
    until someone changes them.
    """
    kept = before or {}
    if changed & {"due_at", "all_day"} and values["due_at"] is not None:
        due: datetime = values["due_at"]
        values["due_at"] = (
            datetime.combine(due.date(), time(), UTC) if values["all_day"] else due.astimezone(UTC)
        )
    if "remind_at" in changed and values["remind_at"] is not None:
        values["remind_at"] = values["remind_at"].astimezone(UTC)
    assignee = values["assignee_id"]
    if "assignee_id" in changed and assignee is not None and assignee != kept.get("assignee_id"):
        try:
            if not auth_service.get_user(session, values["assignee_id"]).is_active:
                errors.append(FieldError(("assignee_id",), "the assignee is an inactive user"))
        except NotFound:
            errors.append(FieldError(("assignee_id",), "no such user"))
    if changed & {"record_type", "record_id"}:
        record_type, record_id = values["record_type"], values["record_id"]
        if record_type is None and record_id is not None:
            errors.append(FieldError(("record_type",), "give the record's type with its id"))
        elif record_type is not None and record_id is None:
            errors.append(FieldError(("record_id",), "give the record's id with its type"))
        elif (
            record_type is not None
            and (record_type, record_id) != (kept.get("record_type"), kept.get("record_id"))
            and not _record_exists(session, record_type, record_id)
        ):
            errors.append(FieldError(("record_id",), f"no such {record_type}"))
    if changed & {"recurrence", "due_at", "all_day"} and values["recurrence"] is not None:
        try:
            values["recurrence"] = normalise_recurrence(values["recurrence"])
        except ValueError as exc:
            errors.append(FieldError(("recurrence",), str(exc)))
        else:
            if values["due_at"] is None:
                errors.append(FieldError(("recurrence",), "a repeating task needs a due date"))
            elif not rule_matches_some_day(values["recurrence"], values["due_at"]):
                errors.append(FieldError(("recurrence",), "the rule matches no date"))
            elif next_occurrence(values["recurrence"], values["due_at"]) is None:
                errors.append(
                    FieldError(("recurrence",), "the rule gives no date after the due date")
                )
    if changed & {"remind_at", "due_at", "all_day"}:
        remind, due = values["remind_at"], values["due_at"]
        if remind is not None and due is not None:
            latest = due + timedelta(days=1) if values["all_day"] else due
            if remind > latest:
                errors.append(FieldError(("remind_at",), "must not be after the due time"))


def _check_external_id(session: Session, external_id: str | None, own_id: int | None) -> None:
    if external_id is None:
        return
    other = session.scalar(select(Task.id).where(Task.external_id == external_id))
    if other is not None and other != own_id:
        raise Conflict(
            f"Task {other} already has external id {external_id!r}.",
            [FieldError(("external_id",), "already in use")],
        )


# ----------------------------------------------------------------------------- writes


def create_task(session: Session, data: TaskCreate, actor: Actor) -> TaskRead:
    """Create an open task; it is assigned to the creator unless ``assignee_id`` says who.

    A reminder time already past fires at the next pass of the reminder loop.
    """
    require(actor, ENTITY, "write")
    given = data.model_dump(exclude_unset=True)
    values = {**_DEFAULTS, **{k: v for k, v in given.items() if k != "title"}}
    for name in _NOT_NULL:
        if values[name] is None:
            values[name] = _DEFAULTS[name]
    if "assignee_id" not in given:
        values["assignee_id"] = actor.user_id
        given["assignee_id"] = actor.user_id
    errors: list[FieldError] = []
    _check(session, values, set(given), errors)
    if errors:
        raise ValidationFailed("The task has invalid fields.", errors)
    _check_external_id(session, values["external_id"], None)
    now = utcnow()
    row = Task(
        **values,
        title=data.title,
        status="open",
        created_by=actor.user_id,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    record_change(session, actor, ENTITY, row.id, "create", diff({}, _snapshot(row)))
    session.commit()
    return _read(row)


def update_task(
    session: Session,
    task_id: int,
    data: TaskUpdate,
    actor: Actor,
    *,
    if_version: int | None = None,
) -> TaskRead:
    """Change the fields that are set; a new reminder time arms the reminder again."""
    row = _get_row(session, task_id)
    _require_task_access(session, actor, row)
    _check_version(row, if_version)
    given = data.model_dump(exclude_unset=True)
    errors: list[FieldError] = []
    if "title" in given and given["title"] is None:
        errors.append(FieldError(("title",), "cannot be empty"))
        del given["title"]
    for name in _NOT_NULL:
        if name in given and given[name] is None:
            given[name] = _DEFAULTS[name]
    stored = {name: getattr(row, name) for name in _DEFAULTS}
    values = stored | given
    _check(session, values, set(given), errors, stored)
    if errors:
        raise ValidationFailed("The task has invalid fields.", errors)
    if "external_id" in given:
        _check_external_id(session, values["external_id"], row.id)
    before = _snapshot(row)
    for name in set(given) | ({"due_at"} if "all_day" in given else set()):
        setattr(row, name, values[name])
    delta = diff(before, _snapshot(row))
    if "remind_at" in delta:
        row.reminded_at = None
    if delta:
        row.version += 1
        row.updated_at = utcnow()
        record_change(session, actor, ENTITY, row.id, "update", delta)
    session.commit()
    return _read(row)


def delete_task(
    session: Session, task_id: int, actor: Actor, *, if_version: int | None = None
) -> None:
    """Delete a task (its completion stays on the record's timeline)."""
    row = _get_row(session, task_id)
    _require_task_access(session, actor, row)
    _check_version(row, if_version)
    record_change(session, actor, ENTITY, row.id, "delete", diff(_snapshot(row), {}))
    session.delete(row)
    session.commit()


def _set_status(session: Session, row: Task, status: str, actor: Actor, action: str) -> None:
    """Move a task to ``status`` once: a concurrent change of the same version loses."""
    now = utcnow()
    before = _snapshot(row)
    claimed = session.execute(
        update(Task)
        .where(Task.id == row.id, Task.version == row.version)
        .values(
            status=status,
            completed_at=now if status == "done" else None,
            version=row.version + 1,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise PreconditionFailed(f"Task {row.id} was changed by someone else; reload it.")
    session.refresh(row)
    record_change(session, actor, ENTITY, row.id, action, diff(before, _snapshot(row)))


def _next_in_series(session: Session, row: Task, actor: Actor) -> Task | None:
    """The next occurrence of a repeating task, created unless the series is over or it
    already exists (a task completed, reopened and completed again)."""
    if row.recurrence is None or row.due_at is None:
        return None
    root = row.series_id or row.id
    total = rule_count(row.recurrence)
    if total is not None:
        made = session.scalar(
            select(func.count(Task.id)).where((Task.series_id == root) | (Task.id == root))
        )
        if (made or 0) >= total:
            return None
    due = next_occurrence(row.recurrence, row.due_at)
    if due is None:
        return None
    if session.scalar(select(Task.id).where(Task.series_id == root, Task.due_at == due)):
        return None
    assignee = row.assignee_id
    if assignee is not None and not auth_service.get_user(session, assignee).is_active:
        assignee = actor.user_id
    now = utcnow()
    follower = Task(
        title=row.title,
        description=row.description,
        due_at=due,
        all_day=row.all_day,
        priority=row.priority,
        status="open",
        assignee_id=assignee,
        created_by=actor.user_id,
        record_type=row.record_type,
        record_id=row.record_id,
        recurrence=row.recurrence,
        series_id=root,
        remind_at=due - (row.due_at - row.remind_at) if row.remind_at is not None else None,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(follower)
    if row.series_id is None:
        row.series_id = root
    session.flush()
    record_change(session, actor, ENTITY, follower.id, "create", diff({}, _snapshot(follower)))
    return follower


def complete_task(
    session: Session, task_id: int, actor: Actor, *, if_version: int | None = None
) -> TaskCompleted:
    """Mark a task done: logs a ``task`` activity on its record's timeline, and creates the
    next occurrence of a repeating task. Completing a done task changes nothing."""
    row = _get_row(session, task_id)
    _require_task_access(session, actor, row)
    _check_version(row, if_version)
    if row.status == "done":
        return TaskCompleted(task=_read(row))
    if row.status == "cancelled":
        raise Conflict(
            f"Task {row.id} is cancelled; reopen it before completing it.",
            [FieldError(("status",), "cancelled")],
        )
    try:
        _set_status(session, row, "done", actor, "complete")
        follower = _next_in_series(session, row, actor)
        activity_id = None
        if row.record_type is not None and row.record_id is not None:
            activity = activities_service.log_activity(
                session,
                ActivityCreate(
                    kind="task",
                    subject=row.title,
                    body=row.description,
                    occurred_at=row.completed_at,
                    links=[RecordRef(type=row.record_type, id=row.record_id)],
                    owner_id=actor.user_id or row.assignee_id,
                    task_id=row.id,
                ),
                actor,
                commit=False,
            )
            activity_id = activity.id
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return TaskCompleted(
        task=_read(row),
        next_task=_read(follower) if follower is not None else None,
        activity_id=activity_id,
    )


def reopen_task(
    session: Session, task_id: int, actor: Actor, *, if_version: int | None = None
) -> TaskRead:
    """Open a done or cancelled task again (its timeline entry and next occurrence stay)."""
    row = _get_row(session, task_id)
    _require_task_access(session, actor, row)
    _check_version(row, if_version)
    if row.status != "open":
        _set_status(session, row, "open", actor, "reopen")
        session.commit()
    return _read(row)


def cancel_task(
    session: Session, task_id: int, actor: Actor, *, if_version: int | None = None
) -> TaskRead:
    """Cancel an open task; a repeating task's series ends with it."""
    row = _get_row(session, task_id)
    _require_task_access(session, actor, row)
    _check_version(row, if_version)
    if row.status == "done":
        raise Conflict(
            f"Task {row.id} is done; reopen it before cancelling it.",
            [FieldError(("status",), "done")],
        )
    if row.status == "open":
        _set_status(session, row, "cancelled", actor, "cancel")
        session.commit()
    return _read(row)


# ----------------------------------------------------------------------------- views of a day


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(), zone).astimezone(UTC)


def day_ranges(now: datetime, zone: tzinfo) -> dict[str, Any]:
    """The due spans of "overdue", "today" and "the next seven days" for someone in
    ``zone`` at ``now``: timed tasks by the zone's midnights, all-day tasks by their date."""
    today = now.astimezone(zone).date()
    day_end = _midnight(today + timedelta(days=1), zone)
    week_end = _midnight(today + timedelta(days=8), zone)
    date_today = datetime.combine(today, time(), UTC)
    date_tomorrow = date_today + timedelta(days=1)
    return {
        "today": today,
        "overdue": DueSpan((None, now), (None, date_today)),
        "due_today": DueSpan((now, day_end), (date_today, date_tomorrow)),
        "upcoming": DueSpan((day_end, week_end), (date_tomorrow, date_today + timedelta(days=8))),
    }


def _my_day_lists(
    session: Session, user_id: int, spans: dict[str, DueSpan], limit: int, zone: tzinfo
) -> dict[str, tuple[list[TaskRead], int]]:
    """Each span's first open tasks of a user, in day order, and how many there are: two
    prebuilt statements; the counts only when a list is full."""
    params: dict[str, Any] = {"assignee_id": user_id, "limit": limit, **my_day_parameters(spans)}
    found: dict[str, list[TaskRead]] = {key: [] for key in MY_DAY_SPANS}
    for row in session.execute(first_open_in_my_day(), params):
        values = row._asdict()
        found[values.pop("bucket")].append(TaskRead.model_validate(values))
    totals = {key: len(items) for key, items in found.items()}
    if any(count >= limit for count in totals.values()):
        counted = session.execute(open_in_my_day(), params).one()._asdict()
        totals = {key: int(value or 0) for key, value in counted.items()}
    return {
        key: (sorted(items, key=lambda t: in_day_order(t, zone)), totals[key])
        for key, items in found.items()
    }


def in_day_order(item: TaskRead, zone: tzinfo) -> tuple[date, bool, datetime]:
    """Sort key of tasks as a day planner lists them in ``zone``: by day, and within a day
    the all-day tasks first, then by time (tasks without a due date last)."""
    if item.due_at is None:
        return date.max, True, datetime.max.replace(tzinfo=UTC)
    day = item.due_at.date() if item.all_day else item.due_at.astimezone(zone).date()
    return day, not item.all_day, item.due_at


def my_day(
    session: Session,
    actor: Actor,
    user_id: int,
    *,
    now: datetime | None = None,
    zone: tzinfo = UTC,
    limit: int = MY_DAY_LIMIT,
) -> MyDay:
    """A user's day in their time zone: open tasks overdue (due before now, or all-day
    tasks before today), due later today, and due in the next seven days, each soonest
    first and at most ``limit``; and their open deals whose next step is missing or late."""
    require(actor, ENTITY, "read")
    moment = now or utcnow()
    ranges = day_ranges(moment, zone)
    lists = _my_day_lists(session, user_id, ranges, limit, zone)
    overdue, overdue_total = lists["overdue"]
    due_today, due_today_total = lists["due_today"]
    upcoming, upcoming_total = lists["upcoming"]
    return MyDay(
        today=ranges["today"],
        timezone=str(zone),
        overdue=overdue,
        overdue_total=overdue_total,
        due_today=due_today,
        due_today_total=due_today_total,
        upcoming=upcoming,
        upcoming_total=upcoming_total,
        deals_needing_next_step=_deals_needing_next_step(session, actor, user_id, ranges["today"]),
    )


def _deals_needing_next_step(
    session: Session, actor: Actor, user_id: int, today: date
) -> list[DealRead]:
    if not can(actor, "deals", "read"):
        return []
    return deals_service.deals_needing_next_step(session, user_id, today, limit=DEALS_LIMIT)


def team_tasks(
    session: Session,
    team_id: int,
    actor: Actor,
    *,
    now: datetime | None = None,
    zone: tzinfo = UTC,
    per_member: int = 10,
) -> TeamTasks:
    """A team's active members with their open and overdue task counts and their first
    open tasks by due time, members with the most overdue first."""
    require(actor, ENTITY, "read")
    team = auth_service.get_team(session, team_id)
    members = [
        u for u in auth_service.list_users(session, include_inactive=False) if u.team_id == team_id
    ]
    moment = now or utcnow()
    overdue = day_ranges(moment, zone)["overdue"].condition()
    counts: dict[int, tuple[int, int]] = {}
    if members:
        stmt = (
            select(
                Task.assignee_id,
                func.count(Task.id),
                func.sum(case((and_(Task.due_at.is_not(None), overdue), 1), else_=0)),
            )
            .where(Task.assignee_id.in_([m.id for m in members]), Task.status == "open")
            .group_by(Task.assignee_id)
        )
        for assignee_id, open_total, overdue_total in session.execute(stmt):
            counts[assignee_id] = (int(open_total), int(overdue_total or 0))
    out = []
    for member in members:
        open_total, overdue_total = counts.get(member.id, (0, 0))
        rows = (
            list(session.scalars(open_tasks_of(member.id).limit(per_member))) if open_total else []
        )
        out.append(
            MemberTasks(
                user_id=member.id,
                name=member.name,
                email=member.email,
                open_total=open_total,
                overdue_total=overdue_total,
                tasks=[_read(r) for r in rows],
            )
        )
    out.sort(key=lambda m: (-m.overdue_total, m.name.casefold(), m.user_id))
    return TeamTasks(team_id=team.id, name=team.name, members=out)


# ----------------------------------------------------------------------------- notifications


def _user_of(actor: Actor) -> int:
    if actor.user_id is None:
        raise PermissionDenied("Only a user has notifications.")
    return actor.user_id


def list_notifications(
    session: Session,
    actor: Actor,
    *,
    unread_only: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[NotificationRead]:
    """The acting user's notifications, newest first; ``cursor`` continues a list."""
    user_id = _user_of(actor)
    stmt = select(Notification).where(Notification.user_id == user_id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise BadRequest(
                "The cursor is not valid for this list; start again without it.",
                [FieldError(("query", "cursor"), "invalid cursor")],
            )
        stmt = stmt.where(Notification.id < int(cursor))
    rows = list(session.scalars(stmt.order_by(Notification.id.desc()).limit(limit + 1)))
    next_cursor = str(rows[limit - 1].id) if len(rows) > limit else None
    return Page[NotificationRead](
        items=[NotificationRead.model_validate(r) for r in rows[:limit]], next_cursor=next_cursor
    )


def unread_count(session: Session, actor: Actor) -> int:
    """How many of the acting user's notifications are unread."""
    user_id = _user_of(actor)
    return (
        session.scalar(
            select(func.count(Notification.id)).where(
                Notification.user_id == user_id, Notification.read_at.is_(None)
            )
        )
        or 0
    )


def mark_read(session: Session, notification_id: int, actor: Actor) -> NotificationRead:
    """Mark one of the acting user's notifications read (reading it again changes nothing)."""
    user_id = _user_of(actor)
    row = session.get(Notification, notification_id)
    if row is None or row.user_id != user_id:
        raise NotFound(f"Notification {notification_id} does not exist.")
    if row.read_at is None:
        row.read_at = utcnow()
        session.commit()
    return NotificationRead.model_validate(row)


def mark_all_read(session: Session, actor: Actor) -> int:
    """Mark every unread notification of the acting user read; how many there were."""
    user_id = _user_of(actor)
    result = session.execute(
        update(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def reassign_contact(session: Session, from_id: int, to_id: int) -> list[int]:
    """Make the tasks about contact ``from_id`` about contact ``to_id`` (merging contacts);
    returns their ids. The caller commits; :func:`undo_reassign_contact` puts them back."""
    ids = sorted(
        session.scalars(
            select(Task.id).where(Task.record_type == "contact", Task.record_id == from_id)
        )
    )
    if ids:
        session.execute(update(Task).where(Task.id.in_(ids)).values(record_id=to_id))
    return ids


def undo_reassign_contact(
    session: Session, moved: Sequence[int], survivor_id: int, merged_id: int
) -> list[int]:
    """Undo :func:`reassign_contact`: the moved tasks still about the survivor go back to the
    merged contact. Returns their ids."""
    back = sorted(
        session.scalars(
            select(Task.id).where(
                Task.id.in_(list(moved)),
                Task.record_type == "contact",
                Task.record_id == survivor_id,
            )
        )
    )
    if back:
        session.execute(update(Task).where(Task.id.in_(back)).values(record_id=merged_id))
    return back
