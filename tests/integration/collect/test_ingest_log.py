"""The event store's ingest log: acknowledged writes are durable in the log before DuckDB
holds them, reads see them at once, and a store opened after a crash loads what it lacks."""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import struct
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry

from ichigen.collect import store_process
from ichigen.collect.ingest import CollectMetrics, Collector
from ichigen.collect.ingest_log import (
    DamagedSegment,
    IngestLog,
    log_directory,
    read_segment,
    segments,
    set_aside,
    set_aside_warnings,
)
from ichigen.collect.messages import Envelope, EventRow, Limits, normalise
from ichigen.collect.store import (
    EVENT_SCHEMA,
    DuckDBEventStore,
    EventFilter,
    FailedRow,
    LogBatchRecord,
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
    writer = IngestLog(directory, next_number=7, store_id="s1")
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
    # Space the file system gave a record cut short, zeros: also never acknowledged.
    header = struct.Struct("<4sQIII")
    ends = []
    data = segment.read_bytes()
    offset = 0
    while offset + header.size <= len(data):
        _, _, failed_size, rows_size, _ = header.unpack_from(data, offset)
        offset += header.size + failed_size + rows_size
        ends.append(offset)
    with segment.open("r+b") as handle:
        handle.truncate(ends[1])
        handle.seek(ends[1])
        handle.write(bytes(64))
    assert [r.number for r in read_segment(segment)] == [7, 8]
    # A complete record damaged on disk: the records before it read, then the damage is
    # reported (it was acknowledged), not taken for the end.
    damaged = bytearray(segment.read_bytes())
    damaged[ends[1] - 5] ^= 0xFF
    segment.write_bytes(bytes(damaged))
    read: list[int] = []
    with pytest.raises(DamagedSegment, match="record 8 does not match its checksum"):
        read.extend(r.number for r in read_segment(segment))
    assert read == [7]


def test_a_store_opened_after_a_crash_loads_what_it_lacks_once(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    store = DuckDBEventStore(path)
    store.append_table(table(track("u1", 1)), [], log_number=4)  # records 1-4 are in already
    store.close()
    writer = IngestLog(log_directory(path), next_number=3, store_id=store.store_id)
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


def broken(minute: int) -> pa.Table:
    """A write whose properties are not JSON: DuckDB refuses it only when it is loaded."""
    return table(track("u1", minute)).set_column(
        EVENT_SCHEMA.get_field_index("properties"), "properties", pa.array(["{x"], pa.string())
    )


def test_a_record_the_store_refuses_does_not_keep_it_from_opening_after_a_crash(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.duckdb"
    store = ProcessEventStore(path, load_policy=ONLY_ON_READ)
    try:
        refused_later = store.submit(broken(1), [])
        assert refused_later.done.wait(30) and refused_later.outcome.error is None
        store.append([track("u1", 2)], [])
        pid = store._process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        store._process.join(timeout=30)
    finally:
        store.close()
    reopened = DuckDBEventStore(path)
    try:
        assert [e["message_id"] for e in reopened.find(EventFilter(), 10).events] == ["u1-2"]
        [kept] = reopened.failed(None, None, 10, None)
        assert kept["payload"]["message_id"] == "u1-1"
    finally:
        reopened.close()


#: What a store's load of the ingest log meets, given the rows and the last record's number.
Fault = Callable[[pa.Table | None, int], Exception | None]


class _Faulty(DuckDBEventStore):
    """A store whose loads of the ingest log meet the error ``fault`` returns (a fault of
    the machine, in these tests); none while it is unset."""

    fault: Fault | None = None

    def append_table(
        self, table: pa.Table | None, failed: Sequence[FailedRow], *, log_number: int | None = None
    ) -> None:
        error = None if self.fault is None or log_number is None else self.fault(table, log_number)
        if error is not None:
            raise error
        super().append_table(table, failed, log_number=log_number)


def _once_alone(number: int) -> Fault:
    """A fault once, for record ``number`` loaded on its own (one row)."""
    left = [number]

    def fault(table: pa.Table | None, log_number: int) -> Exception | None:
        if left and log_number == left[0] and table is not None and table.num_rows == 1:
            left.clear()
            return duckdb.IOException("the disk went away for a moment")
        return None

    return fault


def test_a_load_tried_again_skips_the_records_the_store_holds(tmp_path: Path) -> None:
    store = _Faulty(tmp_path / "events.duckdb")
    try:
        store.fault = _once_alone(3)
        records: list[LogBatchRecord] = [
            (1, table(track("u1", 1)), []),
            (2, broken(2), []),
            (3, table(track("u1", 3)), []),
        ]
        # Refused together (record 2), then one by one: 1 is stored, 2 kept as failed, and
        # the fault at 3 stops the load; the next try must not store 1 or keep 2 again.
        with pytest.raises(duckdb.IOException):
            store.load_log_records(records)
        store.load_log_records(records)
        assert sorted(e["message_id"] for e in store.find(EventFilter(), 10).events) == [
            "u1-1",
            "u1-3",
        ]
        assert len(store.failed(None, None, 10, None)) == 1
        assert store.ingest_log_number() == 3
    finally:
        store.close()


def test_once_a_load_is_given_up_while_stopping_no_later_one_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    store = _Faulty(path)
    writer = IngestLog(log_directory(path), store.ingest_log_number() + 1, store.store_id)
    first, second = store_process._Batch(), store_process._Batch()
    for minute in (1, 2):
        rows = table(track("u1", minute))
        first.add(writer.append([], rows), rows, [])
    first.segments = writer.cut()
    rows = table(track("u1", 3))
    second.add(writer.append([], rows), rows, [])
    second.segments = writer.cut()
    # The batch ending at record 2 cannot be loaded.
    store.fault = lambda _rows, number: (
        duckdb.OutOfMemoryException("could not allocate") if number == 2 else None
    )
    health = store_process._Health()
    health.stopping = True
    loads: queue.Queue[store_process._Batch | None] = queue.Queue()
    for item in (first, second, None):
        loads.put(item)
    store_process._load_batches(store, loads, health, threading.Semaphore(2))
    # Had the second batch been loaded, its number would mark the first as loaded too.
    assert store.ingest_log_number() == 0 and store.count() == 0
    assert len(segments(log_directory(path))) == 2
    store.close()
    reopened = DuckDBEventStore(path)
    try:
        assert reopened.count() == 3
    finally:
        reopened.close()


def test_while_loading_fails_writes_and_reads_hear_it_at_once(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    store = _Faulty(path)
    store.fault = lambda _rows, _number: duckdb.IOException("No space left on device")
    health = store_process._Health()
    source: queue.SimpleQueue[object] = queue.SimpleQueue()
    loads: queue.Queue[store_process._Batch | None] = queue.Queue()
    room = threading.Semaphore(2)
    server, child = multiprocessing.Pipe()
    stages = [
        threading.Thread(
            target=store_process._log_writes,
            args=(
                IngestLog(log_directory(path), 1, store.store_id),
                source,
                child,
                loads,
                health,
                ONLY_ON_READ,
                room,
            ),
            daemon=True,
        ),
        threading.Thread(
            target=store_process._load_batches, args=(store, loads, health, room), daemon=True
        ),
    ]
    for stage in stages:
        stage.start()
    try:
        source.put(([], table(track("u1", 1)), 0.0, 0))
        assert server.poll(10) and server.recv()[0].error is None  # logged: acknowledged
        reads = [store_process._LoadRequest() for _ in range(4)]
        for request in reads:  # each would hand the failing loader a batch
            source.put(request)
        deadline = time.monotonic() + 10
        while health.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert health.error is not None
        for request in reads[1:]:
            source.put(request)
        source.put(([], table(track("u1", 2)), 0.0, 0))
        assert server.poll(10), "a write went unanswered while loading failed"
        [outcome] = server.recv()
        assert outcome.error is not None and "No space left on device" in outcome.error
        assert all(request.done.wait(10) for request in reads[1:])
        assert all(request.error for request in reads[1:])
    finally:
        health.stopping = True
        source.put(None)
        for stage in stages:
            stage.join(timeout=30)
        store.close()


def _new_file_and_log(path: Path) -> tuple[str, IngestLog]:
    """A new, closed store file's id, and a log written for it from record 1."""
    store = DuckDBEventStore(path)
    store_id = store.store_id
    store.close()
    assert store_id
    return store_id, IngestLog(log_directory(path), 1, store_id)


def test_a_log_left_beside_another_store_file_is_set_aside_not_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.duckdb"
    old_id, writer = _new_file_and_log(path)
    writer.append([], table(track("u1", 1), track("u1", 2)))
    writer.close()
    # The file is replaced (say, by a new one) while its log stays.
    path.unlink()
    with caplog.at_level("ERROR"):
        new = DuckDBEventStore(path)
    try:
        assert new.store_id and new.store_id != old_id
        assert new.count() == 0
        assert segments(log_directory(path)) == []
        [kept] = (log_directory(path) / "foreign").iterdir()
        assert kept.name.startswith(old_id)
        assert "written for another store file" in caplog.text
    finally:
        new.close()


def test_a_damaged_segment_is_kept_aside_and_the_rest_of_the_log_is_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "events.duckdb"
    _, writer = _new_file_and_log(path)
    writer.append([], table(track("u1", 1)))
    writer.append([], table(track("u1", 2)))
    [first] = writer.cut()
    writer.append([], table(track("u1", 3)))
    writer.close()
    data = bytearray(first.read_bytes())
    data[-3] ^= 0xFF  # inside record 2
    first.write_bytes(bytes(data))
    with caplog.at_level("WARNING"):
        reopened = DuckDBEventStore(path)
    try:
        assert sorted(e["message_id"] for e in reopened.find(EventFilter(), 10).events) == [
            "u1-1",
            "u1-3",
        ]
        assert reopened.ingest_log_number() == 3
        assert segments(log_directory(path)) == []
        [kept] = (log_directory(path) / "damaged").iterdir()
        assert kept.name == first.name
        assert "record 2 does not match its checksum" in caplog.text
        assert "records 2 to 2 are not in the log" in caplog.text
    finally:
        reopened.close()


def test_a_file_without_an_id_takes_the_log_named_without_one(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    store = DuckDBEventStore(path)
    store.close()
    with duckdb.connect(str(path)) as con:  # as a file from before store ids
        con.execute("ALTER TABLE ingest_log_state DROP COLUMN store_id")
    writer = IngestLog(log_directory(path), 1, "")
    writer.append([], table(track("u1", 1)))
    writer.close()
    [segment] = segments(log_directory(path))
    segment.rename(segment.with_name(segment.name.lstrip(".")))  # <number>.log
    reopened = DuckDBEventStore(path)
    try:
        assert reopened.count() == 1
        assert reopened.store_id
    finally:
        reopened.close()
    again = DuckDBEventStore(path)
    try:
        assert again.store_id == reopened.store_id  # kept in the file
    finally:
        again.close()


def test_the_server_sees_how_much_acknowledged_waits_to_be_loaded(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    store = ProcessEventStore(tmp_path / "events.duckdb", load_policy=ONLY_ON_READ)
    collector = Collector(store, metrics=CollectMetrics(registry))
    try:

        def gauges() -> tuple[float | None, float | None]:
            return (
                registry.get_sample_value("ichigen_collect_messages_unloaded"),
                registry.get_sample_value("ichigen_collect_unloaded_age_seconds"),
            )

        assert gauges() == (0.0, 0.0)
        collector.write_sync([track("u1", m) for m in range(3)], [])
        collector.write_sync([track("u2", 1)], [bad_failed("event: is required")])
        time.sleep(0.2)
        waiting, age = gauges()
        assert waiting == 5.0  # four rows and a failed message
        assert age is not None and 0.2 <= age < 30
        assert store.count() == 4  # a read loads them
        assert gauges() == (0.0, 0.0)
    finally:
        collector.close()


def test_a_record_cut_short_or_out_of_sequence_outside_the_newest_segment_is_damage(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "events.duckdb.ingest"
    writer = IngestLog(directory, next_number=1, store_id="s1")
    writer.append([], table(track("u1", 1)))
    writer.append([], table(track("u1", 2)))
    writer.close()
    [segment] = segments(directory)
    data = segment.read_bytes()
    segment.write_bytes(data[:-10])
    # The newest segment: a crash while writing the last record (never acknowledged).
    assert [r.number for r in read_segment(segment)] == [1]
    # An older one was complete when the next began: its length field was damaged, say.
    read: list[int] = []
    with pytest.raises(DamagedSegment, match="runs past the segment's end"):
        read.extend(r.number for r in read_segment(segment, newest=False))
    assert read == [1]
    # A record whose number is not the next one (its header was damaged).
    renamed = segment.with_name("s1.00000000000000000005.log")
    segment.rename(renamed)
    with pytest.raises(DamagedSegment, match="record 1 where 5 was due"):
        list(read_segment(renamed))


def test_a_segment_set_aside_never_replaces_one_kept_before(tmp_path: Path) -> None:
    directory = tmp_path / "events.duckdb.ingest"
    for content in (b"first", b"second"):
        directory.mkdir(exist_ok=True)
        path = directory / "s1.00000000000000000120.log"
        path.write_bytes(content)
        set_aside(path, "damaged")
    kept = sorted(p.read_bytes() for p in (directory / "damaged").iterdir())
    assert kept == [b"first", b"second"]
    (directory / "foreign").mkdir()
    (directory / "foreign" / "x.00000000000000000001.log").write_bytes(b"")
    assert set_aside_warnings(tmp_path / "events.duckdb") == [
        f"2 ingest log segment(s) damaged, not loaded: see {directory / 'damaged'}",
        "1 ingest log segment(s) written for another store file, not loaded: see "
        f"{directory / 'foreign'}",
    ]
