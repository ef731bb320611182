"""Profiles on both engines: CRM contacts linked into the identity graph by the background
pass, traits with their precedence and history, and a profile read by any identifier."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ichigen.core.audit import Actor
from ichigen.core.db import Database
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate, ContactUpdate
from ichigen.identity import service as identity
from ichigen.identity.models import IdentityEdge
from ichigen.identity.schemas import IdentitySource
from ichigen.profiles import service as profiles
from ichigen.profiles.service import TraitObservation

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def test_contacts_are_linked_by_the_background_pass(session: Session, admin: Actor) -> None:
    made = [
        contacts.create_contact(
            session,
            ContactCreate.model_validate(
                {
                    "first_name": f"Aoi {n}",
                    "email": f"aoi{n}@example.jp",
                    "phone": "03-1234-000" + str(n),
                }
            ),
            admin,
        )
        for n in range(3)
    ]
    session.commit()
    assert profiles.link_changed_contacts(session, limit=2) == 2
    assert profiles.link_changed_contacts(session, limit=2) == 1
    assert profiles.link_changed_contacts(session) == 0
    session.commit()
    for contact in made:
        person = identity.person_of(session, "crm_contact", str(contact.id))
        assert person is not None
        assert identity.person_of(session, "email", contact.primary_email or "") == person
        assert identity.person_of(session, "phone", contact.primary_phone or "") == person
    # An edit adds an address: the next pass links it to the same person.
    first = made[0]
    contacts.update_contact(
        session,
        first.id,
        ContactUpdate.model_validate(
            {"emails": [{"email": "aoi0@example.jp"}, {"email": "aoi.work@example.jp"}]}
        ),
        admin,
    )
    session.commit()
    assert profiles.link_changed_contacts(session) == 1
    assert identity.person_of(session, "email", "aoi.work@example.jp") == identity.person_of(
        session, "crm_contact", str(first.id)
    )


def test_traits_follow_precedence_and_keep_their_history(session: Session, admin: Actor) -> None:
    tracked = identity.resolve(
        session,
        [("user_id", "u-7"), ("email", "ren@example.jp")],
        IdentitySource(kind="event", ref="m1"),
    ).person_id
    profiles.record_traits(
        session,
        [
            TraitObservation(tracked, {"plan": "free", "firstName": "Ren"}, "event", "m1", T0),
            TraitObservation(tracked, {"plan": "pro"}, "event", "m2", T0 + timedelta(days=2)),
            # Older than the stored value: history only.
            TraitObservation(tracked, {"plan": "trial"}, "event", "m3", T0 - timedelta(days=1)),
            # The same value again: nothing new.
            TraitObservation(tracked, {"plan": "pro"}, "event", "m4", T0 + timedelta(days=3)),
        ],
    )
    contact = contacts.create_contact(
        session,
        ContactCreate.model_validate(
            {"first_name": "蓮", "last_name": "高橋", "email": "ren@example.jp"}
        ),
        admin,
    )
    profiles.link_changed_contacts(session)
    session.commit()
    profile = profiles.read_profile(session, "user_id:u-7", admin)
    assert profile.person_id == tracked and profile.contact is not None
    assert profile.contact.id == contact.id
    traits = {t.name: t for t in profile.traits}
    assert traits["plan"].value == "pro" and traits["plan"].source_ref == "m2"
    assert traits["firstName"].value == "蓮" and traits["firstName"].source_kind == "crm"
    assert traits["firstName"].tracked_value == "Ren"
    assert traits["lastName"].value == "高橋"
    person = identity.read_person(session, tracked)
    history = profiles.trait_history(session, person, "plan")
    assert [(h.value, h.source_ref) for h in history] == [
        ("pro", "m2"),
        ("free", "m1"),
        ("trial", "m3"),
    ]
    # The same profile by every identifier it holds, and by the contact.
    for ref in ("email:REN@example.jp", f"crm_contact:{contact.id}", str(tracked)):
        assert profiles.read_profile(session, ref, admin).person_id == tracked


def test_a_merged_person_brings_its_traits(session: Session, admin: Actor) -> None:
    older = identity.resolve(
        session, [("anonymous_id", "a-1")], IdentitySource(kind="event", ref="1")
    ).person_id
    newer = identity.resolve(
        session, [("anonymous_id", "a-2")], IdentitySource(kind="event", ref="2")
    ).person_id
    profiles.record_traits(
        session,
        [
            TraitObservation(older, {"colour": "blue"}, "event", "1", T0),
            TraitObservation(
                newer, {"colour": "green", "size": "M"}, "event", "2", T0 + timedelta(hours=1)
            ),
        ],
    )
    identity.resolve(
        session,
        [("anonymous_id", "a-1"), ("anonymous_id", "a-2")],
        IdentitySource(kind="event", ref="3"),
    )
    session.commit()
    profile = profiles.read_profile(session, "anonymous_id:a-2", admin)
    assert profile.person_id == older and profile.anonymous
    assert profile.merged_person_ids == [newer]
    assert {t.name: t.value for t in profile.traits} == {"colour": "green", "size": "M"}


def test_two_workers_passes_do_not_link_the_same_contacts_twice(
    db: Database, session: Session, admin: Actor
) -> None:
    """Each worker of a server runs the contact-link pass: the second waits for the first to
    commit and then finds nothing left, on the very first pass (no mark yet) and on a later
    one, on both engines."""
    for first, batch in ((True, range(3)), (False, range(3, 5))):
        for n in batch:
            contacts.create_contact(
                session, ContactCreate.model_validate({"email": f"kou{n}@example.jp"}), admin
            )
        session.commit()
        # Holds the mark until it commits.
        assert profiles.link_changed_contacts(session) == len(batch), first
        second: list[int] = []

        def other_worker(found: list[int]) -> None:
            with db.sessionmaker() as other:
                found.append(profiles.link_changed_contacts(other))
                other.commit()

        thread = threading.Thread(target=other_worker, args=(second,))
        thread.start()
        thread.join(timeout=1)
        assert thread.is_alive(), f"the second pass did not wait for the first (first: {first})"
        session.commit()
        thread.join(timeout=30)
        assert second == [0], first
    edges = session.scalar(
        select(func.count()).select_from(IdentityEdge).where(IdentityEdge.source_kind == "crm")
    )
    assert edges == 5
