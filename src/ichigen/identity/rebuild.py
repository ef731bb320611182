"""Rebuild the identity graph from the edge log, in batch.

``resolve`` and ``unmerge`` keep the graph incrementally; this recomputes it from scratch
from the identifiers and the active edges (``removed_at IS NULL``), the way a batch job
would after a bug, a bulk import written past the service, or a restore: the identifiers
of each survivor must be exactly one connected component of the active edges.

The work is columnar. Identifier and edge ids are read into numpy arrays through the DBAPI
connection, by key ranges aggregated into one value each (a ``group_concat`` on SQLite, a
``bytea`` of ``int8send`` values on PostgreSQL); the components come from
``scipy.sparse.csgraph.connected_components``; only what changes is written, through
temporary tables and set-based ``UPDATE … FROM`` / ``INSERT … SELECT`` statements, in the
caller's transaction (on SQLite the temporary tables are filled from JSON arrays through
``json_each``, and when a fifth or more of the identifiers move, the index on their
``person_id`` is dropped and built again around the update, inside the transaction; on
PostgreSQL the temporary tables are filled by binary ``COPY``, the transaction gets a larger
``work_mem`` for the rebuild, and past a twentieth of the rows changing ``person_id`` or
``merged_into`` the plain index and the foreign key on the column are dropped and added
again around the update, which locks the table against readers until the commit). The
outcome depends only on the stored graph, so two rebuilds give the same result and a
rebuild of a consistent graph writes nothing.

How each component gets its person:

- a component that is exactly one survivor's identifiers keeps it (the normal case);
- each person claims the component holding its oldest identifier (``created_at``, id);
  of several persons claiming one component the oldest person (``created_at``, id)
  survives, the others are merged into it (and what was merged into them is re-pointed);
- a component no person claims (a split: its identifiers' persons each keep another
  component) gets a new person.

Identifiers that point to a merged person count as their survivor's. Every change is
written to the merge log with ``source_kind="rebuild"``: ``merged``, ``unmerged`` (a new
person split off) and ``split`` (identifiers moved from one existing person to another, not
by a merge). Both are actions after which a process's memory of identifiers is forgotten
(``service.SPLIT_ACTIONS``); a merge needs no forgetting, reads follow ``merged_into``.
"""

from __future__ import annotations

import itertools
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_array  # type: ignore[import-untyped]
from scipy.sparse.csgraph import connected_components  # type: ignore[import-untyped]
from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ichigen.core.clock import utcnow
from ichigen.core.db import UTCDateTime

Ids = npt.NDArray[np.int64]
#: ``progress(phase, done, total)``: called while reading, planning and writing.
Progress = Callable[[str, int, int], None]

#: The merge log's ``source_kind`` for what a rebuild changed.
SOURCE_KIND = "rebuild"
_FETCH = 200_000
_WRITE_CHUNK = 200_000
#: Rows of a SQLite temporary table inserted by one statement (one JSON array).
_JSON_CHUNK = 1_000_000
#: Ids sorted by age on SQLite from one JSON array, at most (well under SQLite's default
#: limit of 1e9 bytes on one value); more go through a temporary table.
_JSON_SORT_LIMIT = 20_000_000
#: On SQLite, past this share of a table's rows changing an indexed column, the indexes on it
#: are dropped and created again around the update.
_REINDEX_SHARE = 0.2
#: The same on PostgreSQL, where the foreign keys on the column go too: a row updated costs
#: an index entry put at a random place and a foreign-key check (a lookup and a row lock on
#: the referenced row), each a page read and dirtied once the tables outgrow shared_buffers,
#: against a sort and one join per table to build the index and check the key again.
_PG_REINDEX_SHARE = 0.05
#: PostgreSQL memory for the rebuild's joins, sorts and aggregates (``work_mem``; hash
#: joins get ``hash_mem_multiplier`` times it) and for building indexes again
#: (``maintenance_work_mem``), set for the rebuild only: the default few MiB spill the joins
#: with the temporary tables and the sorts by age to disk in batches.
_PG_WORK_MEM = "256MB"
_PG_MAINTENANCE_WORK_MEM = "512MB"
#: How long a rebuild waits for other sessions' locks before it drops indexes on PostgreSQL
#: (under ``deadlock_timeout``, 1 s by default, so that a deadlock is not reported first).
_PG_LOCK_WAIT = "500ms"
#: SQLSTATEs of a lock not granted in time (``lock_not_available``) and a deadlock.
_LOCK_REFUSED = frozenset({"55P03", "40P01"})
#: Key range read by one ``group_concat`` on SQLite.
_SPAN = 1_000_000
#: SQLite page cache while rebuilding (KiB, as ``PRAGMA cache_size`` takes it when negative).
_SQLITE_CACHE_KIB = 2_097_152
_PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_TRAILER = struct.pack(">h", -1)
_EMPTY: Ids = np.empty(0, dtype=np.int64)
#: Ids count as dense (arrays are indexed by them) up to this many times the rows, plus slack.
_DENSE = 4
_DENSE_SLACK = 1_000_000


