"""A server's event store process resolves persons itself: the server hands it a way to
connect to the record store, sends writes without waiting for the previous one, and each
write is acknowledged once committed, with its events' persons set."""

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

from prometheus_client import CollectorRegistry
from tests.integration.profiles.test_ingest_attribution import rows

from ichigen.collect.ingest import CollectMetrics, Collector
from ichigen.collect.store import EventFilter
from ichigen.collect.store_process import ProcessEventStore
from ichigen.core.db import Database
from ichigen.core.settings import Settings
from ichigen.identity import service as identity
from ichigen.profiles.ingest import attribution_for


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
        collector.forget_identities()  # answered by the child, which goes on resolving
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
