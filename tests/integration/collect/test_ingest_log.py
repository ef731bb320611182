"""The event store's ingest log: acknowledged writes are durable in the log before DuckDB
holds them, reads see them at once, and a store opened after a crash loads what it lacks."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from ichigen.collect.ingest_log import IngestLog, log_directory, read_segment, segments
from ichigen.collect.messages import Envelope, EventRow, Limits, normalise
from ichigen.collect.store import (
    EVENT_SCHEMA,
    DuckDBEventStore,
    EventFilter,
    FailedRow,
    rows_to_arrow,
)
from ichigen.collect.store_process import LoadPolicy, ProcessEventStore

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
#: Nothing is loaded into DuckDB unless a read asks (or the store closes).
ONLY_ON_READ = LoadPolicy(rows=10**9, seconds=3600.0)


def track(user: str, minute: int, **properties: object) -> EventRow:
    at = T0 + timedelta(minutes=minute)
    made, problems = normalise(
        {
            "type": "track",
            "userId": user,
            "event": "Viewed",
            "messageId": f"{user}-{minute}",
            "timestamp": at.isoformat(),
            "properties": properties,
        },
        Envelope(source_id=1, received_at=at),
        Limits(),
    )
    assert made is not None, problems
    return made


def table(*rows: EventRow) -> pa.Table:
    return rows_to_arrow(list(rows))


def bad_failed(reason: str) -> FailedRow:
    return FailedRow(1, T0, reason, [{"loc": ["event"], "msg": "required"}], {"type": "track"})


def test_records_read_back_in_order_and_a_record_cut_short_is_left_out(tmp_path: Path) -> None:
    directory = tmp_path / "events.duckdb.ingest"
    writer = IngestLog(directory, next_number=7)
    assert writer.append([bad_failed("event: is required")], None) == 7
    assert writer.append([], table(track("u1", 1), track("u1", 2))) == 8
    writer.append([], table(track("u2", 3)))
    writer.close()
    [segment] = segments(directory)
    records = list(read_segment(segment))
    assert [r.number for r in records] == [7, 8, 9]
    assert records[0].rows is None and records[0].failed[0][2] == "event: is required"
    assert records[0].failed[0][1] == T0
    assert records[1].rows is not None and records[1].rows.column("message_id").to_pylist() == [
        "u1-1",
        "u1-2",
    ]
    # A crash in the middle of the last record (never acknowledged): the others still read.
    size = segment.stat().st_size
    with segment.open("r+b") as handle:
        handle.truncate(size - 10)
    assert [r.number for r in read_segment(segment)] == [7, 8]
    # A damaged record stops the reading of its segment there.
    data = bytearray(segment.read_bytes())
    data[40] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert [r.number for r in read_segment(segment)] == []


def test_a_store_opened_after_a_crash_loads_what_it_lacks_once(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    store = DuckDBEventStore(path)
    store.append_table(table(track("u1", 1)), [], log_number=4)  # records 1-4 are in already
    store.close()
    writer = IngestLog(log_directory(path), next_number=3)
    writer.append([], table(track("u1", 0)))  # 3: loaded before the crash
    writer.append([], table(track("u1", 1)))  # 4: loaded before the crash
    writer.append([bad_failed("event: is required")], table(track("u1", 2)))
    writer.rotate()  # a second segment, as after a load
    writer.append([], table(track("u2", 3), track("u2", 4)))
    writer.close()
    assert len(segments(log_directory(path))) == 2

    reopened = DuckDBEventStore(path)
    try:
        assert reopened.count() == 4  # u1-1 once, u1-2, u2-3, u2-4
        assert reopened.ingest_log_number() == 6
        assert reopened.failed(None, None, 10, None)[0]["reason"] == "event: is required"
        assert segments(log_directory(path)) == []
    finally:
        reopened.close()
    again = DuckDBEventStore(path)
    try:
        assert again.count() == 4
    finally:
        again.close()


def test_reads_see_every_acknowledged_write_before_it_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    store = ProcessEventStore(path, load_policy=ONLY_ON_READ)
    try:
        store.append([track("u1", m) for m in range(3)], [])
        assert segments(log_directory(path))  # in the log, not yet in DuckDB
        assert [e["message_id"] for e in store.find(EventFilter(user_id="u1"), 10).events] == [
            "u1-2",
            "u1-1",
            "u1-0",
        ]
        assert segments(log_directory(path)) == []  # the read had them loaded
        store.append([track("u1", 3)], [])
        assert store.count() == 4
    finally:
        store.close()


def test_acknowledged_writes_survive_the_store_process_being_killed(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    store = ProcessEventStore(path, load_policy=ONLY_ON_READ)
    try:
        for minute in range(20):
            store.append([track("u1", minute)], [])
        store.append([], [bad_failed("event: is required")])
        assert segments(log_directory(path))
        pid = store._process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        store._process.join(timeout=30)
    finally:
        store.close()
    reopened = DuckDBEventStore(path)
    try:
        assert reopened.count() == 20
        assert len(reopened.failed(None, None, 10, None)) == 1
    finally:
        reopened.close()
    # The next store process numbers its records after those already loaded.
    store = ProcessEventStore(path, load_policy=ONLY_ON_READ)
    try:
        store.append([track("u2", 1)], [])
        assert store.count() == 21
    finally:
        store.close()


def test_rows_the_store_refuses_are_refused_before_they_are_acknowledged(
    tmp_path: Path,
) -> None:
    store = ProcessEventStore(tmp_path / "events.duckdb", load_policy=ONLY_ON_READ)
    try:
        no_type = table(track("u1", 1)).set_column(
            EVENT_SCHEMA.get_field_index("type"), "type", pa.array([None], pa.string())
        )
        refused = store.submit(no_type, [])
        taken = store.submit(table(track("u1", 2)), [])
        assert refused.done.wait(30) and taken.done.wait(30)
        assert refused.outcome.error is not None and "NOT NULL" in refused.outcome.error
        assert taken.outcome.error is None
        assert store.count() == 1
    finally:
        store.close()


def test_an_acknowledged_record_the_store_still_refuses_is_kept_as_a_failed_event(
    tmp_path: Path,
) -> None:
    store = ProcessEventStore(tmp_path / "events.duckdb", load_policy=ONLY_ON_READ)
    try:
        # Not JSON, which the event store's JSON column refuses when the log is loaded.
        broken = table(track("u1", 1)).set_column(
            EVENT_SCHEMA.get_field_index("properties"),
            "properties",
            pa.array(["{not json"], pa.string()),
        )
        first = store.submit(broken, [])
        assert first.done.wait(30) and first.outcome.error is None
        second = store.submit(table(track("u1", 2)), [])
        assert second.done.wait(30) and second.outcome.error is None
        # Loaded together, the two fail; one by one, the good one is stored and the other
        # kept, with why, among the failed events (to be replayed after a fix).
        assert [e["message_id"] for e in store.find(EventFilter(), 10).events] == ["u1-2"]
        [kept] = store.failed(None, None, 10, None)
        assert kept["reason"].startswith("acknowledged, but the event store refused it")
        assert kept["payload"]["message_id"] == "u1-1"
        assert kept["payload"]["properties"] == "{not json"
        store.append([track("u1", 3)], [])
        assert store.count() == 2
    finally:
        store.close()


def test_a_write_the_log_cannot_take_is_refused_and_the_next_ones_go_on(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    store = ProcessEventStore(path, load_policy=ONLY_ON_READ)
    try:
        store.append([track("u1", 1)], [])
        assert store.count() == 1  # loaded: the log has no segment open
        directory = log_directory(path)
        directory.rmdir()
        directory.write_text("not a directory")  # the next segment cannot be created
        refused = store.submit(table(track("u1", 2)), [])
        assert refused.done.wait(30)
        assert refused.outcome.error is not None
        assert refused.outcome.error.startswith("the ingest log could not be written")
        directory.unlink()
        directory.mkdir()
        store.append([track("u1", 3)], [])
        assert [e["message_id"] for e in store.find(EventFilter(), 10).events] == ["u1-3", "u1-1"]
    finally:
        store.close()