@dataclass(frozen=True)
class RebuildResult:
    """What a rebuild found and changed (or, with ``dry_run``, would change)."""

    identifiers: int
    edges: int
    components: int
    #: Components already exactly one survivor's identifiers: nothing written for them.
    persons_unchanged: int
    #: Persons merged into another because their identifiers are connected.
    persons_merged: int
    #: Persons some of whose identifiers were split off to a new person.
    persons_split: int
    persons_created: int
    identifiers_moved: int
    #: Merged persons whose ``merged_into`` changed (newly merged ones included).
    pointers_changed: int
    merge_log_rows: int
    rows_written: int
    dry_run: bool
    #: Wall-clock seconds of each phase: read, components, ages (creation times read for
    #: the persons and identifiers in question), plan, write.
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphPlan:
    """The changes a rebuild makes, computed from the stored graph alone.

    A target person below zero is the ``-target - 1``-th entry of ``new_person_formers``
    (a person still to create); ``new_person_formers`` holds, for each, the person its
    component's first identifier (by id) belonged to, and ``new_person_oldest`` its oldest
    identifier (``created_at``, id).
    """

    identifiers: int
    edges: int
    components: int
    clean_components: int
    moved_identifier_ids: Ids
    moved_targets: Ids
    moved_from: Ids
    new_person_formers: Ids
    new_person_oldest: Ids
    merged_persons: Ids
    merge_survivors: Ids
    pointer_persons: Ids
    pointer_targets: Ids
    reassigned_to: Ids
    reassigned_from: Ids
    reassigned_counts: Ids

    def same_as(self, other: GraphPlan) -> bool:
        """Whether two plans make exactly the same changes."""
        return all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in self.__dataclass_fields__
        )


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


# -- Reading -------------------------------------------------------------------------------


def _dbapi(session: Session) -> Any:
    """The DBAPI connection under the session's transaction (sqlite3 or psycopg)."""
    return session.connection().connection.dbapi_connection


def _pg_dtype(columns: int) -> np.dtype[Any]:
    """One row of ``columns`` BIGINTs in PostgreSQL's binary COPY format."""
    fields: list[tuple[str, str]] = [("count", ">i2")]
    for n in range(columns):
        fields += [(f"length{n}", ">i4"), (f"c{n}", ">i8")]
    return np.dtype(fields)


def _read_columns(
    session: Session,
    sql: str,
    columns: int,
    phase: str,
    total: int,
    progress: Progress,
    params: Sequence[Any] = (),
) -> list[Ids]:
    """The integer columns of a query's rows on SQLite, row by row (no NULLs allowed)."""
    cursor = _dbapi(session).cursor()
    chunks: list[Ids] = []
    done = 0
    try:
        cursor.execute(sql, tuple(params))
        while batch := cursor.fetchmany(_FETCH):
            flat = itertools.chain.from_iterable(batch)
            chunks.append(np.fromiter(flat, dtype=np.int64, count=columns * len(batch)))
            done += len(batch)
            progress(phase, done, total)
    finally:
        cursor.close()
    values = np.concatenate(chunks) if chunks else _EMPTY
    return [np.ascontiguousarray(values[n::columns]) for n in range(columns)]


def _pg_aggregate(
    cursor: Any,
    columns: Sequence[str],
    source: str,
    where: str = "",
    params: Sequence[Any] = (),
    order: str | None = None,
) -> list[Ids]:
    """Integer columns read from PostgreSQL as one ``bytea`` of big-endian BIGINTs (in
    ``order`` when given): one value to fetch instead of a message per row."""
    packed = " || ".join(f"int8send(CAST({c} AS BIGINT))" for c in columns)
    ordered = f" ORDER BY {order}" if order else ""
    condition = f" WHERE {where}" if where else ""
    cursor.execute(
        f"SELECT count(*), string_agg({packed}, CAST('' AS BYTEA){ordered}) "
        f"FROM {source}{condition}",
        tuple(params),
    )
    found, data = cursor.fetchone()
    values = np.frombuffer(bytes(data or b""), dtype=">i8").astype(np.int64)
    if len(values) != found * len(columns):
        raise RuntimeError(f"reading {source} for the rebuild lost rows")
    return [np.ascontiguousarray(values[n :: len(columns)]) for n in range(len(columns))]


