"""A server's event store process resolves persons itself: the server hands it a way to
connect to the record store, sends writes without waiting for the previous one, and each
write is acknowledged once committed, with its events' persons set."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry
from tests.integration.profiles.test_ingest_attribution import rows

from ichigen.collect.ingest import CollectMetrics, Collector, StoreUnavailable
from ichigen.collect.messages import EventRow
from ichigen.collect.store import EVENT_SCHEMA, EventFilter, FailedRow, rows_to_arrow
from ichigen.collect.store_process import EventStoreError, ProcessEventStore
from ichigen.core.db import Database
from ichigen.core.settings import Settings
from ichigen.identity import service as identity
from ichigen.profiles.ingest import attribution_for

RECEIVED = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
T = TypeVar("T")


def _url(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=False)


def test_the_store_process_stores_events_with_their_person(db: Database, tmp_path: Path) -> None:
    store = ProcessEventStore(
        tmp_path / "events.duckdb",
        memory_limit="256MB",
        attribution=partial(attribution_for, _url(db), db.settings),
    )
    assert store.attributes
    registry = CollectorRegistry()
    collector = Collector(store, metrics=CollectMetrics(registry))
    try:
        collector.write_sync(
            rows(
                {"type": "page", "anonymousId": "a-1", "name": "Home"},
                {
                    "type": "identify",
                    "anonymousId": "a-1",
                    "userId": "u-1",
                    "traits": {"email": "Kaito@Example.jp"},
                },
            ),
            [],
        )

        # Many writes at once, from several threads: each is acknowledged after its commit,
        # whatever the order they were sent in.
        def send(worker: int) -> None:
            for n in range(10):
                collector.write_sync(
                    rows(
                        {
                            "type": "track",
                            "userId": "u-1" if n % 2 else f"u-{worker}-{n}",
                            "event": "Viewed",
                            "messageId": f"w{worker}-{n}",
                        }
                    ),
                    [],
                )

        threads = [threading.Thread(target=send, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with db.sessionmaker() as session:
            person = identity.person_of(session, "email", "kaito@example.jp")
            assert person is not None
            assert identity.person_of(session, "anonymous_id", "a-1") == person
            others = {
                identity.person_of(session, "user_id", f"u-{w}-{n}")
                for w in range(4)
                for n in range(0, 10, 2)
            }
        assert None not in others and person not in others and len(others) == 20
        events = store.find(EventFilter(), 100).events
        assert len(events) == 42
        mine = [e for e in events if e["user_id"] == "u-1" or e["anonymous_id"] == "a-1"]
        assert len(mine) == 22 and {e["person_id"] for e in mine} == {str(person)}
        assert {e["person_id"] for e in events if e["user_id"] not in ("u-1", None)} == {
            str(p) for p in others
        }
        # The time spent resolving is reported back to the server's metrics.
        assert registry.get_sample_value("ichigen_collect_attribution_seconds_count")
        assert not registry.get_sample_value("ichigen_collect_messages_unattributed_total")
        collector.write_sync(rows({"type": "track", "userId": "u-1", "event": "Again"}), [])
        again = store.find(EventFilter(event="Again"), 1).events
        assert again[0]["person_id"] == str(person)
    finally:
        collector.close()


def test_a_record_store_that_fails_costs_no_event(tmp_path: Path) -> None:
    """The child's record store has no tables: every resolution fails, and the events are
    stored all the same, without a person, and counted."""
    settings = Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789")
    store = ProcessEventStore(
        tmp_path / "events.duckdb",
        memory_limit="256MB",
        attribution=partial(attribution_for, f"sqlite:///{tmp_path / 'empty.db'}", settings),
    )
    registry = CollectorRegistry()
    collector = Collector(store, metrics=CollectMetrics(registry))
    try:
        result = collector.write_sync(
            rows(
                {"type": "track", "anonymousId": "a-1", "event": "Viewed"},
                {"type": "track", "anonymousId": "a-2", "event": "Viewed"},
            ),
            [],
        )
        assert result.stored == 2
        stored = store.find(EventFilter(), 10).events
        assert len(stored) == 2 and {e["person_id"] for e in stored} == {None}
        assert registry.get_sample_value("ichigen_collect_messages_unattributed_total") == 2
    finally:
        collector.close()


class Tagging:
    """An attribution for these tests, built in the store process: each event's person is
    ``p-<message id>``; the first call can be slow (so that writes pile up behind it), a
    call can lose a row (a broken resolver), and ``forget`` leaves a file behind."""

    def __init__(self, marks: str, delay: float, lose_a_row: bool) -> None:
        self.marks, self.delay, self.lose_a_row = Path(marks), delay, lose_a_row

    def attribute(self, table: pa.Table) -> pa.Table:
        time.sleep(self.delay)
        self.delay = 0.0
        persons = pa.array([f"p-{m}" for m in table.column("message_id").to_pylist()])
        table = table.set_column(table.schema.get_field_index("person_id"), "person_id", persons)
        return table.slice(1) if self.lose_a_row else table

    def forget(self) -> None:
        self.marks.write_text("forgotten")


def tagging(marks: str, delay: float = 0.0, lose_a_row: bool = False) -> Tagging:
    return Tagging(marks, delay, lose_a_row)


def _within(seconds: float, call: Callable[[], T]) -> T:
    """``call()``, failing the test if it has not returned within ``seconds``."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"no answer within {seconds} s"
    ok, value = outcome[0]
    if not ok:
        raise value
    result: T = value
    return result


