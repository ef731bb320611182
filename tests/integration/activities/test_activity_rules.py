"""Logging, changing and deleting activities through the service: kinds and their fields,
links, owners, versions and the audit log; on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.integration.activities.factories import at, deal, log, ref
from tests.integration.core.factories import actor, audit_count, company, contact, row_count, team

from ichigen.core.audit import Actor, record_history
from ichigen.core.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.crm.activities import service
from ichigen.crm.activities.models import Activity, ActivityDayCount, ActivityLink
from ichigen.crm.activities.schemas import ActivityCreate, ActivityUpdate


def _refused(session: Session, by: Actor, **fields: Any) -> dict[tuple[Any, ...], str]:
    with pytest.raises(ValidationFailed) as info:
        service.log_activity(session, ActivityCreate.model_validate(fields), by)
    return {e.loc: e.msg for e in info.value.errors}


def test_a_call_lands_with_its_fields_links_owner_and_audit_row(
    session: Session, admin: Actor
) -> None:
    person = contact(session, last_name="山田", first_name="太郎")
    firm = company(session, "サクラ精工")
    sale = deal(session, "Line 3 retrofit", firm.id, [person.id])
    call = log(
        session,
        admin,
        "call",
        [ref("contact", person.id), ref("company", firm.id), ref("deal", sale)],
        subject="Follow-up",
        direction="outbound",
        duration_seconds=540,
        outcome="connected",
    )
    assert (call.kind, call.direction, call.duration_seconds, call.outcome) == (
        "call",
        "outbound",
        540,
        "connected",
    )
    assert call.owner_id == admin.user_id and call.occurred_at == at(0) and call.version == 1
    assert [(link.type, link.id, link.name) for link in call.links] == [
        ("contact", person.id, "山田 太郎"),
        ("company", firm.id, "サクラ精工"),
        ("deal", sale, "Line 3 retrofit"),
    ]
    links = session.execute(select(ActivityLink.kind, ActivityLink.occurred_at)).all()
    assert {tuple(row) for row in links} == {("call", at(0))}
    [entry] = record_history(session, "activities", call.id)
    assert entry.action == "create" and entry.changes["outcome"] == [None, "connected"]
    assert entry.changes["links"][1] == [
        f"company:{firm.id}",
        f"contact:{person.id}",
        f"deal:{sale}",
    ]


def test_now_is_the_default_time_and_repeated_links_are_kept_once(
    session: Session, admin: Actor
) -> None:
    person = contact(session, email="a@example.jp")
    note = service.log_activity(
        session,
        ActivityCreate.model_validate(
            {
                "kind": "note",
                "body": "Met at the fair.",
                "links": [{"type": "contact", "id": person.id}] * 2,
            }
        ),
        admin,
    )
    assert len(note.links) == 1 and note.occurred_at.tzinfo is not None
    assert row_count(session, ActivityLink) == 1


def test_an_activity_linked_to_nothing_or_to_missing_records_is_refused(
    session: Session, admin: Actor
) -> None:
    person = contact(session, email="a@example.jp")
    assert set(_refused(session, admin, kind="note", links=[])) == {("links",)}
    errors = _refused(
        session,
        admin,
        kind="note",
        links=[
            {"type": "contact", "id": person.id},
            {"type": "contact", "id": 999},
            {"type": "deal", "id": 5},
            {"type": "company", "id": 7},
            {"type": "ticket", "id": 1},
        ],
    )
    assert set(errors) == {("links", 1), ("links", 2), ("links", 3), ("links", 4)}
    assert "contact 999 does not exist" in errors[("links", 1)]
    assert row_count(session, Activity) == 0 and audit_count(session, "activities") == 0


def test_fields_of_other_kinds_and_bad_values_are_refused_by_name(
    session: Session, admin: Actor
) -> None:
    links = [{"type": "contact", "id": contact(session, email="a@example.jp").id}]
    assert set(_refused(session, admin, kind="note", outcome="busy", links=links)) == {("outcome",)}
    assert set(
        _refused(
            session,
            admin,
            kind="call",
            attendees=[{"email": "x@example.jp"}],
            email_to=["y@example.jp"],
            links=links,
        )
    ) == {("attendees",), ("email_to",)}
    assert set(
        _refused(
            session,
            admin,
            kind="email",
            email_from="not an address",
            email_to=["ok@example.jp", "bad@@example"],
            links=links,
        )
    ) == {("email_from",), ("email_to", 1)}
    assert set(
        _refused(
            session,
            admin,
            kind="meeting",
            occurred_at=at(60).isoformat(),
            ends_at=at(0).isoformat(),
            links=links,
        )
    ) == {("ends_at",)}
    assert set(_refused(session, admin, kind="note", owner_id=999, links=links)) == {("owner_id",)}
    assert row_count(session, Activity) == 0


def test_email_addresses_are_normalised_like_contacts(session: Session, admin: Actor) -> None:
    person = contact(session, email="a@example.jp")
    email = log(
        session,
        admin,
        "email",
        [ref("contact", person.id)],
        subject="Quote",
        direction="inbound",
        email_from=" A@Example.JP ",
        email_to=["Sales@Ichigen.Example", "sales@ichigen.example"],
    )
    assert email.email_from == "a@example.jp"
    assert email.email_to == ["sales@ichigen.example"]


def test_a_meeting_keeps_attendees_location_and_whole_days(session: Session, admin: Actor) -> None:
    links = [ref("company", company(session, "Co").id)]
    meeting = log(
        session,
        admin,
        "meeting",
        links,
        ends_at=at(60),
        location="本社",
        attendees=[{"email": "B@example.jp", "name": "B"}, {"email": "b@example.jp"}],
    )
    assert meeting.ends_at == at(60) and meeting.location == "本社"
    assert [(a.email, a.name) for a in meeting.attendees] == [("b@example.jp", "B")]
    offsite = log(session, admin, "meeting", links, 30, all_day=True)
    assert offsite.all_day and offsite.occurred_at == at(-9 * 60)
    assert offsite.ends_at is not None and (offsite.ends_at - offsite.occurred_at).days == 1


def test_external_ids_are_unique(session: Session, admin: Actor) -> None:
    links = [ref("contact", contact(session, email="a@example.jp").id)]
    log(session, admin, "note", links, external_id="crm-1")
    with pytest.raises(Conflict) as info:
        log(session, admin, "note", links, external_id="crm-1")
    assert info.value.errors[0].loc == ("external_id",)


def test_update_checks_versions_rewrites_links_and_their_times(
    session: Session, admin: Actor
) -> None:
    first = contact(session, email="a@example.jp")
    second = contact(session, email="b@example.jp")
    call = log(session, admin, "call", [ref("contact", first.id)], outcome="busy")
    changed = service.update_activity(
        session,
        call.id,
        ActivityUpdate.model_validate(
            {
                "outcome": "connected",
                "occurred_at": at(90).isoformat(),
                "links": [{"type": "contact", "id": second.id}],
            }
        ),
        admin,
        if_version=1,
    )
    assert changed.version == 2 and changed.outcome == "connected"
    assert [(link.type, link.id) for link in changed.links] == [("contact", second.id)]
    assert session.execute(select(ActivityLink.record_id, ActivityLink.occurred_at)).all() == [
        (second.id, at(90))
    ]
    with pytest.raises(PreconditionFailed):
        service.update_activity(
            session, call.id, ActivityUpdate(subject="stale"), admin, if_version=1
        )
    same = service.update_activity(session, call.id, ActivityUpdate(outcome="connected"), admin)
    assert same.version == 2
    with pytest.raises(ValidationFailed) as info:
        service.update_activity(session, call.id, ActivityUpdate(location="Room 1"), admin)
    assert info.value.errors[0].loc == ("location",)
    with pytest.raises(ValidationFailed) as info:
        service.update_activity(session, call.id, ActivityUpdate(links=[]), admin)
    assert info.value.errors[0].loc == ("links",)
    history = record_history(session, "activities", call.id)
    assert [e.action for e in history] == ["update", "create"]
    assert history[0].changes["links"] == [[f"contact:{first.id}"], [f"contact:{second.id}"]]


def test_delete_removes_the_activity_from_every_timeline(session: Session, admin: Actor) -> None:
    person = contact(session, email="a@example.jp")
    note = log(session, admin, "note", [ref("contact", person.id)])
    service.delete_activity(session, note.id, admin, if_version=1)
    assert row_count(session, ActivityLink) == 0
    assert service.timeline(session, "contact", person.id, admin).items == []
    with pytest.raises(NotFound):
        service.get_activity(session, note.id, admin)
    assert [e.action for e in record_history(session, "activities", note.id)] == [
        "delete",
        "create",
    ]


def test_sales_change_only_their_own_or_their_teams_activities(
    session: Session, admin: Actor
) -> None:
    north = team(session, "North")
    rep = actor(session, "rep@example.com", "sales", north)
    teammate = actor(session, "mate@example.com", "sales", north)
    other = actor(session, "other@example.com", "sales")
    links = [ref("contact", contact(session, email="a@example.jp").id)]
    note = log(session, rep, "note", links, body="mine")
    assert note.owner_id == rep.user_id
    service.update_activity(session, note.id, ActivityUpdate(body="ours"), teammate)
    with pytest.raises(PermissionDenied):
        service.update_activity(session, note.id, ActivityUpdate(body="theirs"), other)
    with pytest.raises(PermissionDenied):
        service.delete_activity(session, note.id, other)
    service.update_activity(session, note.id, ActivityUpdate(body="admin"), admin)


def test_a_completed_task_is_logged_under_the_tasks_permission(
    session: Session, admin: Actor
) -> None:
    marketer = actor(session, "mk@example.com", "marketing")
    links = [ref("contact", contact(session, email="a@example.jp").id)]
    done = log(session, marketer, "task", links, subject="Send brochure", task_id=41)
    assert (done.kind, done.task_id) == ("task", 41)
    with pytest.raises(PermissionDenied):
        log(session, marketer, "note", links)
    viewer = actor(session, "v@example.com", "viewer")
    with pytest.raises(PermissionDenied):
        log(session, viewer, "task", links)


def _counts_table(session: Session) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in session.execute(
            select(
                ActivityDayCount.day,
                ActivityDayCount.owner_id,
                ActivityDayCount.kind,
                ActivityDayCount.count,
            )
            .where(ActivityDayCount.count != 0)
            .order_by(ActivityDayCount.day, ActivityDayCount.owner_id, ActivityDayCount.kind)
        )
    ]


def test_activity_counts_by_owner_and_day_follow_every_write(
    session: Session, admin: Actor
) -> None:
    rep = actor(session, "rep@example.com", "sales")
    links = [ref("contact", contact(session, email="a@example.jp").id)]
    day = 24 * 60  # at(n * day) is 09:00 UTC, n days after 2026-05-01
    first = log(session, rep, "call", links, 0)
    moved = log(session, rep, "call", links, day)
    service.log_activities(
        session,
        [
            ActivityCreate(kind="email", links=links, occurred_at=at(2 * day)),
            ActivityCreate(kind="email", links=links, occurred_at=at(2 * day + 14 * 60 + 59)),
        ],
        rep,
    )
    log(session, admin, "note", links, 3 * day)
    log(session, rep, "call", links, 5 * day)  # on the end day: outside [first, end)
    log(session, rep, "call", links, -day)  # the day before the first
    log(session, admin, "note", links, 0, owner_id=None)  # no owner: not counted
    may = (at(0).date(), at(5 * day).date())
    assert service.activity_counts_by_owner(session, *may) == {
        rep.user_id: {"call": 2, "email": 2},
        admin.user_id: {"note": 1},
    }
    # 23:59 UTC on 2026-05-03 is still that day's.
    assert service.activity_counts_by_owner(session, at(2 * day).date(), at(3 * day).date()) == {
        rep.user_id: {"email": 2}
    }

    # A new owner, a new day, a deletion: each count follows.
    service.update_activity(session, moved.id, ActivityUpdate(owner_id=admin.user_id), admin)
    service.update_activity(session, first.id, ActivityUpdate(occurred_at=at(-2 * day)), admin)
    service.update_activity(session, first.id, ActivityUpdate(subject="Same day"), admin)
    notes = service.list_activities(session, admin, kinds=["note"], owner_id=admin.user_id)
    service.delete_activity(session, notes.items[0].id, admin)
    assert service.activity_counts_by_owner(session, *may) == {
        rep.user_id: {"email": 2},
        admin.user_id: {"call": 1},
    }

    # The running counts equal a recount from the activities.
    kept = _counts_table(session)
    service.rebuild_activity_counts(session)
    assert _counts_table(session) == kept
    assert len(kept) == 5
