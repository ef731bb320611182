"""The embedded event store and the collector's writer, on a real DuckDB file."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ichigen.collect.ingest import (
    Collector,
    SeenMessages,
    StoreUnavailable,
    _Pending,
    _Ticket,
)
from ichigen.collect.messages import Envelope, EventRow, Limits, normalise
from ichigen.collect.store import (
    DuckDBEventStore,
    EventFilter,
    EventStoreBusy,
    FailedRow,
    read_parquet_export,
)
from ichigen.collect.store_process import ProcessEventStore

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def row(message: dict[str, object], source_id: int = 1, at: datetime = T0) -> EventRow:
    made, problems = normalise(message, Envelope(source_id=source_id, received_at=at), Limits())
    assert made is not None, problems
    return made


def track(user: str, event: str, minutes: int, **properties: object) -> EventRow:
    at = T0 + timedelta(minutes=minutes)
    return row(
        {
            "type": "track",
            "userId": user,
            "event": event,
            "messageId": f"{user}-{minutes}",
            "timestamp": at.isoformat(),
            "properties": properties,
        },
        at=at,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[DuckDBEventStore]:
    opened = DuckDBEventStore(tmp_path / "events.duckdb")
    yield opened
    opened.close()


def test_one_persons_events_come_newest_first_in_pages(store: DuckDBEventStore) -> None:
    store.append([track("u1", "Viewed", m) for m in range(7)] + [track("u2", "Viewed", 3)], [])

    first = store.find(EventFilter(user_id="u1"), 3)
    assert [e["message_id"] for e in first.events] == ["u1-6", "u1-5", "u1-4"]
    assert first.next_before is not None
    second = store.find(EventFilter(user_id="u1", before=first.next_before), 3)
    assert [e["message_id"] for e in second.events] == ["u1-3", "u1-2", "u1-1"]
    last = store.find(EventFilter(user_id="u1", before=second.next_before), 3)
    assert [e["message_id"] for e in last.events] == ["u1-0"]
    assert last.next_before is None
    assert store.find(EventFilter(user_id="nobody"), 3).events == []


def test_filters_by_type_name_time_and_property(store: DuckDBEventStore) -> None:
    store.append(
        [
            track("u1", "Order Completed", 1, plan="pro", revenue=10),
            track("u1", "Order Completed", 2, plan="free"),
            track("u2", "Viewed", 3, plan="pro"),
            row({"type": "identify", "anonymousId": "a1", "traits": {"plan": "pro"}}),
        ],
        [],
    )
    found = store.find(
        EventFilter(type="track", event="Order Completed", properties=(("plan", "pro"),)), 10
    )
    assert [e["message_id"] for e in found.events] == ["u1-1"]
    assert found.events[0]["properties"] == {"plan": "pro", "revenue": 10}
    window = store.find(
        EventFilter(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=3)), 10
    )
    assert [e["message_id"] for e in window.events] == ["u1-2"]
    assert [e["type"] for e in store.find(EventFilter(anonymous_id="a1"), 10).events] == [
        "identify"
    ]


def test_daily_counts_per_event_name(store: DuckDBEventStore) -> None:
    store.append(
        [track("u1", "Viewed", 1), track("u1", "Viewed", 2), track("u1", "Bought", 60 * 24)],
        [],
    )
    counts = store.daily_counts(T0 - timedelta(days=1), T0 + timedelta(days=2), None)
    assert [(str(day), name, n) for day, name, n in counts] == [
        ("2026-11-01", "Viewed", 2),
        ("2026-11-02", "Bought", 1),
    ]


def test_a_parquet_export_reads_back_into_a_fresh_store(
    store: DuckDBEventStore, tmp_path: Path
) -> None:
    rows = [track("u1", "Viewed", m, price=m * 100) for m in (0, 60 * 24, 60 * 48)]
    store.append(rows, [])
    written = store.export_parquet(tmp_path / "export")
    assert written == 3
    days = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert days == ["day=2026-11-01", "day=2026-11-02", "day=2026-11-03"]

    fresh = DuckDBEventStore(tmp_path / "other.duckdb")
    try:
        collector = Collector(fresh)
        exported = [r for batch in read_parquet_export(tmp_path / "export") for r in batch]
        assert collector.write_sync(exported, []).stored == 3
        assert collector.write_sync(exported, []).duplicates == 3
        before = store.find(EventFilter(user_id="u1"), 10).events
        after = fresh.find(EventFilter(user_id="u1"), 10).events
        assert after == before
    finally:
        collector.close()


def test_retention_deletes_only_older_events_of_that_source(store: DuckDBEventStore) -> None:
    old = row({"type": "track", "userId": "u", "event": "Old", "timestamp": "2020-01-01T00:00:00Z"})
    other = row(
        {"type": "track", "userId": "u", "event": "Old", "timestamp": "2020-01-01T00:00:00Z"},
        source_id=2,
    )
    store.append([old, other, track("u", "New", 1)], [])
    removed = store.delete_older_than(1, T0 - timedelta(days=30))
    assert removed == 1
    assert store.count(1) == 1 and store.count(2) == 1


def test_failed_messages_are_kept_with_why(store: DuckDBEventStore) -> None:
    store.append([], [FailedRow(1, T0, "event: is required", [{"loc": ["event"]}], {"x": 1})])
    [failed] = store.failed(None, "failed", 10, None)
    assert failed["reason"] == "event: is required" and failed["payload"] == {"x": 1}
    store.mark_replayed(failed["id"], "m-1", T0)
    assert store.failed_one(failed["id"])["status"] == "replayed"  # type: ignore[index]


def test_seen_messages_fold_into_the_sorted_array_and_forget_failed_writes() -> None:
    seen = SeenMessages(np.array([5, 9], dtype=np.int64), fold_at=3)
    assert seen.reserve([1, 5, 1, 2]) == [True, False, False, True]
    assert seen.reserve([3]) == [True]  # the third new key starts a merge into the array
    assert seen.reserve([1, 2, 3, 9]) == [False, False, False, False]  # during the merge too
    seen.wait_for_fold()
    assert len(seen) == 5
    assert seen.reserve([1, 2, 3, 9, 4]) == [False, False, False, False, True]
    seen.release([2, 3, 4])
    assert seen.reserve([2, 3, 4]) == [True, True, True]


_KEYS = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(
    stored=st.lists(_KEYS, max_size=200, unique=True),
    asked=st.lists(_KEYS, max_size=40),
    picks=st.lists(st.integers(min_value=0), max_size=40),
)
def test_seen_messages_find_exactly_the_stored_keys(
    stored: list[int], asked: list[int], picks: list[int]
) -> None:
    # Keys asked: random ones, stored ones (first and last of blocks among them), and their
    # neighbours, against arrays from empty to many blocks long with a short last block.
    base = np.array(sorted(stored), dtype=np.int64)
    chosen = [stored[p % len(stored)] for p in picks] if stored else []
    near = [k + d for k in chosen for d in (-1, 1) if -(2**63) <= k + d < 2**63]
    keys = [*asked, *chosen, *near, -(2**63), 2**63 - 1]
    seen = SeenMessages(base, fold_at=10**9)
    assert seen._in_base(keys) == [key in set(stored) for key in keys]


class GatedStore(DuckDBEventStore):
    """A real store whose writes wait at a gate, or fail, when a test says so."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail = False

    def append_table(self, table: pa.Table | None, failed: Sequence[FailedRow]) -> None:
        self.entered.set()
        self.gate.wait(timeout=10)
        if self.fail:
            raise OSError("disk full")
        super().append_table(table, failed)