def _track(message_id: str) -> list[EventRow]:
    return rows({"type": "track", "userId": "u", "event": "Viewed", "messageId": message_id})


def test_writes_that_pile_up_are_resolved_together_and_acknowledged_each(
    tmp_path: Path,
) -> None:
    marks = tmp_path / "forgotten"
    store = ProcessEventStore(
        tmp_path / "events.duckdb",
        memory_limit="256MB",
        attribution=partial(tagging, str(marks), 1.0),
    )
    try:
        # The first write is held by the slow first resolution; the next ones arrive meanwhile
        # and are resolved as one table, then cut back into their writes.
        first = store.submit(rows_to_arrow(_track("m-0")), [])
        waiting = [
            store.submit(rows_to_arrow(_track(f"m-{n}") + _track(f"m-{n}b")), [])
            for n in range(1, 6)
        ]
        bad = FailedRow(1, RECEIVED, "event: is required", [], {"type": "track"})
        failed_only = store.submit(None, [bad])
        for write in [first, *waiting, failed_only]:
            assert write.done.wait(30) and write.outcome.error is None
        # One resolution per group carries its time: fewer than six, so writes went together.
        carried = sum(1 for w in [first, *waiting] if w.outcome.attribution_seconds)
        assert 1 <= carried < 6
        events = store.find(EventFilter(), 100).events
        assert len(events) == 11
        assert all(e["person_id"] == f"p-{e['message_id']}" for e in events)
        assert store.failed(None, None, 10, None)[0]["reason"] == "event: is required"

        # A commit that fails is reported to its own write; the next write goes on.
        broken = rows_to_arrow(_track("m-broken")).set_column(
            EVENT_SCHEMA.get_field_index("type"), "type", pa.array([None], pa.string())
        )
        with pytest.raises(EventStoreError, match="NOT NULL"):
            store.append_table(broken, [])
        store.append_table(rows_to_arrow(_track("m-after")), [])
        assert store.count() == 12

        # A write that cannot be encoded is refused before it is sent: nothing is awaited
        # for it, and the acknowledgements of the next writes stay in step.
        unpicklable = FailedRow(1, RECEIVED, "bad", [], {"payload": threading.Lock()})
        with pytest.raises(TypeError):
            store.submit(None, [unpicklable])
        last = store.submit(rows_to_arrow(_track("m-last")), [])
        assert last.done.wait(30) and last.outcome.error is None
        assert store.count() == 13

        store.forget_identities()
        assert marks.read_text() == "forgotten"
    finally:
        store.close()


def test_a_resolver_that_loses_rows_costs_no_event(tmp_path: Path) -> None:
    store = ProcessEventStore(
        tmp_path / "events.duckdb",
        memory_limit="256MB",
        attribution=partial(tagging, str(tmp_path / "marks"), 0.0, True),
    )
    registry = CollectorRegistry()
    collector = Collector(store, metrics=CollectMetrics(registry))
    try:
        assert collector.write_sync(_track("m-1") + _track("m-2"), []).stored == 2
        stored = store.find(EventFilter(), 10).events
        assert len(stored) == 2 and {e["person_id"] for e in stored} == {None}
        assert registry.get_sample_value("ichigen_collect_messages_unattributed_total") == 2
        # A write that cannot be sent fails its requests at once; the collector goes on.
        unpicklable = FailedRow(1, RECEIVED, "bad", [], {"payload": threading.Lock()})
        with pytest.raises(StoreUnavailable):
            _within(30, lambda: collector.write_sync([], [unpicklable]))
        assert _within(30, lambda: collector.write_sync(_track("m-3"), [])).stored == 1
    finally:
        collector.close()
