"""The event store: append-only, columnar, embedded DuckDB by default.

``EventStore`` is the seam; ``DuckDBEventStore`` is the embedded engine. Events keep their
identifiers in typed columns (``user_id``, ``anonymous_id``, and ``person_id``, empty until
identity resolution fills it) with hashed keys of the identifiers under ART indexes, so one
person's events are found without scanning the table. Properties, traits, context,
integrations and consent are JSON. Failed events (messages rejected with a reason) live in
the same file, written in the same commit as the accepted ones.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.dataset as ds

from ichigen.collect import ingest_log
from ichigen.collect.messages import EVENT_COLUMNS, EventRow

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TS = pa.timestamp("us", tz="UTC")

#: Arrow schema of rows handed to ``append`` (the same order as ``EVENT_COLUMNS``).
EVENT_SCHEMA = pa.schema(
    [
        ("source_id", pa.int64()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("name", pa.string()),
        ("category", pa.string()),
        ("message_id", pa.string()),
        ("message_hash", pa.int64()),
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("group_id", pa.string()),
        ("previous_id", pa.string()),
        ("person_id", pa.string()),
        ("timestamp", _TS),
        ("original_timestamp", _TS),
        ("sent_at", _TS),
        ("received_at", _TS),
        ("properties", pa.string()),
        ("traits", pa.string()),
        ("context", pa.string()),
        ("integrations", pa.string()),
        ("consent", pa.string()),
    ]
)
assert tuple(EVENT_SCHEMA.names) == EVENT_COLUMNS

_JSON_COLUMNS = ("properties", "traits", "context", "integrations", "consent")
#: Columns the event store requires a value in (NOT NULL).
_REQUIRED_COLUMNS = ("source_id", "type", "message_id", "message_hash", "timestamp", "received_at")
_TIME_COLUMNS = ("timestamp", "original_timestamp", "sent_at", "received_at")

_DDL = (
    """
    CREATE TABLE IF NOT EXISTS events (
        source_id BIGINT NOT NULL,
        type VARCHAR NOT NULL,
        event VARCHAR,
        name VARCHAR,
        category VARCHAR,
        message_id VARCHAR NOT NULL,
        message_hash BIGINT NOT NULL,
        user_id VARCHAR,
        anonymous_id VARCHAR,
        group_id VARCHAR,
        previous_id VARCHAR,
        person_id VARCHAR,
        timestamp TIMESTAMPTZ NOT NULL,
        original_timestamp TIMESTAMPTZ,
        sent_at TIMESTAMPTZ,
        received_at TIMESTAMPTZ NOT NULL,
        properties JSON,
        traits JSON,
        context JSON,
        integrations JSON,
        consent JSON,
        user_key UBIGINT,
        anonymous_key UBIGINT
    )
    """,
    "CREATE INDEX IF NOT EXISTS ix_events_user_key ON events (user_key)",
    "CREATE INDEX IF NOT EXISTS ix_events_anonymous_key ON events (anonymous_key)",
    "CREATE SEQUENCE IF NOT EXISTS failed_event_ids START 1",
    # The number of the last ingest-log record whose rows this file holds (ingest_log.py).
    "CREATE TABLE IF NOT EXISTS ingest_log_state (last_number BIGINT NOT NULL)",
    "INSERT INTO ingest_log_state (last_number) SELECT 0 "
    "WHERE NOT EXISTS (SELECT 1 FROM ingest_log_state)",
    # The file's own id, in the names of its log's segments: a log is only loaded into the
    # file it was written for, not into a new file put in its place.
    "ALTER TABLE ingest_log_state ADD COLUMN IF NOT EXISTS store_id VARCHAR",
    """
    CREATE TABLE IF NOT EXISTS failed_events (
        id BIGINT PRIMARY KEY DEFAULT nextval('failed_event_ids'),
        source_id BIGINT NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        reason VARCHAR NOT NULL,
        problems JSON NOT NULL,
        payload JSON NOT NULL,
        status VARCHAR NOT NULL DEFAULT 'failed',
        replayed_at TIMESTAMPTZ,
        replayed_message_id VARCHAR
    )
    """,
)

_INSERT_EVENTS = (
    "INSERT INTO events SELECT *, "
    "CASE WHEN user_id IS NULL THEN NULL ELSE hash(user_id) END, "
    "CASE WHEN anonymous_id IS NULL THEN NULL ELSE hash(anonymous_id) END "
    "FROM incoming_events"
)
_EVENT_FIELDS = ", ".join(
    f"epoch_us({c}) AS {c}" if c in _TIME_COLUMNS else c
    for c in EVENT_COLUMNS
    if c != "message_hash"
)


#: Errors of the machine, not of the rows: a load that meets one can succeed later.
TRANSIENT_ERRORS = (duckdb.IOException, duckdb.OutOfMemoryException, OSError, MemoryError)


@dataclass(frozen=True, slots=True)
class FailedRow:
    """A message rejected at ingestion, kept with why."""

    source_id: int
    received_at: datetime
    reason: str
    problems: list[dict[str, Any]]
    payload: Any


#: An ingest-log record as loaded: its number, its rows, its failed messages.
LogBatchRecord = tuple[int, "pa.Table | None", list[FailedRow]]


@dataclass(frozen=True, slots=True)
class EventFilter:
    """What to select from the store; every field is optional."""

    source_id: int | None = None
    type: str | None = None
    event: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    properties: tuple[tuple[str, str], ...] = ()
    #: keyset cursor: events strictly older than (timestamp in µs, message hash)
    before: tuple[int, int] | None = None
    #: one person's events: those with any of these user ids or anonymous ids
    user_ids: tuple[str, ...] = ()
    anonymous_ids: tuple[str, ...] = ()


@dataclass(slots=True)
class EventPage:
    events: list[dict[str, Any]] = field(default_factory=list)
    #: (timestamp µs, message hash) of the last event, when there may be more
    next_before: tuple[int, int] | None = None


class EventStore(Protocol):
    """Where accepted events and failed messages are kept."""

    def append(self, rows: Sequence[EventRow], failed: Sequence[FailedRow]) -> None: ...

    def append_table(self, table: pa.Table | None, failed: Sequence[FailedRow]) -> None: ...

    def message_hashes(self) -> np.ndarray[Any, np.dtype[np.int64]]: ...

    def find(self, where: EventFilter, limit: int) -> EventPage: ...

    def daily_counts(
        self, since: datetime, until: datetime, source_id: int | None
    ) -> list[tuple[date, str, int]]: ...

    def count(self, source_id: int | None = None) -> int: ...

    def delete_older_than(self, source_id: int, cutoff: datetime) -> int: ...

    def failed(
        self, source_id: int | None, status: str | None, limit: int, before_id: int | None
    ) -> list[dict[str, Any]]: ...

    def failed_one(self, failed_id: int) -> dict[str, Any] | None: ...

    def mark_replayed(self, failed_id: int, message_id: str, at: datetime) -> None: ...

    def reassign_person(
        self, user_ids: Sequence[str], anonymous_ids: Sequence[str], person_id: str
    ) -> int: ...

    def delete_anonymous(self, anonymous_ids: Sequence[str], before: datetime) -> int: ...

    def export_parquet(
        self, directory: Path, since: datetime | None, until: datetime | None
    ) -> int: ...

    def close(self) -> None: ...


def to_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int | None) -> datetime | None:
    return None if micros is None else EPOCH + timedelta(microseconds=micros)


#: Columns that are often the same for every row of a request (one source, one arrival).
_OFTEN_CONSTANT = frozenset({EVENT_COLUMNS.index("source_id"), EVENT_COLUMNS.index("received_at")})


def rows_problem(table: pa.Table | None) -> str | None:
    """Why the event store would refuse these rows (None: it takes them): checked before a
    write is acknowledged, when the rows only reach DuckDB later (``ingest_log.py``)."""
    if table is None:
        return None
    if not table.schema.equals(EVENT_SCHEMA, check_metadata=False):
        return f"the rows do not have the event store's columns: {table.schema.names}"
    for name in _REQUIRED_COLUMNS:
        missing = table.column(name).null_count
        if missing:
            return f"{missing} rows have no {name}, which is NOT NULL in the event store"
    return None


def rows_to_arrow(rows: Sequence[EventRow]) -> pa.Table:
    """Event rows (tuples in ``EVENT_COLUMNS`` order) as one Arrow table."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in EVENT_COLUMNS]
    arrays = []
    for index, column in enumerate(columns):
        kind = EVENT_SCHEMA.field(index).type
        if index in _OFTEN_CONSTANT and column and column.count(column[0]) == len(column):
            arrays.append(pa.repeat(pa.scalar(column[0], type=kind), len(column)))
        else:
            arrays.append(pa.array(column, type=kind))
    return pa.Table.from_arrays(arrays, schema=EVENT_SCHEMA)


