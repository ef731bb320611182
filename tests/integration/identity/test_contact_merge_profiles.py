"""Merging two contacts joins their profiles (one customer, one profile), and undoing the
merge splits them again, with each contact's addresses and behaviour on its own side."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, contact

from ichigen.core.audit import Actor
from ichigen.identity import duplicates
from ichigen.identity import service as identity
from ichigen.identity.duplicates import MergeRequest
from ichigen.identity.models import MergeLogEntry
from ichigen.identity.schemas import IdentitySource
from ichigen.profiles import service as profiles


@pytest.fixture
def manager(session: Session) -> Actor:
    return actor(session, "manager@example.com", "manager")


def _person(session: Session, ref: str) -> int:
    return identity.person_by_reference(session, ref).id


def _rejections(session: Session) -> list[str]:
    return list(
        session.scalars(select(MergeLogEntry.reason).where(MergeLogEntry.action == "rejected"))
    )


def _two_contacts(session: Session, by: Actor) -> tuple[int, int]:
    keep = contact(session, by, last_name="山田", first_name="太郎", email="taro@example.jp")
    gone = contact(
        session,
        by,
        last_name="山田",
        first_name="太朗",
        email="t.yamada@example.jp",
        phone="03-1234-5678",
    )
    return keep.id, gone.id


def test_a_merge_joins_the_profiles_and_its_undo_splits_them(
    session: Session, manager: Actor
) -> None:
    keep, gone = _two_contacts(session, manager)
    profiles.link_contacts(session, [keep, gone])
    # The customer browsed anonymously and signed up with the address of the second record.
    identity.resolve(
        session,
        [("anonymous_id", "anon-7"), ("email", "t.yamada@example.jp")],
        IdentitySource(kind="event", ref="m-1"),
    )
    session.commit()
    assert _person(session, f"crm_contact:{keep}") != _person(session, f"crm_contact:{gone}")

    merge = duplicates.merge_contacts(
        session, MergeRequest(survivor_id=keep, merged_id=gone), manager
    )

    person = _person(session, f"crm_contact:{keep}")
    assert _person(session, f"crm_contact:{gone}") == person
    assert _person(session, "anonymous_id:anon-7") == person
    assert _person(session, "phone:03-1234-5678") == person
    # The background pass then sees the survivor with the moved address and number: nothing
    # to link, and the one-contact cap refuses nothing.
    profiles.link_changed_contacts(session)
    session.commit()
    assert _rejections(session) == []
    assert {i.value for i in identity.identifiers_of(session, person)} >= {
        str(keep),
        str(gone),
        "taro@example.jp",
        "t.yamada@example.jp",
        "anon-7",
    }

    duplicates.undo_merge(session, merge.id, manager)

    back = _person(session, f"crm_contact:{gone}")
    assert back != _person(session, f"crm_contact:{keep}")
    assert _person(session, "email:t.yamada@example.jp") == back
    assert _person(session, "anonymous_id:anon-7") == back
    assert _person(session, "phone:03-1234-5678") == back
    assert _person(session, "email:taro@example.jp") == _person(session, f"crm_contact:{keep}")
    profiles.link_changed_contacts(session)
    session.commit()
    assert _person(session, f"crm_contact:{gone}") == back
    assert _rejections(session) == []


def test_an_undo_takes_back_the_links_made_for_moved_addresses(
    session: Session, manager: Actor
) -> None:
    # Neither contact was in the graph before the merge: after it, the background pass links
    # the survivor with the merged contact's address; the undo must take that link back.
    keep, gone = _two_contacts(session, manager)
    merge = duplicates.merge_contacts(
        session, MergeRequest(survivor_id=keep, merged_id=gone), manager
    )
    profiles.link_changed_contacts(session)
    session.commit()
    person = _person(session, f"crm_contact:{keep}")
    assert _person(session, "email:t.yamada@example.jp") == person
    assert _person(session, f"crm_contact:{gone}") == person

    duplicates.undo_merge(session, merge.id, manager)
    profiles.link_changed_contacts(session)
    session.commit()

    back = _person(session, f"crm_contact:{gone}")
    assert back != _person(session, f"crm_contact:{keep}")
    assert _person(session, "email:t.yamada@example.jp") == back
    assert _person(session, "phone:03-1234-5678") == back
    assert _person(session, "email:taro@example.jp") == _person(session, f"crm_contact:{keep}")
    assert _rejections(session) == []


def test_profiles_with_different_user_ids_stay_apart_and_the_contacts_still_merge(
    session: Session, manager: Actor
) -> None:
    keep, gone = _two_contacts(session, manager)
    profiles.link_contacts(session, [keep, gone])
    for user_id, email in (("u-1", "taro@example.jp"), ("u-2", "t.yamada@example.jp")):
        identity.resolve(
            session,
            [("user_id", user_id), ("email", email)],
            IdentitySource(kind="event", ref=user_id),
        )
    session.commit()

    merge = duplicates.merge_contacts(
        session, MergeRequest(survivor_id=keep, merged_id=gone), manager
    )

    assert merge.status == "merged"
    assert _person(session, f"crm_contact:{keep}") != _person(session, f"crm_contact:{gone}")
    assert any("different user_id" in reason for reason in _rejections(session))
    duplicates.undo_merge(session, merge.id, manager)
    assert _person(session, "user_id:u-2") == _person(session, f"crm_contact:{gone}")
