"""Logging many activities at once: the same rules as one at a time, all or nothing; on SQLite
and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.integration.activities.factories import at, deal, ref
from tests.integration.core.factories import audit_count, company, contact, row_count

from ichigen.core.audit import Actor, record_history
from ichigen.core.errors import ValidationFailed
from ichigen.crm.activities import service
from ichigen.crm.activities.models import Activity, ActivityLink
from ichigen.crm.activities.schemas import ActivityCreate


def test_a_batch_lands_in_order_with_links_timelines_and_audit_rows(
    session: Session, admin: Actor
) -> None:
    person = contact(session, last_name="山田", first_name="太郎")
    firm = company(session, "サクラ精工")
    sale = deal(session, "Line 3 retrofit", firm.id, [person.id])
    items = [
        ActivityCreate(
            kind="call",
            subject="Follow-up",
            occurred_at=at(0),
            direction="outbound",
            duration_seconds=300,
            outcome="connected",
            links=[ref("contact", person.id), ref("deal", sale), ref("deal", sale)],
        ),
        ActivityCreate(
            kind="meeting",
            subject="Demo",
            occurred_at=at(60),
            ends_at=at(120),
            attendees=[{"email": "Taro.Yamada@Example.co.jp", "name": "山田 太郎"}],
            links=[ref("company", firm.id)],
        ),
        ActivityCreate(kind="note", body="Budget approved.", links=[ref("deal", sale)]),
    ]

    ids = service.log_activities(session, items, admin)

    assert len(ids) == 3 and ids == sorted(ids)
    read = [service.get_activity(session, i, admin) for i in ids]
    assert [a.kind for a in read] == ["call", "meeting", "note"]
    assert [(link.type, link.id) for link in read[0].links] == [
        ("contact", person.id),
        ("deal", sale),
    ]
    assert read[1].attendees[0].email == "taro.yamada@example.co.jp"
    assert all(a.owner_id == admin.user_id for a in read)
    assert read[2].occurred_at > at(120)
    timeline = service.timeline(session, "company", firm.id, admin)
    assert {a.id for a in timeline.items} == set(ids)
    kinds = dict(session.execute(select(ActivityLink.activity_id, ActivityLink.kind)).all())
    assert kinds[ids[1]] == "meeting"
    [entry] = record_history(session, "activities", ids[0])
    assert entry.action == "create" and entry.changes["outcome"] == [None, "connected"]
    assert entry.changes["links"][1] == [f"contact:{person.id}", f"deal:{sale}"]


def test_one_bad_item_refuses_the_batch_and_names_it(session: Session, admin: Actor) -> None:
    person = contact(session, last_name="佐藤", first_name="花子")
    items = [
        ActivityCreate(kind="note", body="fine", links=[ref("contact", person.id)]),
        ActivityCreate(
            kind="note", outcome="connected", links=[ref("contact", person.id), ref("deal", 999)]
        ),
        ActivityCreate(kind="email", links=[], owner_id=424242),
    ]
    audits = audit_count(session)

    with pytest.raises(ValidationFailed) as info:
        service.log_activities(session, items, admin)

    problems = {e.loc for e in info.value.errors}
    assert problems == {
        ("items", 1, "outcome"),
        ("items", 1, "links", 1),
        ("items", 2, "owner_id"),
        ("items", 2, "links"),
    }
    assert row_count(session, Activity) == 0 and audit_count(session) == audits