def _read_ranges(
    session: Session,
    columns: Sequence[str],
    source: str,
    key: str,
    where: str,
    phase: str,
    progress: Progress,
    packable: bool,
) -> list[Ids]:
    """One or two integer columns of ``source`` (rows matching ``where``), as arrays.

    Rows are read by ranges of ``key`` (an integer primary key), each range aggregated into
    one value: on PostgreSQL a ``bytea`` of the BIGINTs, on SQLite (when every value fits in
    31 bits, ``packable``) a ``group_concat`` of each pair packed into one integer. The
    drivers then build one value per range instead of a tuple per row, which reads several
    times faster.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    if not postgres and not packable:
        condition = f" WHERE {where}" if where else ""
        select = f"SELECT {', '.join(columns)} FROM {source}{condition}"
        return _read_columns(session, select, len(columns), phase, 0, progress)
    mark = "%s" if postgres else "?"
    cursor = _dbapi(session).cursor()
    try:
        # Two statements: SQLite reads a lone min() or max() off the index, not both at once.
        cursor.execute(f"SELECT min({key}) FROM {source}")
        (low,) = cursor.fetchone()
        cursor.execute(f"SELECT max({key}) FROM {source}")
        (high,) = cursor.fetchone()
        if low is None:
            return [_EMPTY for _ in columns]
        packed = columns[0] if len(columns) == 1 else f"(({columns[0]}) << 32) | ({columns[1]})"
        extra = f" AND ({where})" if where else ""
        chunks: list[list[Ids]] = []
        for start in range(int(low), int(high) + 1, _SPAN):
            bounds = f"{key} >= {mark} AND {key} < {mark}{extra}"
            if postgres:
                chunks.append(
                    _pg_aggregate(cursor, columns, source, bounds, (start, start + _SPAN))
                )
            else:
                cursor.execute(
                    f"SELECT count(*), group_concat({packed}) FROM {source} WHERE {bounds}",
                    (start, start + _SPAN),
                )
                found, concatenated = cursor.fetchone()
                if found:
                    values = np.fromstring(concatenated, dtype=np.int64, sep=",")
                    if len(values) != found:
                        raise RuntimeError(f"reading {source} for the rebuild lost rows")
                    if len(columns) == 1:
                        chunks.append([values])
                    else:
                        chunks.append([values >> 32, values & 0xFFFFFFFF])
            progress(phase, min(start + _SPAN, int(high)) - int(low), int(high) - int(low) + 1)
    finally:
        cursor.close()
    if not chunks:
        return [_EMPTY for _ in columns]
    return [np.concatenate([chunk[n] for chunk in chunks]) for n in range(len(columns))]


def _packable(session: Session) -> bool:
    """Whether every identifier and person id fits in 31 bits (for ``_read_ranges`` on
    SQLite: PostgreSQL's reads take whole BIGINTs, so nothing is asked there)."""
    if session.get_bind().dialect.name == "postgresql":
        return True
    # One aggregate per statement, so that each is read off an index.
    bounds = [
        session.execute(text(f"SELECT {function}({column}) FROM {table}")).scalar_one()
        for function in ("min", "max")
        for table, column in (
            ("identity_identifiers", "id"),
            ("identity_identifiers", "person_id"),
            ("identity_persons", "id"),
        )
    ]
    if any(bound is None for bound in bounds):
        return True
    return bool(min(int(b) for b in bounds[:3]) >= 0 and max(int(b) for b in bounds[3:]) < 2**31)


# -- Temporary tables ----------------------------------------------------------------------


def _create_temp(session: Session, name: str, columns: dict[str, Ids], *, key: bool) -> None:
    """A temporary table of BIGINT columns holding these arrays (dropped by ``_drop_temp``);
    with ``key`` the first column is its primary key (its values unique)."""
    dialect = session.get_bind().dialect.name
    names = list(columns)
    length = len(next(iter(columns.values())))
    primary = " PRIMARY KEY" if key else ""
    if dialect == "postgresql":
        session.execute(
            text(
                f"CREATE TEMP TABLE {name} ({names[0]} BIGINT{primary}"
                + "".join(f", {c} BIGINT" for c in names[1:])
                + ")"
            )
        )
        dtype = _pg_dtype(len(names))
        with (
            _dbapi(session).cursor() as cursor,
            cursor.copy(f"COPY {name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(_PG_HEADER)
            for start in range(0, length, _WRITE_CHUNK):
                stop = min(start + _WRITE_CHUNK, length)
                rows = np.empty(stop - start, dtype=dtype)
                rows["count"] = len(names)
                for n, column in enumerate(names):
                    rows[f"length{n}"] = 8
                    rows[f"c{n}"] = columns[column][start:stop]
                copy.write(rows.tobytes())
            copy.write(_PG_TRAILER)
    else:
        # An INTEGER PRIMARY KEY is SQLite's rowid: no separate index to fill.
        session.execute(
            text(
                f"CREATE TEMP TABLE {name} ({names[0]} INTEGER{primary}"
                + "".join(f", {c} INTEGER" for c in names[1:])
                + ")"
            )
        )
        cursor = _dbapi(session).cursor()
        try:
            _fill_sqlite_temp(cursor, name, [columns[c] for c in names], length)
        finally:
            cursor.close()
    if dialect == "postgresql":
        session.execute(text(f"ANALYZE {name}"))


def _json_array(values: Ids) -> str:
    """Integers as a JSON array, for SQLite's ``json_each``."""
    return "[" + ",".join(map(str, values.tolist())) + "]"


def _fill_sqlite_temp(cursor: Any, name: str, columns: list[Ids], length: int) -> None:
    """Insert the arrays' rows into a SQLite temporary table.

    One column, or two of values in ``[0, 2**31)``, go in as one JSON array per chunk, read
    back by ``json_each`` (a pair packed into one integer): about twice as fast as
    ``executemany``, which builds a tuple and binds parameters per row.
    """
    for start in range(0, length, _JSON_CHUNK):
        stop = min(start + _JSON_CHUNK, length)
        chunk = [column[start:stop] for column in columns]
        if len(chunk) == 1 or (
            len(chunk) == 2 and all(c.min() >= 0 and c.max() < 2**31 for c in chunk)
        ):
            packed = chunk[0] if len(chunk) == 1 else (chunk[0] << 32) | chunk[1]
            values = "value" if len(chunk) == 1 else "value >> 32, value & 4294967295"
            cursor.execute(
                f"INSERT INTO {name} SELECT {values} FROM json_each(?)",
                (_json_array(packed),),
            )
        else:
            marks = ", ".join("?" for _ in chunk)
            cursor.executemany(
                f"INSERT INTO {name} VALUES ({marks})",
                zip(*(c.tolist() for c in chunk), strict=True),
            )


def _drop_temp(session: Session, names: Iterable[str]) -> None:
    for name in names:
        session.execute(text(f"DROP TABLE IF EXISTS {name}"))


def _ordered_by_age(session: Session, table: str, ids: Ids) -> Ids:
    """``ids`` (of ``table``'s rows) oldest first: by ``created_at``, then id."""
    if len(ids) == 0:
        return _EMPTY
    postgres = session.get_bind().dialect.name == "postgresql"
    if not postgres and len(ids) <= _JSON_SORT_LIMIT:
        # No temporary table: the ids go in as one JSON array, walked in order, each row
        # sought by rowid.
        (ordered,) = _read_columns(
            session,
            f"SELECT r.id FROM json_each(?) j JOIN {table} r ON r.id = +j.value "
            "ORDER BY r.created_at, r.id",
            1,
            "ages",
            len(ids),
            _no_progress,
            (_json_array(ids),),
        )
        return ordered
    temp = f"ichigen_rebuild_age_{table}"
    _create_temp(session, temp, {"id": ids}, key=True)
    try:
        if postgres:
            # Each id with its time as the 8 bytes of ``timestamptz_send`` (microseconds, in
            # the order of the times), sorted here: the aggregate's own ORDER BY sorts
            # several times slower.
            with _dbapi(session).cursor() as cursor:
                cursor.execute(
                    "SELECT count(*), string_agg(int8send(CAST(t.id AS BIGINT)) "
                    "|| timestamptz_send(r.created_at), CAST('' AS BYTEA)) "
                    f"FROM {temp} t JOIN {table} r ON r.id = t.id"
                )
                found, data = cursor.fetchone()
            rows = np.frombuffer(bytes(data or b""), dtype=[("id", ">i8"), ("at", ">i8")])
            if len(rows) != found:
                raise RuntimeError(f"reading {table} for the rebuild lost rows")
            found_ids = rows["id"].astype(np.int64)
            ordered = found_ids[np.lexsort((found_ids, rows["at"].astype(np.int64)))]
        else:
            (ordered,) = _read_columns(
                session,
                f"SELECT t.id FROM {temp} t JOIN {table} r ON r.id = t.id "
                "ORDER BY r.created_at, r.id",
                1,
                "ages",
                len(ids),
                _no_progress,
            )
    finally:
        _drop_temp(session, [temp])
    return ordered


# -- Planning ------------------------------------------------------------------------------


def _positions(sorted_ids: Ids, values: Ids) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
    """Where each value sits in ``sorted_ids``, and whether it is there at all."""
    if len(sorted_ids) == 0:
        return np.zeros(len(values), dtype=np.intp), np.zeros(len(values), dtype=np.bool_)
    pos = np.minimum(np.searchsorted(sorted_ids, values), len(sorted_ids) - 1)
    return pos, sorted_ids[pos] == values


def _locator(
    sorted_ids: Ids,
) -> Callable[[Ids], tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]]:
    """``_positions`` in ``sorted_ids``, through a direct table when the ids are dense:
    binary searches over millions of ids miss the CPU cache at every step."""
    if len(sorted_ids) == 0 or sorted_ids[0] < 0:
        return lambda values: _positions(sorted_ids, values)
    highest = int(sorted_ids[-1])
    if highest > _DENSE * len(sorted_ids) + _DENSE_SLACK:
        return lambda values: _positions(sorted_ids, values)
    table = np.full(highest + 1, -1, dtype=np.intp)
    table[sorted_ids] = np.arange(len(sorted_ids), dtype=np.intp)

    def locate(values: Ids) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        inside = (values >= 0) & (values <= highest)
        pos = np.full(len(values), -1, dtype=np.intp)
        pos[inside] = table[values[inside]]
        found = pos >= 0
        pos[~found] = 0
        return pos, found

    return locate


def _through(keys: Ids, targets: Ids, values: Ids) -> Ids:
    """``values`` with those found in ``keys`` (sorted) replaced by their ``targets``."""
    pos, hit = _locator(keys)(values)
    out = values.copy()
    out[hit] = targets[pos[hit]]
    return out


def _flatten(merged: Ids, merged_into: Ids) -> Ids:
    """Each merged person's final survivor, following chains (``merged`` sorted)."""
    flat = merged_into.copy()
    for _ in range(len(merged) + 1):
        pos, hit = _positions(merged, flat)
        if not hit.any():
            return flat
        flat[hit] = merged_into[pos[hit]]
    raise RuntimeError("identity_persons.merged_into has a cycle")


def _count_pairs(first: Ids, second: Ids) -> tuple[Ids, Ids, Ids]:
    """The distinct (first, second) pairs, sorted, and how often each occurs."""
    if len(first) == 0:
        return _EMPTY, _EMPTY, _EMPTY
    if first.min() >= 0 and second.min() >= 0 and max(first.max(), second.max()) < 2**31:
        # One packed integer per pair sorts many times faster than unique(axis=1).
        keys, counts = np.unique((first << 32) | second, return_counts=True)
        return keys >> 32, keys & 0xFFFFFFFF, counts.astype(np.int64)
    pairs, counts = np.unique(np.stack([first, second]), axis=1, return_counts=True)
    return pairs[0], pairs[1], counts.astype(np.int64)


def plan_graph(
    session: Session, progress: Progress | None = None
) -> tuple[GraphPlan, dict[str, float]]:
    """Compute what a rebuild changes, without writing: the plan and seconds per phase.

    Reads inside the session's transaction; ``rebuild_graph`` locks the tables first.
    """
    report = progress or _no_progress
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    packable = _packable(session)
    ident_ids, stored = _read_ranges(
        session,
        ("id", "person_id"),
        "identity_identifiers",
        "id",
        "",
        "identifiers",
        report,
        packable,
    )
    if len(ident_ids) > 1 and not np.all(ident_ids[1:] > ident_ids[:-1]):
        order = np.argsort(ident_ids, kind="stable")
        ident_ids, stored = ident_ids[order], stored[order]
    merged, merged_into = _read_ranges(
        session,
        ("id", "merged_into"),
        "identity_persons",
        "id",
        "merged_into IS NOT NULL",
        "persons",
        report,
        packable,
    )
    order = np.argsort(merged, kind="stable")
    merged, merged_into = merged[order], merged_into[order]
    left, right = _read_ranges(
        session,
        ("left_id", "right_id"),
        "identity_edges",
        "id",
        "removed_at IS NULL",
        "edges",
        report,
        packable,
    )
    seconds["read"] = time.perf_counter() - started

    started = time.perf_counter()
    report("components", 0, 1)
    count = len(ident_ids)
    locate = _locator(ident_ids)
    left_pos, left_ok = locate(left)
    right_pos, right_ok = locate(right)
    if not (left_ok.all() and right_ok.all()):
        raise RuntimeError("an active edge links an identifier that does not exist")
    graph = coo_array(
        (np.ones(len(left), dtype=np.int8), (left_pos, right_pos)), shape=(count, count)
    ).tocsr()
    components, raw_labels = connected_components(graph, directed=False)
    labels = np.asarray(raw_labels, dtype=np.int64)
    components = int(components)
    del graph
    report("components", 1, 1)
    seconds["components"] = time.perf_counter() - started

    started = time.perf_counter()
    flat = _flatten(merged, merged_into)
    effective = _through(merged, flat, stored)
    highest = int(effective.max()) if count else 0
    if count and effective.min() >= 0 and highest <= _DENSE * count + _DENSE_SLACK:
        # Person ids are dense enough to index arrays by: no sort of 13M values.
        persons = np.arange(highest + 1, dtype=np.int64)
        person_index = effective
    else:
        persons, person_index = np.unique(effective, return_inverse=True)
        person_index = person_index.astype(np.int64)
    big = np.iinfo(np.int64).max
    comp_min = np.full(components, big, dtype=np.int64)
    comp_max = np.full(components, -1, dtype=np.int64)
    np.minimum.at(comp_min, labels, effective)
    np.maximum.at(comp_max, labels, effective)
    person_min = np.full(len(persons), big, dtype=np.int64)
    person_max = np.full(len(persons), -1, dtype=np.int64)
    np.minimum.at(person_min, person_index, labels)
    np.maximum.at(person_max, person_index, labels)
    # (A person without identifiers has min > max and is in no component.)
    person_multi = (person_min != person_max) & (person_max >= 0)
    dirty_component = comp_min != comp_max
    dirty_component[labels[person_multi[person_index]]] = True
    dirty = dirty_component[labels]

    # Each person claims the component of its oldest identifier.
    claim = person_min.copy()
    multi_members = np.flatnonzero(person_multi[person_index])
    ages = 0.0
    # The identifiers of the persons spread over several components (those of the persons
    # merged into them included), oldest first: every identifier of an unclaimed component
    # is one of them, so this also gives each new person's oldest identifier.
    asked = time.perf_counter()
    aged, aged_ok = locate(
        _ordered_by_age(session, "identity_identifiers", ident_ids[multi_members])
    )
    ages += time.perf_counter() - asked
    if len(aged) != len(multi_members) or not aged_ok.all():
        raise RuntimeError("the identifiers changed while the rebuild read them")
    if len(aged):
        # The first of each person's identifiers in age order: a minimum per person, no sort.
        first_aged = np.full(len(persons), len(aged), dtype=np.int64)
        np.minimum.at(first_aged, person_index[aged], np.arange(len(aged), dtype=np.int64))
        oldest_at = aged[first_aged[first_aged < len(aged)]]
        claim[person_index[oldest_at]] = labels[oldest_at]
    is_dirty_person = np.zeros(len(persons), dtype=np.bool_)
    is_dirty_person[person_index[dirty]] = True
    dirty_persons = np.flatnonzero(is_dirty_person)
    claimed = claim[dirty_persons]
    claimants = np.bincount(claimed, minlength=components)
    owner = np.full(components, 0, dtype=np.int64)
    uncontested = claimants[claimed] == 1
    owner[claimed[uncontested]] = persons[dirty_persons[uncontested]]
    contested = dirty_persons[~uncontested]
    losers: Ids = _EMPTY
    survivors_of_losers: Ids = _EMPTY
    if len(contested):
        asked = time.perf_counter()
        age_order = _ordered_by_age(session, "identity_persons", persons[contested])
        ages += time.perf_counter() - asked
        rank = np.empty(len(contested), dtype=np.int64)
        rank_pos, _ = _positions(persons[contested], age_order)
        rank[rank_pos] = np.arange(len(age_order))
        # Persons are unique and sorted, so persons[contested] is sorted for _positions.
        order = np.lexsort((rank, claim[contested]))
        contested_sorted = contested[order]
        comp_sorted = claim[contested_sorted]
        is_first = np.ones(len(order), dtype=np.bool_)
        is_first[1:] = comp_sorted[1:] != comp_sorted[:-1]
        owner[comp_sorted[is_first]] = persons[contested_sorted[is_first]]
        losers = persons[contested_sorted[~is_first]]
        survivors_of_losers = owner[comp_sorted[~is_first]]
        loser_order = np.argsort(losers, kind="stable")
        losers, survivors_of_losers = losers[loser_order], survivors_of_losers[loser_order]
    unclaimed = np.flatnonzero(dirty_component & (owner == 0))
    owner[unclaimed] = -np.arange(1, len(unclaimed) + 1, dtype=np.int64)
    # A new person comes from the person of its component's first identifier (by id).
    first_identifier = np.full(components, count, dtype=np.int64)
    np.minimum.at(first_identifier, labels[dirty], np.flatnonzero(dirty))
    new_person_formers = effective[first_identifier[unclaimed]]

    target = effective.copy()
    target[dirty] = owner[labels[dirty]]
    # A new person's oldest identifier: the first, in age order, of those it gets.
    to_new = aged[target[aged] < 0]
    new_numbers, first_new = np.unique(-target[to_new] - 1, return_index=True)
    if not np.array_equal(new_numbers, np.arange(len(unclaimed))):
        raise RuntimeError("a new person's identifiers were not all read with their ages")
    new_person_oldest = ident_ids[to_new[first_new]]
    moved = np.flatnonzero(target != stored)
    moved_targets = target[moved]
    moved_from = stored[moved]

    # Pointers: existing merged persons follow chains and new merges; new merges point too.
    final = _through(losers, survivors_of_losers, flat)
    changed = final != merged_into
    pointer_persons = np.concatenate([merged[changed], losers])
    pointer_targets = np.concatenate([final[changed], survivors_of_losers])
    order = np.argsort(pointer_persons, kind="stable")
    pointer_persons, pointer_targets = pointer_persons[order], pointer_targets[order]

    # Reassigned: moves to an existing person not explained by a merge into it.
    moved_effective = effective[moved]
    via_merge = _through(losers, survivors_of_losers, moved_effective) == moved_targets
    plain = (moved_targets > 0) & ~(via_merge & (moved_effective != moved_targets))
    reassigned_to, reassigned_from, reassigned_counts = _count_pairs(
        moved_targets[plain], moved_from[plain]
    )
    # Reading creation times (of the persons and identifiers in question) apart.
    seconds["ages"] = ages
    seconds["plan"] = time.perf_counter() - started - ages
    plan = GraphPlan(
        identifiers=count,
        edges=len(left),
        components=components,
        clean_components=components - int(dirty_component.sum()),
        moved_identifier_ids=ident_ids[moved],
        moved_targets=moved_targets,
        moved_from=moved_from,
        new_person_formers=new_person_formers,
        new_person_oldest=new_person_oldest,
        merged_persons=losers,
        merge_survivors=survivors_of_losers,
        pointer_persons=pointer_persons,
        pointer_targets=pointer_targets,
        reassigned_to=reassigned_to,
        reassigned_from=reassigned_from,
        reassigned_counts=reassigned_counts,
    )
    return plan, seconds


# -- Writing -------------------------------------------------------------------------------


@contextmanager
def _large_memory(session: Session) -> Iterator[None]:
    """Memory for the rebuild: on SQLite a page cache that holds the identity tables'
    indexes, on PostgreSQL ``work_mem`` and ``maintenance_work_mem`` for the transaction
    (``SET LOCAL``), put back as they were when the rebuild is done. After an error the
    PostgreSQL transaction is aborted and must roll back, which undoes them anyway."""
    if session.get_bind().dialect.name == "postgresql":
        settings = {"work_mem": _PG_WORK_MEM, "maintenance_work_mem": _PG_MAINTENANCE_WORK_MEM}
        before = {
            name: session.execute(text(f"SELECT current_setting('{name}')")).scalar_one()
            for name in settings
        }
        for name, value in settings.items():
            session.execute(text(f"SELECT set_config('{name}', '{value}', true)"))
        yield
        for name, value in before.items():
            session.execute(
                text(f"SELECT set_config('{name}', :value, true)"), {"value": str(value)}
            )
        return
    dbapi = _dbapi(session)
    (before,) = dbapi.execute("PRAGMA cache_size").fetchone()
    dbapi.execute(f"PRAGMA cache_size = -{_SQLITE_CACHE_KIB}")
    try:
        yield
    finally:
        dbapi.execute(f"PRAGMA cache_size = {int(before)}")


def _lock(session: Session, dry_run: bool) -> None:
    """Keep other writers out while the graph is read (and written), for one snapshot."""
    session.flush()
    if session.get_bind().dialect.name == "postgresql":
        mode = "SHARE" if dry_run else "SHARE ROW EXCLUSIVE"
        session.execute(
            text(
                f"LOCK TABLE identity_persons, identity_identifiers, identity_edges IN {mode} MODE"
            )
        )
        return
    dbapi = _dbapi(session)
    if not dbapi.in_transaction:
        # sqlite3 opens a transaction only before a write; reads must share one snapshot.
        dbapi.execute("BEGIN" if dry_run else "BEGIN IMMEDIATE")


def _new_person_ids(session: Session, count: int) -> Ids:
    """Ids for new persons: the sequence's next values, or past the largest on SQLite (the
    rebuild holds the write lock)."""
    if count == 0:
        return _EMPTY
    if session.get_bind().dialect.name == "postgresql":
        with _dbapi(session).cursor() as cursor:
            (ids,) = _pg_aggregate(
                cursor,
                ("nextval(pg_get_serial_sequence('identity_persons', 'id'))",),
                f"generate_series(1, {int(count)})",
            )
        return np.sort(ids)
    last = session.execute(text("SELECT coalesce(max(id), 0) FROM identity_persons")).scalar_one()
    return np.arange(int(last) + 1, int(last) + 1 + count, dtype=np.int64)


def _update_from(session: Session, table: str, column: str, temp: str) -> None:
    """Set ``table.column`` to ``temp.person`` for the rows whose id is in ``temp.id``."""
    # On SQLite the unary ``+`` keeps ``t.id`` from being used to seek the temporary table:
    # without statistics the planner would scan the whole table and look each row up in the
    # temporary one; so it walks the temporary table and seeks the rows by rowid.
    plus = "" if session.get_bind().dialect.name == "postgresql" else "+"
    session.execute(
        text(f"UPDATE {table} SET {column} = t.person FROM {temp} t WHERE {table}.id = {plus}t.id")
    )


@contextmanager
def _without_indexes_on(
    session: Session, table: str, column: str, rows: int, total: int
) -> Iterator[None]:
    """When ``rows`` of ``total`` are to change ``column``, drop the indexes on it for the
    duration and create them again after, in the same transaction (on PostgreSQL the
    foreign keys on it too, and not the unique indexes).

    On SQLite updating an index entry per row costs about five times what building the whole
    index again costs per row, so past ``_REINDEX_SHARE`` of the rows rebuilding is faster.
    Other connections read the snapshot from before the transaction, indexes included.
    PostgreSQL: see ``_without_indexes_on_postgres``.
    """
    if session.get_bind().dialect.name == "postgresql":
        with _without_indexes_on_postgres(session, table, column, rows, total):
            yield
        return
    if rows < total * _REINDEX_SHARE:
        yield
        return
    indexes = [
        (name, sql)
        for name, sql in session.execute(
            text(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                "AND tbl_name = :table AND sql IS NOT NULL ORDER BY name"
            ),
            {"table": table},
        )
        if column
        in {info[2] for info in session.execute(text(f'PRAGMA index_info("{name}")')).fetchall()}
    ]
    for name, _sql in indexes:
        session.execute(text(f'DROP INDEX "{name}"'))
    try:
        yield
    finally:
        # Also after a failed statement (SQLite undoes just that statement), so that a
        # caller who commits anyway keeps the schema.
        for _name, sql in indexes:
            session.execute(text(sql))


@contextmanager
def _without_indexes_on_postgres(
    session: Session, table: str, column: str, rows: int, total: int
) -> Iterator[None]:
    """On PostgreSQL, past ``_PG_REINDEX_SHARE``, drop the foreign keys and the plain
    (not unique) indexes on ``column`` for the duration, and add them again after.

    An update then changes no index on the column and checks no key row by row: the index
    is built again by one sort and each foreign key checked again by one join. Dropping
    them locks ``table`` (and the table a foreign key refers to) ``ACCESS EXCLUSIVE`` until
    the transaction ends, so other sessions wait to read them too (writers already wait).
    That lock is asked for first, waiting at most ``_PG_LOCK_WAIT``: a session that read
    the tables and now waits to write them (behind this rebuild's lock) would never let go
    of its read lock, a deadlock; then nothing is dropped and the update goes row by row.
    After an error the transaction is aborted and must roll back, which restores them.
    """
    if session.get_bind().dialect.name != "postgresql" or rows < total * _PG_REINDEX_SHARE:
        yield
        return
    where = {"table": table, "column": column}
    keys = session.execute(
        text(
            "SELECT quote_ident(k.conname), pg_get_constraintdef(k.oid), "
            "CAST(CAST(k.confrelid AS regclass) AS TEXT) FROM pg_constraint k "
            "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attname = :column "
            "WHERE k.conrelid = CAST(:table AS regclass) AND k.contype = 'f' "
            "AND a.attnum = ANY (k.conkey) ORDER BY k.conname"
        ),
        where,
    ).all()
    indexes = session.execute(
        text(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
            "pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attname = :column "
            "WHERE i.indrelid = CAST(:table AS regclass) AND a.attnum = ANY (i.indkey) "
            "AND NOT i.indisunique AND NOT i.indisexclusion ORDER BY c.relname"
        ),
        where,
    ).all()
    if not (keys or indexes) or not _locked_alone(
        session, [table, *(referred for _, _, referred in keys)]
    ):
        yield
        return
    # Through the DBAPI cursor: a definition may hold ``::`` casts, which ``text`` would take
    # for bound parameters.
    with _dbapi(session).cursor() as cursor:
        for name, _definition, _referred in keys:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        for name, _definition in indexes:
            cursor.execute(f"DROP INDEX {name}")
    yield
    with _dbapi(session).cursor() as cursor:
        for _name, definition in indexes:
            cursor.execute(definition)
        for name, definition, _referred in keys:
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")


def _locked_alone(session: Session, tables: Sequence[str]) -> bool:
    """Whether these PostgreSQL tables could be locked ``ACCESS EXCLUSIVE`` (then they are,
    until the transaction ends) within ``_PG_LOCK_WAIT``, a lock timeout or a deadlock
    undone by a savepoint."""
    try:
        with session.begin_nested():
            before = session.execute(text("SELECT current_setting('lock_timeout')")).scalar_one()
            session.execute(text(f"SELECT set_config('lock_timeout', '{_PG_LOCK_WAIT}', true)"))
            session.execute(
                text(f"LOCK TABLE {', '.join(sorted(set(tables)))} IN ACCESS EXCLUSIVE MODE")
            )
            session.execute(
                text("SELECT set_config('lock_timeout', :before, true)"), {"before": before}
            )
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) not in _LOCK_REFUSED:
            raise
        return False
    return True


def _row_estimate(session: Session, table: str) -> int:
    """A PostgreSQL table's rows: the planner's estimate, or a count when the table was
    never analysed (0 on SQLite, which does not ask)."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    found = session.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = CAST(:table AS regclass)"),
        {"table": table},
    ).scalar_one()
    if found < 0:
        found = session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    return int(found)


def _log_rows(
    session: Session, temp: str, action: str, reason: str, details: str, now: datetime
) -> int:
    """Merge-log rows for each (person, other) row of a temporary table."""
    result = session.execute(
        text(
            "INSERT INTO identity_merge_log (occurred_at, action, person_id, other_person_id, "
            f"reason, source_kind, source_ref, details) SELECT :now, '{action}', t.person, "
            f"t.other, {reason}, '{SOURCE_KIND}', NULL, {details} FROM {temp} t"
        ).bindparams(bindparam("now", value=now, type_=UTCDateTime()))
    )
    return int(cast(Any, result).rowcount)


def _write(session: Session, plan: GraphPlan, report: Progress) -> tuple[int, int]:
    """Apply the plan; the new person count and the merge-log rows written.

    The merge log gets its rows in the order merged, unmerged, split. The survivors'
    ``first_seen`` and ``last_seen`` are updated before the new persons are inserted, which
    take their ``last_seen`` from the person they came from (possibly such a survivor).
    """
    now = utcnow()
    postgres = session.get_bind().dialect.name == "postgresql"
    no_details = "CAST('{}' AS JSONB)" if postgres else "'{}'"
    json_object = "jsonb_build_object" if postgres else "json_object"

    temps: list[str] = []
    steps = 5
    report("writing", 0, steps)
    try:
        log_rows = 0
        if len(plan.merged_persons):
            temps.append("ichigen_rebuild_merges")
            _create_temp(
                session,
                temps[-1],
                {"other": plan.merged_persons, "person": plan.merge_survivors},
                key=True,
            )
            # A survivor was first seen when the first of its merged persons was.
            session.execute(
                text(
                    "UPDATE identity_persons SET first_seen = s.first_seen, "
                    "last_seen = s.last_seen FROM (SELECT g.person AS id, "
                    "min(p.first_seen) AS first_seen, max(p.last_seen) AS last_seen FROM "
                    "(SELECT person, other AS member FROM ichigen_rebuild_merges UNION ALL "
                    "SELECT person, person AS member FROM ichigen_rebuild_merges) g "
                    "JOIN identity_persons p ON p.id = g.member GROUP BY g.person) s "
                    "WHERE identity_persons.id = s.id"
                )
            )
            log_rows += _log_rows(
                session,
                "ichigen_rebuild_merges",
                "merged",
                "'rebuild: connected by the active edges to person ' || CAST(t.person AS TEXT)",
                no_details,
                now,
            )
        report("writing", 1, steps)

        new_ids = _new_person_ids(session, len(plan.new_person_formers))
        if len(new_ids):
            temps.append("ichigen_rebuild_new")
            _create_temp(
                session,
                temps[-1],
                {
                    "other": new_ids,
                    "person": plan.new_person_formers,
                    "oldest": plan.new_person_oldest,
                },
                key=True,
            )
            # A split-off person was first seen with its oldest identifier, and last seen
            # when the person it came from was (as unmerge does).
            session.execute(
                text(
                    "INSERT INTO identity_persons (id, created_at, first_seen, last_seen) "
                    "SELECT n.other, :now, i.created_at, f.last_seen FROM ichigen_rebuild_new n "
                    "JOIN identity_identifiers i ON i.id = n.oldest "
                    "JOIN identity_persons f ON f.id = n.person"
                ).bindparams(bindparam("now", value=now, type_=UTCDateTime()))
            )
            log_rows += _log_rows(
                session,
                "ichigen_rebuild_new",
                "unmerged",
                "'rebuild: identifiers not connected to the rest of person ' "
                "|| CAST(t.person AS TEXT)",
                no_details,
                now,
            )
        targets = plan.moved_targets.copy()
        negative = targets < 0
        targets[negative] = new_ids[-targets[negative] - 1]
        report("writing", 2, steps)

        if len(targets):
            temps.append("ichigen_rebuild_moves")
            _create_temp(
                session, temps[-1], {"id": plan.moved_identifier_ids, "person": targets}, key=True
            )
            with _without_indexes_on(
                session, "identity_identifiers", "person_id", len(targets), plan.identifiers
            ):
                _update_from(session, "identity_identifiers", "person_id", "ichigen_rebuild_moves")
        report("writing", 3, steps)

        if len(plan.pointer_persons):
            temps.append("ichigen_rebuild_pointers")
            _create_temp(
                session,
                temps[-1],
                {"id": plan.pointer_persons, "person": plan.pointer_targets},
                key=True,
            )
            with _without_indexes_on_postgres(
                session,
                "identity_persons",
                "merged_into",
                len(plan.pointer_persons),
                _row_estimate(session, "identity_persons"),
            ):
                _update_from(session, "identity_persons", "merged_into", "ichigen_rebuild_pointers")
        report("writing", 4, steps)

        if len(plan.reassigned_to):
            temps.append("ichigen_rebuild_reassigned")
            _create_temp(
                session,
                temps[-1],
                {
                    "person": plan.reassigned_to,
                    "other": plan.reassigned_from,
                    "identifiers": plan.reassigned_counts,
                },
                key=False,
            )
            log_rows += _log_rows(
                session,
                "ichigen_rebuild_reassigned",
                "split",
                "'rebuild: ' || CAST(t.identifiers AS TEXT) || ' identifier(s) connected "
                "to this person by the active edges'",
                f"{json_object}('identifiers', t.identifiers)",
                now,
            )
        report("writing", 5, steps)
    finally:
        _drop_temp(session, temps)
    session.flush()
    return len(new_ids), log_rows


def rebuild_graph(
    session: Session, *, progress: Progress | None = None, dry_run: bool = False
) -> RebuildResult:
    """Recompute every person's identifiers from the active edges and write what differs.

    Each connected component of the active edges becomes one person's identifiers: an
    existing survivor's when it already is, else by the rules in this module's docstring
    (oldest person survives a merge, the component of a person's oldest identifier keeps
    its id, other components get new persons). Changes are written set-based in the
    caller's transaction (the caller commits) and logged to the merge log with
    ``source_kind="rebuild"``; with ``dry_run`` nothing is written. Other writers to the
    identity tables wait until the transaction ends.
    """
    report = progress or _no_progress
    _lock(session, dry_run)
    with _large_memory(session):
        plan, seconds = plan_graph(session, report)
        new_persons = len(plan.new_person_formers)
        log_rows = len(plan.merged_persons) + new_persons + len(plan.reassigned_to)
        started = time.perf_counter()
        if not dry_run and (len(plan.moved_identifier_ids) or len(plan.pointer_persons)):
            new_persons, log_rows = _write(session, plan, report)
        seconds["write"] = time.perf_counter() - started
    survivors_touched = len(np.unique(plan.merge_survivors))
    rows_written = (
        len(plan.moved_identifier_ids)
        + new_persons
        + len(plan.pointer_persons)
        + survivors_touched
        + log_rows
    )
    return RebuildResult(
        identifiers=plan.identifiers,
        edges=plan.edges,
        components=plan.components,
        persons_unchanged=plan.clean_components,
        persons_merged=len(plan.merged_persons),
        persons_split=len(np.unique(plan.new_person_formers)),
        persons_created=new_persons,
        identifiers_moved=len(plan.moved_identifier_ids),
        pointers_changed=len(plan.pointer_persons),
        merge_log_rows=log_rows,
        rows_written=rows_written,
        dry_run=dry_run,
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )
