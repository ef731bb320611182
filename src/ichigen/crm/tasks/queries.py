"""Tasks: reusable select() builders and the fields a task list sorts on."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from ichigen.core.query import ListField
from ichigen.crm.tasks.models import Task

#: A range of due times, ``[start, end)``; no start means "any time before ``end``".
DueRange = tuple[datetime | None, datetime]

SORT_FIELDS: dict[str, ListField] = {
    "id": ListField(Task.id, "int", nullable=False),
    "due_at": ListField(Task.due_at, "datetime"),
    "created_at": ListField(Task.created_at, "datetime", nullable=False),
    "updated_at": ListField(Task.updated_at, "datetime", nullable=False),
}


def _within(span: DueRange) -> ColumnElement[bool]:
    start, end = span
    upper = Task.due_at < end
    return upper if start is None else and_(Task.due_at >= start, upper)


def due_within(timed: DueRange, all_day: DueRange) -> ColumnElement[bool]:
    """Tasks due in ``timed`` (tasks with a time) or ``all_day`` (tasks for a whole day).

    All-day tasks keep midnight UTC of their date, so a user's day (a range in their time
    zone) selects them by a different range than timed tasks. The outer range on ``due_at``
    alone lets the database walk the ``(assignee_id, status, due_at)`` index once.
    """
    starts = [timed[0], all_day[0]]
    outer = Task.due_at < max(timed[1], all_day[1])
    if all(s is not None for s in starts):
        outer = and_(Task.due_at >= min(s for s in starts if s is not None), outer)
    return and_(
        outer,
        or_(
            and_(Task.all_day.is_(False), _within(timed)),
            and_(Task.all_day.is_(True), _within(all_day)),
        ),
    )


def open_tasks_of(assignee_id: int, where: ColumnElement[bool] | None = None) -> Select[Any]:
    """A user's open tasks (within ``where``), soonest due first."""
    return (
        select(Task)
        .where(Task.assignee_id == assignee_id, Task.status == "open")
        .where(where if where is not None else Task.id.is_not(None))
        .order_by(Task.due_at.is_(None), Task.due_at, Task.id)
    )


def count_open_of(assignee_id: int, where: ColumnElement[bool] | None = None) -> Select[Any]:
    """How many open tasks a user has (within ``where``)."""
    return select(func.count(Task.id)).where(
        Task.assignee_id == assignee_id,
        Task.status == "open",
        where if where is not None else Task.id.is_not(None),
    )


__all__ = ["SORT_FIELDS", "DueRange", "count_open_of", "due_within", "open_tasks_of"]
