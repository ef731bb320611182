"""Bulk writes for hot paths (imports, running counts): new ids in order, plain executemany,
and counters added to in place.

SQLAlchemy inserts many rows well, with two costs that matter at tens of thousands of rows a
second: on SQLite, which has no ordered multi-row ``RETURNING``, an insert that must return
ids in row order goes row by row; and every executed row passes through its parameter
processing. These helpers avoid both where it is safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session


def insert_returning_ids(
    session: Session, table: Table, rows: Sequence[dict[str, Any]]
) -> list[int]:
    """Insert rows into a table with an integer ``id`` key; the new ids, in row order."""
    if not rows:
        return []
    if session.get_bind().dialect.name != "sqlite":
        stmt = table.insert().returning(table.c.id, sort_by_parameter_order=True)
        return list(session.execute(stmt, list(rows)).scalars())
    # SQLite has one writer at a time: once the first row is in, this transaction holds the
    # write lock, and that row's id is the largest in the table plus one (SQLite's rowid
    # rule), so the ids after it are free for the other rows, given explicitly.
    first = session.execute(table.insert().returning(table.c.id), [rows[0]]).scalar_one()
    if len(rows) > 1:
        session.execute(
            table.insert(), [{**row, "id": first + k} for k, row in enumerate(rows[1:], start=1)]
        )
    return [first + k for k in range(len(rows))]


def insert_plain_rows(
    session: Session, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """``executemany`` straight to the driver, for columns of plain ints, strings and booleans
    that need no conversion (never dates, JSON or decimals)."""
    if not rows:
        return
    connection = session.connection()
    compiled = table.insert().compile(dialect=connection.dialect, column_keys=list(columns))
    if compiled.positional:
        order = [list(columns).index(name) for name in compiled.positiontup or ()]
        params: list[Any] = (
            list(rows)
            if order == list(range(len(columns)))
            else [tuple(row[i] for i in order) for row in rows]
        )
    else:
        params = [dict(zip(columns, row, strict=True)) for row in rows]
    connection.exec_driver_sql(compiled.string, params)


def add_to_counters(
    session: Session, table: Table, keys: Sequence[str], rows: Sequence[dict[str, Any]]
) -> None:
    """Add each row's other columns to the row of ``table`` with the same ``keys``, creating it
    when missing (running counts and totals kept with every write).

    Pass rows sorted by their keys: concurrent writers then lock the rows in one order and
    never deadlock.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    stmt = (pg_insert if dialect == "postgresql" else sqlite_insert)(table)
    added = [name for name in rows[0] if name not in keys]
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c[name] for name in keys],
            set_={name: table.c[name] + stmt.excluded[name] for name in added},
        ),
        list(rows),
    )
