"""Merging two contacts moves everything that points at the merged one to the survivor, in
one transaction, and undoing the merge puts back exactly what was moved."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, contact, field

from ichigen.core.audit import Actor, record_history
from ichigen.core.db import Database
from ichigen.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from ichigen.crm.activities import service as activities
from ichigen.crm.activities.schemas import ActivityCreate, RecordRef
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.models import ContactSearchTerm
from ichigen.crm.contacts.schemas import ContactUpdate
from ichigen.crm.deals import service as deals
from ichigen.crm.deals.schemas import DealContactIn, DealCreate, PipelineCreate
from ichigen.crm.tasks import service as tasks
from ichigen.crm.tasks.schemas import TaskCreate
from ichigen.identity import duplicates
from ichigen.identity.duplicates import MergeRequest
from ichigen.identity.models import ContactMerge


@dataclass
class World:
    """Two contacts for one person, each with deals, activities and tasks of its own."""

    keep: int
    gone: int
    keep_deal: int
    gone_deal: int
    shared_deal: int
    gone_activity: int
    shared_activity: int
    gone_task: int
    keep_task: int


@pytest.fixture
def manager(session: Session) -> Actor:
    return actor(session, "manager@example.com", "manager")


def _world(session: Session, by: Actor) -> World:
    field(session, "rank", "text")
    field(session, "since", "text")
    keep = contact(
        session,
        by,
        last_name="山田",
        first_name="太郎",
        email="taro@example.jp",
        phone="090-1111-2222",
        tags=["vip"],
        custom={"rank": "gold"},
    )
    gone = contact(
        session,
        by,
        last_name="山田",
        first_name="太朗",
        first_name_reading="タロウ",
        last_name_reading="ヤマダ",
        email="t.yamada@example.jp",
        phone="03-1234-5678",
        job_title="部長",
        city="東京",
        tags=["newsletter", "vip"],
        custom={"rank": "silver", "since": "2020"},
        do_not_call=True,
    )
    deals.create_pipeline(session, PipelineCreate(name="Sales"), by)

    def deal(name: str, *links: DealContactIn) -> int:
        return deals.create_deal(session, DealCreate(name=name, contacts=list(links)), by).id

    keep_deal = deal("Keep's deal", DealContactIn(contact_id=keep.id, role="champion"))
    gone_deal = deal("Gone's deal", DealContactIn(contact_id=gone.id, role="decision_maker"))
    shared_deal = deal(
        "Both",
        DealContactIn(contact_id=keep.id, role="user"),
        DealContactIn(contact_id=gone.id, role="economic_buyer"),
    )

    def note(subject: str, *ids: int) -> int:
        links = [RecordRef(type="contact", id=i) for i in ids]
        return activities.log_activity(
            session, ActivityCreate(kind="note", subject=subject, links=links), by
        ).id

    note("keep's note", keep.id)
    gone_activity = note("gone's note", gone.id)
    shared_activity = note("both", keep.id, gone.id)
    gone_task = tasks.create_task(
        session, TaskCreate(title="Call back", record_type="contact", record_id=gone.id), by
    ).id
    keep_task = tasks.create_task(
        session, TaskCreate(title="Send quote", record_type="contact", record_id=keep.id), by
    ).id
    return World(
        keep.id,
        gone.id,
        keep_deal,
        gone_deal,
        shared_deal,
        gone_activity,
        shared_activity,
        gone_task,
        keep_task,
    )


def _deal_roles(session: Session, deal_id: int, by: Actor) -> dict[int, str | None]:
    return {c.contact_id: c.role for c in deals.get_deal(session, deal_id, by).contacts}


def _timeline(session: Session, contact_id: int, by: Actor) -> set[str]:
    return {a.subject for a in activities.timeline(session, "contact", contact_id, by).items}


def _task_contact(session: Session, task_id: int, by: Actor) -> int | None:
    return tasks.get_task(session, task_id, by).record_id


def test_merge_moves_everything_to_the_survivor(session: Session, manager: Actor) -> None:
    w = _world(session, manager)
    result = duplicates.merge_contacts(
        session,
        MergeRequest(survivor_id=w.keep, merged_id=w.gone, choices={"custom.rank": "merged"}),
        manager,
    )
    assert result.status == "merged" and (result.survivor_id, result.merged_id) == (w.keep, w.gone)
    assert contacts.existing_contact_ids(session, [w.keep, w.gone]) == {w.keep}

    kept = contacts.get_contact(session, w.keep, manager)
    # The survivor's non-empty values win; its empty ones take the other's; choices apply.
    assert (kept.last_name, kept.first_name) == ("山田", "太郎")
    assert kept.first_name_reading == "タロウ" and kept.job_title == "部長" and kept.city == "東京"
    assert kept.custom == {"rank": "silver", "since": "2020"}
    assert kept.tags == ["vip", "newsletter"]
    assert kept.do_not_call is True
    assert [e.email for e in kept.emails] == ["taro@example.jp", "t.yamada@example.jp"]
    assert kept.primary_email == "taro@example.jp"
    assert [p.number for p in kept.phones] == ["+819011112222", "+81312345678"]
    # Quick search finds the survivor by the merged contact's address.
    page = contacts.list_contacts(session, manager, q="t.yamada@example.jp")
    assert [c.id for c in page.items] == [w.keep]

    # Deals: the merged contact's role moved; on the shared deal the survivor keeps its own.
    assert _deal_roles(session, w.gone_deal, manager) == {w.keep: "decision_maker"}
    assert _deal_roles(session, w.shared_deal, manager) == {w.keep: "user"}
    assert _deal_roles(session, w.keep_deal, manager) == {w.keep: "champion"}
    assert set(deals.deal_ids_of_contact(session, w.keep)) == {
        w.keep_deal,
        w.gone_deal,
        w.shared_deal,
    }
    # Timeline and tasks.
    assert _timeline(session, w.keep, manager) == {"keep's note", "gone's note", "both"}
    assert _task_contact(session, w.gone_task, manager) == w.keep
    assert result.moved.tasks == [w.gone_task]
    assert result.moved.activity_links_dropped == [w.shared_activity]
    assert result.moved.deal_contacts_dropped == [(w.shared_deal, "economic_buyer")]

    # Audited on both contacts and on the merge.
    assert record_history(session, "contacts", w.gone)[0].action == "merge"
    assert record_history(session, "contacts", w.keep)[0].changes["merged_from"] == [None, w.gone]
    assert record_history(session, "contact_merges", result.id)[0].action == "merge"


def test_undo_restores_the_contact_and_moves_back_exactly_what_moved(
    session: Session, manager: Actor
) -> None:
    w = _world(session, manager)
    gone_before = contacts.get_contact(session, w.gone, manager)
    keep_before = contacts.get_contact(session, w.keep, manager)
    merge = duplicates.merge_contacts(
        session, MergeRequest(survivor_id=w.keep, merged_id=w.gone), manager
    )
    # A task about the survivor made after the merge stays with the survivor on undo.
    later = tasks.create_task(
        session, TaskCreate(title="Later", record_type="contact", record_id=w.keep), manager
    ).id

    undone = duplicates.undo_merge(session, merge.id, manager)
    assert undone.status == "undone" and undone.undone_by == manager.label

    back = contacts.get_contact(session, w.gone, manager)
    assert back.id == w.gone
    assert back.model_dump(exclude={"version", "updated_at"}) == gone_before.model_dump(
        exclude={"version", "updated_at"}
    )
    kept = contacts.get_contact(session, w.keep, manager)
    assert kept.model_dump(exclude={"version", "updated_at"}) == keep_before.model_dump(
        exclude={"version", "updated_at"}
    )
    assert _deal_roles(session, w.gone_deal, manager) == {w.gone: "decision_maker"}
    assert _deal_roles(session, w.shared_deal, manager) == {
        w.keep: "user",
        w.gone: "economic_buyer",
    }
    assert _deal_roles(session, w.keep_deal, manager) == {w.keep: "champion"}
    assert _timeline(session, w.gone, manager) == {"gone's note", "both"}
    assert _timeline(session, w.keep, manager) == {"keep's note", "both"}
    assert _task_contact(session, w.gone_task, manager) == w.gone
    assert _task_contact(session, w.keep_task, manager) == w.keep
    assert _task_contact(session, later, manager) == w.keep
    # Search finds each contact by its own address again, and the terms are not doubled.
    found = contacts.list_contacts(session, manager, q="t.yamada@example.jp")
    assert [c.id for c in found.items] == [w.gone]
    terms = session.scalar(select(func.count()).where(ContactSearchTerm.contact_id == w.keep))
    assert terms == len(
        contacts.search_terms(keep_before.model_dump(), keep_before.emails, keep_before.phones)
    )

    with pytest.raises(Conflict):
        duplicates.undo_merge(session, merge.id, manager)
    # And it can be merged again afterwards.
    again = duplicates.merge_contacts(
        session, MergeRequest(survivor_id=w.gone, merged_id=w.keep), manager
    )
    assert contacts.existing_contact_ids(session, [w.keep, w.gone]) == {w.gone}
    assert _task_contact(session, w.keep_task, manager) == w.gone
    assert again.id != merge.id


def test_undo_keeps_survivor_edits_made_after_the_merge(session: Session, manager: Actor) -> None:
    w = _world(session, manager)
    merge = duplicates.merge_contacts(
        session, MergeRequest(survivor_id=w.keep, merged_id=w.gone), manager
    )
    contacts.update_contact(session, w.keep, ContactUpdate(city="大阪"), manager)
    duplicates.undo_merge(session, merge.id, manager)
    assert contacts.get_contact(session, w.keep, manager).city == "大阪"
    assert contacts.get_contact(session, w.gone, manager).city == "東京"


def test_bad_merges_change_nothing(session: Session, manager: Actor) -> None:
    w = _world(session, manager)
    keep = contacts.get_contact(session, w.keep, manager)
    with pytest.raises(ValidationFailed) as itself:
        duplicates.merge_contacts(
            session, MergeRequest(survivor_id=w.keep, merged_id=w.keep), manager
        )
    assert itself.value.errors[0].loc == ("merged_id",)
    with pytest.raises(NotFound):
        duplicates.merge_contacts(
            session, MergeRequest(survivor_id=w.keep, merged_id=999_999), manager
        )
    with pytest.raises(ValidationFailed) as bad_choice:
        duplicates.merge_contacts(
            session,
            MergeRequest(survivor_id=w.keep, merged_id=w.gone, choices={"password": "merged"}),
            manager,
        )
    assert bad_choice.value.errors[0].loc == ("choices", "password")
    # A stale version (someone edited the contact since it was shown) is refused.
    with pytest.raises(PreconditionFailed):
        duplicates.merge_contacts(
            session,
            MergeRequest(survivor_id=w.keep, merged_id=w.gone, merged_version=99),
            manager,
        )
    # Nothing moved, nothing deleted, versions unchanged.
    assert contacts.existing_contact_ids(session, [w.keep, w.gone]) == {w.keep, w.gone}
    assert contacts.get_contact(session, w.keep, manager).version == keep.version
    assert _deal_roles(session, w.gone_deal, manager) == {w.gone: "decision_maker"}
    assert _task_contact(session, w.gone_task, manager) == w.gone
    assert session.scalar(select(func.count()).select_from(ContactMerge)) == 0

    merge = duplicates.merge_contacts(
        session, MergeRequest(survivor_id=w.keep, merged_id=w.gone), manager
    )
    # The pair again: the merged contact is gone, and says where it went.
    with pytest.raises(Conflict) as twice:
        duplicates.merge_contacts(
            session, MergeRequest(survivor_id=w.keep, merged_id=w.gone), manager
        )
    assert str(merge.id) in twice.value.detail
    with pytest.raises(NotFound):
        duplicates.undo_merge(session, 424242, manager)


def test_sales_reps_may_not_merge(session: Session, manager: Actor) -> None:
    w = _world(session, manager)
    rep = actor(session, "rep@example.com", "sales")
    with pytest.raises(Exception, match="may not write identity"):
        duplicates.merge_contacts(session, MergeRequest(survivor_id=w.keep, merged_id=w.gone), rep)
    assert contacts.existing_contact_ids(session, [w.gone]) == {w.gone}


def test_a_concurrent_merge_of_the_same_contact_fails(
    db: Database, session: Session, manager: Actor
) -> None:
    """Two reviewers see the same contact and merge it into different survivors: the one who
    commits second held an old version, gets a 412 or 409, and changes nothing."""
    w = _world(session, manager)
    third = contact(session, manager, last_name="山田", first_name="花子").id
    seen = {c: contacts.get_contact(session, c, manager).version for c in (w.keep, third)}
    session.commit()
    with db.sessionmaker() as other:
        duplicates.merge_contacts(
            other,
            MergeRequest(survivor_id=w.keep, merged_id=w.gone, survivor_version=seen[w.keep]),
            manager,
        )
    with pytest.raises(Conflict):
        duplicates.merge_contacts(
            session,
            MergeRequest(survivor_id=third, merged_id=w.gone, survivor_version=seen[third]),
            manager,
        )
    with pytest.raises(PreconditionFailed):
        duplicates.merge_contacts(
            session,
            MergeRequest(survivor_id=w.keep, merged_id=third, survivor_version=seen[w.keep]),
            manager,
        )
    assert contacts.existing_contact_ids(session, [w.keep, w.gone, third]) == {w.keep, third}
    assert _task_contact(session, w.gone_task, manager) == w.keep


def test_the_version_claim_refuses_a_second_writer(session: Session, manager: Actor) -> None:
    """The compare-and-set on ``version`` itself: a claim on versions someone else bumped
    in the meantime fails with a 409."""
    w = _world(session, manager)
    _, merged = contacts.claim_contacts_for_merge(session, w.keep, w.gone, manager)
    stale = merged.model_copy()
    with pytest.raises(Conflict):
        contacts._claim_version(session, stale, None)
    session.rollback()
