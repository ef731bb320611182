"""The demo's web behaviour goes through the collector with identity resolution: customers'
events land on the profiles of their CRM contacts, other visitors stay anonymous."""

from __future__ import annotations

from ichigen.collect.store import DuckDBEventStore, EventFilter
from ichigen.core.audit import Actor
from ichigen.core.clock import utcnow
from ichigen.core.db import Database
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate
from ichigen.demo import web
from ichigen.identity import service as identity
from ichigen.profiles import service as profiles


def test_customers_events_land_on_their_contacts_profiles(sqlite_db: Database) -> None:
    actor = Actor.system("test")
    with sqlite_db.sessionmaker() as session:
        made = [
            contacts.create_contact(
                session,
                ContactCreate.model_validate(
                    {"first_name": f"Yui {n}", "email": f"yui{n}@example.jp"}
                ),
                actor,
            )
            for n in range(4)
        ]
    web.VISITORS["test"] = (3, 5)
    try:
        stored = web.load_web_behaviour(sqlite_db, source_id=1, size="test", seed=5)
    finally:
        del web.VISITORS["test"]
    expected = web.demo_messages(
        [(c.id, f"yui{n}@example.jp") for n, c in enumerate(made[:3])], 5, 5, utcnow()
    )
    assert stored == len(expected)
    store = DuckDBEventStore(sqlite_db.settings.resolved_event_store_path(), memory_limit="256MB")
    try:
        with sqlite_db.sessionmaker() as session:
            for contact in made[:3]:
                profile = profiles.profile_of_contact(session, contact.id, actor)
                assert profile is not None and not profile.anonymous
                person = identity.read_person(session, profile.person_id)
                events = profiles.person_events(store, person, actor, 100)
                assert events and {e.person_id for e in events} == {str(profile.person_id)}
                assert {"plan", "email"} <= {t.name for t in profile.traits}
            untouched = profiles.profile_of_contact(session, made[3].id, actor)
            assert (
                untouched is not None
                and profiles.person_events(
                    store, identity.read_person(session, untouched.person_id), actor
                )
                == []
            )
        visitors = store.find(EventFilter(anonymous_id="demo-visitor-5-0"), 100).events
        assert visitors and all(e["user_id"] is None for e in visitors)
    finally:
        store.close()
