"""Activities: reusable select() builders for timelines and lists.

A timeline page is read from ``activity_links`` alone: each link row repeats its activity's
``kind`` and ``occurred_at``, so the ``(record_type, record_id, [kind,] occurred_at,
activity_id)`` indexes give a record's activities newest first without touching
``activities`` until the page's ids are known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Select,
    any_,
    bindparam,
    literal,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.orm import QueryableAttribute

from ichigen.core.query import ListField, Sort
from ichigen.crm.activities.models import Activity, ActivityLink

L = ActivityLink
A = Activity

#: Timelines and lists run newest first; their cursors carry (occurred_at, activity id).
NEWEST_FIRST = Sort("occurred_at", ListField(L.occurred_at, "datetime", nullable=False), True)

#: Ids per query: a company with tens of thousands of contacts is read in several slices
#: (each slice's first page, merged), which keeps every statement well under the engines'
#: limits on bound parameters.
IDS_PER_QUERY = 2000
#: Past this many records, a timeline page is first looked for among recent activities, in
#: windows of these many days before the cursor (none: all of them).
WINDOWED_FROM = 200
WINDOW_DAYS: tuple[int | None, ...] = (14, 120, 1000, None)


def _before(
    occurred: Any, activity_id: Any, after: tuple[datetime, int] | None
) -> ColumnElement[bool] | None:
    """Rows strictly after the cursor's row in newest-first order."""
    if after is None:
        return None
    moment, last_id = after
    return tuple_(occurred, activity_id) < tuple_(
        literal(moment, type_=L.occurred_at.type), literal(last_id, type_=L.activity_id.type)
    )


def record_slices(records: Mapping[str, Sequence[int]]) -> list[dict[str, list[int]]]:
    """The records of a timeline cut into slices of at most ``IDS_PER_QUERY`` ids."""
    slices: list[dict[str, list[int]]] = [{}]
    size = 0
    for record_type, ids in records.items():
        unique = sorted(set(ids))
        for start in range(0, len(unique), IDS_PER_QUERY):
            chunk = unique[start : start + IDS_PER_QUERY]
            if size + len(chunk) > IDS_PER_QUERY and size:
                slices.append({})
                size = 0
            slices[-1].setdefault(record_type, []).extend(chunk)
            size += len(chunk)
    return [s for s in slices if s]


def _one_of(
    column: QueryableAttribute[int], ids: Sequence[int], dialect: str
) -> ColumnElement[bool]:
    if len(ids) == 1:
        return column == ids[0]
    if dialect == "postgresql":
        # One array parameter instead of thousands: building, sending and parsing a
        # statement with a parameter per contact cost more than running it.
        return column == any_(
            bindparam("record_ids", list(ids), type_=ARRAY(BigInteger), unique=True)
        )
    return column.in_(ids)


def timeline_page(
    records: Mapping[str, Sequence[int]],
    kinds: Sequence[str] | None,
    after: tuple[datetime, int] | None,
    limit: int,
    start: datetime | None = None,
    end: datetime | None = None,
    dialect: str = "sqlite",
) -> Select[int, datetime]:
    """Up to ``limit`` (activity id, occurred_at) of these records, newest first, each
    activity once even when it is linked to several of them.

    One branch per record type, each its own newest ``limit`` from the index alone, then
    merged: an ``OR`` of the types would make PostgreSQL read every matching row from the
    table (a bitmap scan) instead of from the index.
    """
    branches: list[Select[int, datetime]] = []
    for record_type, ids in records.items():
        if not ids:
            continue
        stmt = select(L.activity_id, L.occurred_at).where(
            L.record_type == record_type, _one_of(L.record_id, ids, dialect)
        )
        if kinds:
            stmt = stmt.where(L.kind.in_(kinds) if len(kinds) > 1 else L.kind == kinds[0])
        if start is not None:
            stmt = stmt.where(L.occurred_at >= start)
        if end is not None:
            stmt = stmt.where(L.occurred_at < end)
        cursor = _before(L.occurred_at, L.activity_id, after)
        if cursor is not None:
            stmt = stmt.where(cursor)
        if len(ids) > 1:
            # Several records of one type can hold the same activity twice.
            stmt = stmt.distinct()
        branches.append(stmt.order_by(L.occurred_at.desc(), L.activity_id.desc()).limit(limit))
    if len(branches) == 1:
        return branches[0]
    # SQLite takes ORDER BY and LIMIT in a compound select's parts only inside subqueries.
    merged = union_all(*(select(*b.subquery().c) for b in branches)).subquery()
    return (
        select(merged.c.activity_id, merged.c.occurred_at)
        .distinct()
        .order_by(merged.c.occurred_at.desc(), merged.c.activity_id.desc())
        .limit(limit)
    )


def activity_page(
    *,
    kinds: Sequence[str] | None,
    owner_id: int | None,
    record: tuple[str, int] | None,
    start: datetime | None,
    end: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> Select[int, datetime]:
    """A page of (activity id, occurred_at) for the activity list, newest first.

    With a record, the list is read from that record's links (its own activities only; the
    timeline adds those of the records under it); otherwise from ``activities``.
    """
    occurred: Any
    activity_id: Any
    if record is not None:
        occurred, activity_id, kind = L.occurred_at, L.activity_id, L.kind
        stmt = select(activity_id, occurred).where(
            L.record_type == record[0], L.record_id == record[1]
        )
        if owner_id is not None:
            stmt = stmt.join(A, A.id == L.activity_id).where(A.owner_id == owner_id)
    else:
        occurred, activity_id, kind = A.occurred_at, A.id, A.kind
        stmt = select(activity_id, occurred)
        if owner_id is not None:
            stmt = stmt.where(A.owner_id == owner_id)
    if kinds:
        stmt = stmt.where(kind.in_(kinds))
    if start is not None:
        stmt = stmt.where(occurred >= start)
    if end is not None:
        stmt = stmt.where(occurred < end)
    cursor = _before(occurred, activity_id, after)
    if cursor is not None:
        stmt = stmt.where(cursor)
    return stmt.order_by(occurred.desc(), activity_id.desc()).limit(limit)
