"""Tasks: reusable select() builders and the fields a task list sorts on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
    union_all,
)

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
#: The spans of My day, in the order the page shows them.
MY_DAY_SPANS = ("overdue", "due_today", "upcoming")
#: Which of them are open towards the past ("due before …").
_OPEN_START = {"overdue": True, "due_today": False, "upcoming": False}


def _span_condition(value: Callable[[str], Any], open_start: bool) -> ColumnElement[bool]:
    """Tasks due in a span, given its bounds by name (values or bound parameters).

    All-day tasks keep midnight UTC of their date, so a user's day (a range in their time
    zone) selects them by another range (``day_*``) than timed tasks (``timed_*``). The outer
    range (``outer_*``) on ``due_at`` alone lets the database walk the
    ``(assignee_id, status, due_at)`` index once.
    """

    def within(kind: str) -> ColumnElement[bool]:
        upper = Task.due_at < value(f"{kind}_end")
        return upper if open_start else and_(Task.due_at >= value(f"{kind}_start"), upper)

    return and_(
        within("outer"),
        or_(
            and_(Task.all_day.is_(False), within("timed")),
            and_(Task.all_day.is_(True), within("day")),
        ),
    )


def _count_parts(value: Callable[[str], Any], open_start: bool) -> list[ColumnElement[bool]]:
    """Conditions whose counts add up to a span's. Between ``inner_start`` and ``inner_end``
    the two ranges agree, so a task there is in the span whatever its kind and that part is
    counted from the index alone; only the edges (a day or so of tasks) read ``all_day``."""
    inner_end = Task.due_at < value("inner_end")
    if open_start:
        return [inner_end, and_(_span_condition(value, True), Task.due_at >= value("inner_end"))]
    return [
        and_(Task.due_at >= value("inner_start"), inner_end),
        and_(_span_condition(value, False), Task.due_at < value("inner_start")),
        and_(_span_condition(value, False), Task.due_at >= value("inner_end")),
    ]


@dataclass(frozen=True)
class DueSpan:
    """Tasks due in ``timed`` (tasks with a time) or in ``all_day`` (tasks for a day).

    Both ranges are open towards the past, or neither.
    """

    timed: DueRange
    all_day: DueRange

    @property
    def open_start(self) -> bool:
        return self.timed[0] is None

    def bounds(self) -> dict[str, datetime]:
        """The span's bounds by the names the conditions use."""
        (timed_start, timed_end), (day_start, day_end) = self.timed, self.all_day
        found = {
            "timed_end": timed_end,
            "day_end": day_end,
            "outer_end": max(timed_end, day_end),
            "inner_end": min(timed_end, day_end),
        }
        if timed_start is None or day_start is None:
            return found
        outer_start, inner_start = min(timed_start, day_start), max(timed_start, day_start)
        if inner_start >= found["inner_end"]:
            # The ranges do not meet: no inner part, one edge that holds the whole span.
            inner_start = found["inner_end"] = outer_start
        return found | {
            "timed_start": timed_start,
            "day_start": day_start,
            "outer_start": outer_start,
            "inner_start": inner_start,
        }

    def condition(self) -> ColumnElement[bool]:
        return _span_condition(self.bounds().__getitem__, self.open_start)


def _bound(prefix: str) -> Callable[[str], Any]:
    def value(name: str) -> Any:
        return bindparam(f"{prefix}_{name}", type_=Task.due_at.type)

    return value


@lru_cache(maxsize=1)
def first_open_in_my_day() -> CompoundSelect[Any]:
    """A user's first ``:limit`` open tasks of each span of My day, soonest due first, in one
    statement built once (the span in ``bucket``). Each part walks the
    ``(assignee_id, status, due_at)`` index in its order (a due time is never empty here)
    and stops at the limit."""
    parts = []
    for key in MY_DAY_SPANS:
        part = (
            select(literal(key).label("bucket"), *Task.__table__.c)
            .where(
                Task.assignee_id == bindparam("assignee_id"),
                Task.status == "open",
                _span_condition(_bound(key), _OPEN_START[key]),
            )
            .order_by(Task.due_at, Task.id)
            .limit(bindparam("limit", type_=Task.version.type))
            .subquery()
        )
        parts.append(select(part))
    return union_all(*parts)


@lru_cache(maxsize=1)
def open_in_my_day() -> Select[Any]:
    """How many open tasks a user has in each span of My day: one row, built once."""
    columns = []
    for key in MY_DAY_SPANS:
        counts = [
            # count(*), not count(id): the id is not in the index, and the part where both
            # kinds of task agree is to be counted from the index alone.
            select(func.count())
            .select_from(Task)
            .where(Task.assignee_id == bindparam("assignee_id"), Task.status == "open", part)
            .scalar_subquery()
            for part in _count_parts(_bound(key), _OPEN_START[key])
        ]
        total: ColumnElement[Any] = counts[0]
        for more in counts[1:]:
            total = total + more
        columns.append(total.label(key))
    return select(*columns)


def my_day_parameters(spans: dict[str, DueSpan]) -> dict[str, datetime]:
    """The bound values of the My day statements for these spans."""
    return {
        f"{key}_{name}": value
        for key in MY_DAY_SPANS
        for name, value in spans[key].bounds().items()
    }


def open_tasks_of(assignee_id: int, where: ColumnElement[bool] | None = None) -> Select[Any]:
    """A user's open tasks (within ``where``), soonest due first, tasks without a date last."""
    return (
        select(Task)
        .where(Task.assignee_id == assignee_id, Task.status == "open")
        .where(where if where is not None else Task.id.is_not(None))
        .order_by(Task.due_at.is_(None), Task.due_at, Task.id)
    )


__all__ = [
    "MY_DAY_SPANS",
    "SORT_FIELDS",
    "DueRange",
    "DueSpan",
    "first_open_in_my_day",
    "my_day_parameters",
    "open_in_my_day",
    "open_tasks_of",
]