def test_a_repeat_of_a_message_being_written_waits_for_that_write(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "events.duckdb")
    collector = Collector(store)
    try:
        message = track("u1", "Viewed", 1)
        store.gate.clear()

        async def both() -> list[object]:
            first = asyncio.ensure_future(collector.write([message], []))
            await asyncio.to_thread(store.entered.wait, 10)
            repeat = asyncio.ensure_future(collector.write([message], []))
            await asyncio.sleep(0.05)
            # The first write has not committed: its repeat must not be answered yet.
            assert not repeat.done()
            store.fail = True
            store.gate.set()
            return await asyncio.gather(first, repeat, return_exceptions=True)

        # In a thread of its own: another test's browser may own this thread's event loop.
        outcomes: list[object] = []
        runner = threading.Thread(target=lambda: outcomes.extend(asyncio.run(both())))
        runner.start()
        runner.join(timeout=30)
        assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
        # Neither was stored, so a retry is new, not a repeat.
        store.fail = False
        assert collector.write_sync([message], []).stored == 1
        assert store.count() == 1
    finally:
        collector.close()


def test_the_store_process_writes_reads_and_holds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "events.duckdb"
    store = ProcessEventStore(path)
    try:
        store.append([track("u1", "Viewed", m) for m in range(3)], [])
        store.append([], [FailedRow(1, T0, "event: is required", [], {"userId": "u1"})])
        page = store.find(EventFilter(user_id="u1"), 2)
        assert [e["message_id"] for e in page.events] == ["u1-2", "u1-1"]
        assert store.count() == 3 and len(store.message_hashes()) == 3
        assert store.failed(None, None, 10, None)[0]["reason"] == "event: is required"
        with pytest.raises(EventStoreBusy):
            ProcessEventStore(path, open_wait=0.2)
    finally:
        store.close()
    reopened = DuckDBEventStore(path)  # the child has let the file go
    try:
        assert reopened.count() == 3
    finally:
        reopened.close()