class DuckDBEventStore:
    """The embedded event store: one DuckDB file, written by one connection.

    Appends come from one writer (the collector's commit thread, or an import); reads run on
    their own cursors, concurrently with writes, each seeing the last committed state.
    """

    def __init__(self, path: Path | str, *, memory_limit: str = "50%") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(self.path, config={"memory_limit": memory_limit})
        except duckdb.IOException as exc:
            raise EventStoreBusy(
                f"The event store {self.path} is in use by another process (a running "
                "`ichigen serve`?). Stop it, or send the data through the API."
            ) from exc
        self._con.execute("SET TimeZone = 'UTC'")
        # A checkpoint every 16 MB of log (the default) came about once a second under load
        # and cost more than the commits between; fewer, larger ones (bench/ingest.py).
        self._con.execute("SET checkpoint_threshold = '256MB'")
        for statement in _DDL:
            self._con.execute(statement)
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        found = self._con.execute("SELECT store_id FROM ingest_log_state").fetchone()
        #: this file's id ("" only until a new or older file is given one, just below)
        self.store_id: str = found[0] if found and found[0] else ""
        if self.path != ":memory:":
            self.replay_ingest_log()
        if not self.store_id:
            self.store_id = uuid.uuid4().hex
            self._con.execute("UPDATE ingest_log_state SET store_id = ?", [self.store_id])

    # ------------------------------------------------------------------ writes

    def append(self, rows: Sequence[EventRow], failed: Sequence[FailedRow]) -> None:
        """Write accepted events and failed messages in one transaction (durable on return)."""
        self.append_table(rows_to_arrow(rows) if rows else None, failed)

    def append_table(
        self,
        table: pa.Table | None,
        failed: Sequence[FailedRow],
        *,
        log_number: int | None = None,
    ) -> None:
        """``append`` for rows already in an Arrow table of ``EVENT_SCHEMA``; with
        ``log_number``, they are the ingest log's records up to that one."""
        with self._write_lock:
            con = self._con
            con.execute("BEGIN")
            try:
                if log_number is not None:
                    con.execute("UPDATE ingest_log_state SET last_number = ?", [log_number])
                if table is not None and table.num_rows:
                    # Read by DuckDB from this frame's variable (a replacement scan): a third
                    # cheaper per commit than registering the table as a view and dropping it.
                    incoming_events = table  # noqa: F841
                    con.execute(_INSERT_EVENTS)
                if failed:
                    con.executemany(
                        "INSERT INTO failed_events (source_id, received_at, reason, problems, "
                        "payload) VALUES (?, make_timestamptz(?), ?, ?, ?)",
                        [
                            (
                                f.source_id,
                                to_micros(f.received_at),
                                f.reason,
                                orjson.dumps(f.problems).decode(),
                                orjson.dumps(f.payload, default=str).decode(),
                            )
                            for f in failed
                        ],
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def ingest_log_number(self) -> int:
        """The number of the last ingest-log record this file holds (0: none yet)."""
        found = self._con.execute("SELECT last_number FROM ingest_log_state").fetchone()
        return int(found[0]) if found else 0

    def load_log_records(self, records: Sequence[LogBatchRecord]) -> None:
        """Load ingest-log records (number, rows, failed messages), in order, in one
        transaction; those this file holds already are skipped. If DuckDB refuses them for
        what they hold (not for a fault of the machine, which is raised), each record is
        loaded on its own, and the rows of one still refused are kept as failed events with
        the reason: acknowledged, they must not be lost, nor stop the records after them."""
        done = self.ingest_log_number()
        records = [record for record in records if record[0] > done]
        if not records:
            return
        try:
            self._append_records(records)
            return
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            log.exception("loading the ingest log failed; loading its records one by one")
        for record in records:
            try:
                self._append_records([record])
            except TRANSIENT_ERRORS:
                raise
            except Exception as exc:
                number, table, failed = record
                log.exception("ingest log record %d could not be stored as events", number)
                reason = (
                    f"acknowledged, but the event store refused it: {type(exc).__name__}: {exc}"
                )
                kept = [
                    FailedRow(
                        row["source_id"] or 0,
                        row["received_at"] or datetime.now(UTC),
                        reason,
                        [],
                        {k: v for k, v in row.items() if v is not None},
                    )
                    for row in ([] if table is None else table.to_pylist())
                ]
                self.append_table(None, [*failed, *kept], log_number=number)

    def _append_records(self, records: Sequence[LogBatchRecord]) -> None:
        tables = [table for _, table, _ in records if table is not None]
        self.append_table(
            pa.concat_tables(tables) if tables else None,
            [row for _, _, failed in records for row in failed],
            log_number=records[-1][0],
        )

    def replay_ingest_log(self, max_rows: int = 50_000) -> int:
        """Load the ingest log's records that this file does not hold yet (writes that were
        acknowledged before a crash), then remove the log's segments. Segments written for
        another store file, and damaged ones, are moved aside and reported, never loaded
        or removed. Returns how many rows came back."""
        directory = ingest_log.log_directory(self.path)
        found = ingest_log.segments(directory)
        if not found:
            return 0
        own: list[Path] = []
        for segment in found:
            named = ingest_log.segment_name_id(segment)
            # A file that has no id yet takes the segments named without one (a log from
            # before segments carried it); a file with one takes only its own.
            if named == self.store_id or (not self.store_id and named is None):
                own.append(segment)
            else:
                moved = ingest_log.set_aside(segment, ingest_log.FOREIGN)
                log.error(
                    "event store %s: ingest log segment %s was written for another store "
                    "file; not loaded, moved to %s",
                    self.path,
                    segment.name,
                    moved,
                )
        done = self.ingest_log_number()
        chunk: list[LogBatchRecord] = []
        rows = replayed = 0
        damaged: list[Path] = []
        expected = done + 1
        for segment in own:
            try:
                for record in ingest_log.read_segment(segment, newest=segment == own[-1]):
                    if record.number <= done:
                        continue
                    if record.number > expected:
                        self._report_gap(expected, record.number, first=expected == done + 1)
                    expected = record.number + 1
                    failed = [FailedRow(*fields) for fields in record.failed]
                    chunk.append((record.number, record.rows, failed))
                    rows += 0 if record.rows is None else record.rows.num_rows
                    if rows >= max_rows:
                        self.load_log_records(chunk)
                        replayed += rows
                        chunk, rows = [], 0
            except ingest_log.DamagedSegment as exc:
                damaged.append(segment)
                log.error("event store %s: %s; the records after it are lost", self.path, exc)
        if chunk:
            self.load_log_records(chunk)
            replayed += rows
        for segment in damaged:
            moved = ingest_log.set_aside(segment, ingest_log.DAMAGED)
            log.error("event store %s: damaged ingest log kept at %s", self.path, moved)
        ingest_log.remove_segments([segment for segment in own if segment not in damaged])
        if replayed or self.ingest_log_number() > done:
            log.warning(
                "event store %s: %d events of acknowledged writes loaded from its ingest log",
                self.path,
                replayed,
            )
        return replayed

    def _report_gap(self, expected: int, found: int, *, first: bool) -> None:
        """Records ``expected`` to ``found - 1`` are not in the log. Between the file and its
        log (``first``): the file is older than the log, put back from a backup? Between
        segments: a write that failed (and was answered with an error), or a segment gone."""
        log.log(
            logging.ERROR if first else logging.WARNING,
            "event store %s: ingest log records %d to %d are not in the log (%s); loading the "
            "records after them",
            self.path,
            expected,
            found - 1,
            "is the store file older than its log, put back from a backup?"
            if first
            else "a write that failed, or a segment removed",
        )

    def delete_older_than(self, source_id: int, cutoff: datetime) -> int:
        with self._write_lock:
            found = self._con.execute(
                "DELETE FROM events WHERE source_id = ? AND timestamp < make_timestamptz(?)",
                [source_id, to_micros(cutoff)],
            ).fetchone()
            return int(found[0]) if found else 0

    def mark_replayed(self, failed_id: int, message_id: str, at: datetime) -> None:
        with self._write_lock:
            self._con.execute(
                "UPDATE failed_events SET status = 'replayed', replayed_at = make_timestamptz(?), "
                "replayed_message_id = ? WHERE id = ?",
                [to_micros(at), message_id, failed_id],
            )

    def delete_anonymous(self, anonymous_ids: Sequence[str], before: datetime) -> int:
        """Delete the events older than ``before`` that carry one of these anonymous ids and
        no user id: what an anonymous visitor's profile leaves in the store when it is
        removed (an event with a user id belongs to someone identified, and stays; a newer
        one is a visit since). One indexed delete per id, each its own statement, so that
        loading the ingest log is never held up for long. Returns how many."""
        removed = 0
        cutoff = to_micros(before)
        for value in anonymous_ids:
            with self._write_lock:
                found = self._con.execute(
                    "DELETE FROM events WHERE anonymous_key = hash(?::VARCHAR) "
                    "AND anonymous_id = ? AND user_id IS NULL "
                    "AND timestamp < make_timestamptz(?)",
                    [value, value, cutoff],
                ).fetchone()
            removed += int(found[0]) if found else 0
        return removed

    def reassign_person(
        self, user_ids: Sequence[str], anonymous_ids: Sequence[str], person_id: str
    ) -> int:
        """Set the person of the events carrying these identifiers (after an unmerge moved
        them to another person): one indexed update per identifier. Returns how many."""
        changed = 0
        with self._write_lock:
            for key, column, values in (
                ("user_key", "user_id", user_ids),
                ("anonymous_key", "anonymous_id", anonymous_ids),
            ):
                for value in values:
                    found = self._con.execute(
                        f"UPDATE events SET person_id = ? WHERE {key} = hash(?::VARCHAR) "
                        f"AND {column} = ? AND person_id IS DISTINCT FROM ?",
                        [person_id, value, value, person_id],
                    ).fetchone()
                    changed += int(found[0]) if found else 0
        return changed

    # ------------------------------------------------------------------ reads

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._con.cursor()
            cursor.execute("SET TimeZone = 'UTC'")
            # One person's events come from an index up to this many rows (default 2,048).
            cursor.execute("SET index_scan_max_count = 100000")
            self._local.cursor = cursor
            with self._write_lock:
                self._cursors.append(cursor)
        return cursor

    def message_hashes(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        """Every stored event's de-duplication key, sorted."""
        found = self._cursor().execute("SELECT message_hash FROM events").fetchnumpy()
        hashes = np.asarray(found["message_hash"], dtype=np.int64)
        hashes.sort()
        return hashes

    def count(self, source_id: int | None = None) -> int:
        if source_id is None:
            found = self._cursor().execute("SELECT count(*) FROM events").fetchone()
        else:
            found = (
                self._cursor()
                .execute("SELECT count(*) FROM events WHERE source_id = ?", [source_id])
                .fetchone()
            )
        return int(found[0]) if found else 0

    def find(self, where: EventFilter, limit: int) -> EventPage:
        """Events matching ``where``, newest first, at most ``limit``.

        With ``user_id`` or ``anonymous_id`` the identifier's index finds the candidate rows
        first, so one person's events come back without a scan of the table.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if where.user_id is not None:
            clauses.append("user_id = ?")
            params.append(where.user_id)
        if where.anonymous_id is not None:
            clauses.append("anonymous_id = ?")
            params.append(where.anonymous_id)
        if where.source_id is not None:
            clauses.append("source_id = ?")
            params.append(where.source_id)
        if where.type is not None:
            clauses.append("type = ?")
            params.append(where.type)
        if where.event is not None:
            clauses.append("event = ?")
            params.append(where.event)
        if where.since is not None:
            clauses.append("timestamp >= make_timestamptz(?)")
            params.append(to_micros(where.since))
        if where.until is not None:
            clauses.append("timestamp < make_timestamptz(?)")
            params.append(to_micros(where.until))
        for key, value in where.properties:
            clauses.append("json_extract_string(properties, ?) = ?")
            params.extend([json_path(key), value])
        if where.before is not None:
            clauses.append(
                "(epoch_us(timestamp) < ? OR (epoch_us(timestamp) = ? AND message_hash < ?))"
            )
            params.extend([where.before[0], where.before[0], where.before[1]])
        source = "events"
        key_column = "user_key"
        key_params: list[Any] = []
        candidates = ""
        if where.user_ids or where.anonymous_ids:
            candidates, key_params = _person_candidates(where.user_ids, where.anonymous_ids)
            source = "candidates"
        elif where.user_id is not None or where.anonymous_id is not None:
            # Materialised, the identifier's rows come from its ART index; a top-N over the
            # whole table would scan it instead.
            if where.user_id is None:
                key_column = "anonymous_key"
            key_params.append(where.user_id if where.user_id is not None else where.anonymous_id)
            source = "candidates"
            candidates = (
                "WITH candidates AS MATERIALIZED (SELECT * FROM events "
                f"WHERE {key_column} = hash(?::VARCHAR)) "
            )
        sql = (
            candidates
            + f"SELECT {_EVENT_FIELDS}, message_hash FROM {source}"
            + (" WHERE " + " AND ".join(clauses) if clauses else "")
            + " ORDER BY timestamp DESC, message_hash DESC LIMIT ?"
        )
        params = key_params + params
        params.append(limit + 1)
        result = self._cursor().execute(sql, params)
        names = [d[0] for d in result.description or []]
        raw = result.fetchall()
        page = EventPage()
        for values in raw[:limit]:
            page.events.append(_event_dict(dict(zip(names, values, strict=True))))
        if len(raw) > limit and raw[:limit]:
            last = dict(zip(names, raw[limit - 1], strict=True))
            page.next_before = (int(last["timestamp"]), int(last["message_hash"]))
        return page

    def daily_counts(
        self, since: datetime, until: datetime, source_id: int | None
    ) -> list[tuple[date, str, int]]:
        """Events per UTC day and event name (the type for calls other than track)."""
        sql = (
            "SELECT CAST(timestamp AS DATE) AS day, coalesce(event, type) AS name, count(*) "
            "FROM events WHERE timestamp >= make_timestamptz(?) AND timestamp < "
            "make_timestamptz(?)"
        )
        params: list[Any] = [to_micros(since), to_micros(until)]
        if source_id is not None:
            sql += " AND source_id = ?"
            params.append(source_id)
        sql += " GROUP BY ALL ORDER BY day, name"
        return [
            (row[0], str(row[1]), int(row[2]))
            for row in self._cursor().execute(sql, params).fetchall()
        ]

    def failed(
        self, source_id: int | None, status: str | None, limit: int, before_id: int | None
    ) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if source_id is not None:
            clauses.append("source_id = ?")
            params.append(source_id)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        sql = (
            "SELECT id, source_id, epoch_us(received_at) AS received_at, reason, problems, "
            "payload, status, epoch_us(replayed_at) AS replayed_at, replayed_message_id "
            "FROM failed_events"
            + (" WHERE " + " AND ".join(clauses) if clauses else "")
            + " ORDER BY id DESC LIMIT ?"
        )
        params.append(limit)
        return self._failed_rows(sql, params)

    def failed_one(self, failed_id: int) -> dict[str, Any] | None:
        found = self._failed_rows(
            "SELECT id, source_id, epoch_us(received_at) AS received_at, reason, problems, "
            "payload, status, epoch_us(replayed_at) AS replayed_at, replayed_message_id "
            "FROM failed_events WHERE id = ?",
            [failed_id],
        )
        return found[0] if found else None

    def _failed_rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        result = self._cursor().execute(sql, params)
        names = [d[0] for d in result.description or []]
        rows = []
        for values in result.fetchall():
            row = dict(zip(names, values, strict=True))
            row["received_at"] = from_micros(row["received_at"])
            row["replayed_at"] = from_micros(row["replayed_at"])
            row["problems"] = orjson.loads(row["problems"])
            row["payload"] = orjson.loads(row["payload"])
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ files

    def export_parquet(
        self, directory: Path, since: datetime | None = None, until: datetime | None = None
    ) -> int:
        """Write events as Parquet files partitioned by UTC day (``day=YYYY-MM-DD/``)."""
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("timestamp >= make_timestamptz(?)")
            params.append(to_micros(since))
        if until is not None:
            clauses.append("timestamp < make_timestamptz(?)")
            params.append(to_micros(until))
        columns = ", ".join(EVENT_COLUMNS)
        sql = (
            f"SELECT {columns}, strftime(timestamp, '%Y-%m-%d') AS day FROM events"
            + (" WHERE " + " AND ".join(clauses) if clauses else "")
            + " ORDER BY timestamp"
        )
        reader = self._cursor().sql(sql, params=params).to_arrow_reader(100_000)
        assert reader is not None
        written = 0

        def batches() -> Iterator[pa.RecordBatch]:
            nonlocal written
            for batch in reader:
                written += batch.num_rows
                yield batch

        directory.mkdir(parents=True, exist_ok=True)
        ds.write_dataset(
            batches(),
            directory,
            schema=reader.schema,
            format="parquet",
            partitioning=ds.partitioning(pa.schema([("day", pa.string())]), flavor="hive"),
            existing_data_behavior="overwrite_or_ignore",
            basename_template="events-{i}.parquet",
        )
        return written

    def close(self) -> None:
        with self._write_lock:
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
            self._con.close()
        self._local = threading.local()


def _person_candidates(
    user_ids: Sequence[str], anonymous_ids: Sequence[str]
) -> tuple[str, list[Any]]:
    """A materialised CTE of the events carrying any of these identifiers, each event once.

    One branch per identifier, so each comes from its index; an event with one of the user
    ids is taken by that branch only, not again by its anonymous id's.
    """
    branches: list[str] = []
    params: list[Any] = []
    for user_id in user_ids:
        branches.append("SELECT * FROM events WHERE user_key = hash(?::VARCHAR) AND user_id = ?")
        params.extend([user_id, user_id])
    taken = ", ".join("?" for _ in user_ids)
    for anonymous_id in anonymous_ids:
        branch = "SELECT * FROM events WHERE anonymous_key = hash(?::VARCHAR) AND anonymous_id = ?"
        params.extend([anonymous_id, anonymous_id])
        if user_ids:
            branch += f" AND (user_id IS NULL OR user_id NOT IN ({taken}))"
            params.extend(user_ids)
        branches.append(branch)
    return "WITH candidates AS MATERIALIZED (" + " UNION ALL ".join(branches) + ") ", params


class EventStoreBusy(Exception):
    """The embedded event store is open in another process."""


def read_parquet_export(directory: Path) -> Iterator[list[EventRow]]:
    """Rows of a Parquet export (ours, or any with the same columns), in batches."""
    dataset = ds.dataset(directory, format="parquet", partitioning="hive")
    for batch in dataset.to_batches(columns=list(EVENT_COLUMNS), batch_size=50_000):
        table = pa.Table.from_batches([batch]).cast(EVENT_SCHEMA)
        columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
        yield list(zip(*columns, strict=True))


def json_path(key: str) -> str:
    """A JSON path to a top-level or dotted property key, quoted so any key is safe."""
    return "$" + "".join("." + orjson.dumps(part).decode() for part in key.split("."))


def _event_dict(row: dict[str, Any]) -> dict[str, Any]:
    for name in _TIME_COLUMNS:
        row[name] = from_micros(row[name])
    for name in _JSON_COLUMNS:
        value = row[name]
        row[name] = orjson.loads(value) if value is not None else None
    row.pop("message_hash", None)
    return row
