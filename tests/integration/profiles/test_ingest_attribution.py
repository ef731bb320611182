"""The collector resolves each group's persons before storing it: events carry their person,
identify traits become profile traits, a person's events are found by all its identifiers,
and a record store that fails never costs an event."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy.orm import sessionmaker

from ichigen.collect.ingest import CollectMetrics, Collector
from ichigen.collect.messages import Envelope, EventRow, Limits, normalise
from ichigen.collect.store import DuckDBEventStore, EventFilter
from ichigen.core.audit import Actor
from ichigen.core.db import Database, create_db_engine
from ichigen.identity import service as identity
from ichigen.profiles import service as profiles
from ichigen.profiles.ingest import EventAttribution

RECEIVED = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def rows(*messages: dict[str, Any]) -> list[EventRow]:
    envelope = Envelope(source_id=1, received_at=RECEIVED)
    made = []
    for message in messages:
        row, problems = normalise(message, envelope, Limits())
        assert row is not None, problems
        made.append(row)
    return made


def test_events_are_stored_with_their_person(sqlite_db: Database, tmp_path: Path) -> None:
    collector = Collector(
        DuckDBEventStore(tmp_path / "events.duckdb", memory_limit="256MB"),
        attribution=EventAttribution(sqlite_db.sessionmaker),
    )
    try:
        collector.write_sync(
            rows(
                {"type": "page", "anonymousId": "a-1", "name": "Home"},
                {
                    "type": "identify",
                    "anonymousId": "a-1",
                    "userId": "u-1",
                    "context": {"traits": {"email": "Kaito@Example.jp", "plan": "pro"}},
                },
                {"type": "track", "userId": "u-1", "event": "Order Completed"},
                {"type": "alias", "userId": "u-1", "previousId": "a-9"},
                {"type": "track", "anonymousId": "a-2", "event": "Viewed"},
            ),
            [],
        )
        with sqlite_db.sessionmaker() as session:
            person = identity.person_of(session, "email", "kaito@example.jp")
            assert person is not None
            assert identity.person_of(session, "anonymous_id", "a-9") == person
            other = identity.person_of(session, "anonymous_id", "a-2")
            assert other is not None and other != person
            profile = profiles.read_profile(session, f"{person}", Actor.system())
            traits = {t.name: t.value for t in profile.traits}
            assert traits == {"email": "Kaito@Example.jp", "plan": "pro"}
        store = collector.store
        stored = store.find(EventFilter(user_ids=("u-1",), anonymous_ids=("a-1", "a-9")), 10)
        assert {e["person_id"] for e in stored.events} == {str(person)}
        assert len(stored.events) == 4  # page, identify, track, alias: each once
        (viewed,) = store.find(EventFilter(anonymous_id="a-2"), 10).events
        assert viewed["person_id"] == str(other)
    finally:
        collector.close()


def test_a_failing_record_store_costs_no_event(tmp_path: Path) -> None:
    # A record store that cannot be opened: the directory does not exist.
    broken = create_db_engine(f"sqlite:///{tmp_path / 'missing' / 'ichigen.db'}")
    registry = CollectorRegistry()
    collector = Collector(
        DuckDBEventStore(tmp_path / "events.duckdb", memory_limit="256MB"),
        metrics=CollectMetrics(registry),
        attribution=EventAttribution(sessionmaker(bind=broken)),
    )
    try:
        result = collector.write_sync(
            rows(
                {"type": "track", "anonymousId": "a-1", "event": "Viewed"},
                {"type": "track", "anonymousId": "a-2", "event": "Viewed"},
            ),
            [],
        )
        assert result.stored == 2
        stored = collector.store.find(EventFilter(), 10).events
        assert len(stored) == 2 and {e["person_id"] for e in stored} == {None}
        assert registry.get_sample_value("ichigen_collect_messages_unattributed_total") == 2
    finally:
        collector.close()
        broken.dispose()


def test_first_and_last_seen_follow_the_events_own_times(
    sqlite_db: Database, tmp_path: Path
) -> None:
    # Events imported a year late: the profile says when the visitor was there, not when
    # the import ran; and an even older event moves first seen back, not last seen.
    collector = Collector(
        DuckDBEventStore(tmp_path / "events.duckdb", memory_limit="256MB"),
        attribution=EventAttribution(sqlite_db.sessionmaker),
    )
    try:
        collector.write_sync(
            rows(
                {"type": "page", "anonymousId": "old", "timestamp": "2025-03-01T10:00:00Z"},
                {"type": "page", "anonymousId": "old", "timestamp": "2025-03-04T18:30:00Z"},
                {
                    "type": "identify",
                    "anonymousId": "old",
                    "userId": "u-old",
                    "timestamp": "2025-03-05T09:00:00Z",
                },
            ),
            [],
        )
        with sqlite_db.sessionmaker() as session:
            person = identity.person_by_reference(session, "user_id:u-old")
        assert person.first_seen == datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
        assert person.last_seen == datetime(2025, 3, 5, 9, 0, tzinfo=UTC)

        collector.write_sync(
            rows(
                {
                    "type": "track",
                    "userId": "u-old",
                    "event": "Signed Up",
                    "timestamp": "2025-02-20T08:00:00Z",
                }
            ),
            [],
        )
        collector.write_sync(
            rows({"type": "page", "userId": "u-old", "timestamp": "2025-03-05T09:00:30Z"}), []
        )
        with sqlite_db.sessionmaker() as session:
            person = identity.person_by_reference(session, "user_id:u-old")
        assert person.first_seen == datetime(2025, 2, 20, 8, 0, tzinfo=UTC)
        # 30 s after the last seen written: within the minute it is kept to.
        assert person.last_seen == datetime(2025, 3, 5, 9, 0, tzinfo=UTC)

        collector.write_sync(
            rows({"type": "page", "userId": "u-old", "timestamp": "2025-06-01T12:00:00Z"}),
            [],
        )
        with sqlite_db.sessionmaker() as session:
            person = identity.person_by_reference(session, "user_id:u-old")
        assert person.first_seen == datetime(2025, 2, 20, 8, 0, tzinfo=UTC)
        assert person.last_seen == datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    finally:
        collector.close()