def test_a_row_that_cannot_be_converted_fails_only_its_own_write(tmp_path: Path) -> None:
    """A group's rows are converted to Arrow together; when that fails, each write of the
    group is tried on its own, so only the faulty one is refused."""
    store = ProcessEventStore(tmp_path / "events.duckdb")
    collector = Collector(store)
    try:
        faulty = list(track("u2", "Viewed", 2))
        faulty[0] = "not a source id"
        good, bad = _Ticket(), _Ticket()
        group = [
            _Pending([track("u1", "Viewed", 1)], [1], [], [good]),
            _Pending([tuple(faulty)], [2], [], [bad]),
        ]
        collector._slots.acquire()  # as the writer does before it takes a group
        collector._submit_group(store.submit, group)
        assert good._done.wait(30) and bad._done.wait(30)
        assert good.wait() is None
        error = bad.wait()
        assert isinstance(error, StoreUnavailable) and "not written" in str(error)
        assert [e["message_id"] for e in store.find(EventFilter(), 10).events] == ["u1-1"]
        assert collector.write_sync([track("u1", "Viewed", 3)], []).stored == 1
    finally:
        collector.close()


class _Tagging:
    """Resolves each event's person to ``p-<user id>`` (the attribution stage's contract)."""

    def attribute(self, table: pa.Table) -> pa.Table:
        persons = pa.array([f"p-{u}" for u in table.column("user_id").to_pylist()], pa.string())
        return table.set_column(table.schema.get_field_index("person_id"), "person_id", persons)

    def forget(self) -> None:
        pass


def test_a_write_that_cannot_be_converted_leaves_its_group_resolved(tmp_path: Path) -> None:
    store = DuckDBEventStore(tmp_path / "events.duckdb")
    collector = Collector(store, attribution=_Tagging())
    try:
        faulty = list(track("u2", "Viewed", 2))
        faulty[0] = "not a source id"
        source: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        writes: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        good, bad = _Ticket(), _Ticket()
        source.put(_Pending([track("u1", "Viewed", 1)], [1], [], [good]))
        source.put(_Pending([tuple(faulty)], [2], [], [bad]))
        source.put(None)
        collector._attribute_groups(_Tagging(), source, writes)
        resolved = writes.get()
        assert resolved is not None and resolved.table is not None
        assert resolved.table.column("person_id").to_pylist() == ["p-u1"]
        left = writes.get()
        assert left is not None and left.table is None and left.tickets == [bad]
        assert writes.get() is None
    finally:
        collector.close()
