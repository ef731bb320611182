"""A record's timeline: its own activities merged with those of the records under it, newest
first, each once, paged and filtered by kind; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.integration.activities.factories import at, deal, log, ref
from tests.integration.core.factories import actor, company, contact

from ichigen.core.audit import Actor
from ichigen.core.clock import utcnow
from ichigen.core.errors import BadRequest, NotFound
from ichigen.crm.activities import queries, service
from ichigen.crm.activities.schemas import ActivityCreate, ActivityUpdate


def _subjects(
    session: Session, record_type: str, record_id: int, by: Actor, kinds: list[str] | None = None
) -> list[str]:
    page = service.timeline(session, record_type, record_id, by, kinds=kinds, limit=100)
    return [a.subject for a in page.items]


def test_company_contact_and_deal_timelines_roll_up_and_show_each_activity_once(
    session: Session, admin: Actor
) -> None:
    firm = company(session, "Firm")
    other_firm = company(session, "Elsewhere")
    ann = contact(session, email="ann@firm.example", company_id=firm.id)
    bob = contact(session, email="bob@firm.example", company_id=firm.id)
    stranger = contact(session, email="s@elsewhere.example", company_id=other_firm.id)
    big = deal(session, "Big deal", firm.id, [ann.id])
    other = deal(session, "Other deal", other_firm.id, [stranger.id])
    log(session, admin, "note", [ref("company", firm.id)], 1, subject="company note")
    log(session, admin, "call", [ref("contact", ann.id)], 2, subject="ann call")
    log(session, admin, "email", [ref("contact", bob.id)], 3, subject="bob email")
    log(session, admin, "note", [ref("deal", big)], 4, subject="deal note")
    log(
        session,
        admin,
        "meeting",
        [ref("contact", ann.id), ref("company", firm.id), ref("deal", big), ref("contact", bob.id)],
        5,
        subject="everyone",
    )
    log(session, admin, "note", [ref("contact", stranger.id)], 6, subject="stranger")
    log(session, admin, "note", [ref("deal", other)], 7, subject="other deal")

    assert _subjects(session, "company", firm.id, admin) == [
        "everyone",
        "deal note",
        "bob email",
        "ann call",
        "company note",
    ]
    # A contact shows its own and its deals' activities, not its company's.
    assert _subjects(session, "contact", ann.id, admin) == ["everyone", "deal note", "ann call"]
    assert _subjects(session, "deal", big, admin) == ["everyone", "deal note"]
    assert _subjects(session, "company", other_firm.id, admin) == ["other deal", "stranger"]
    assert _subjects(session, "company", firm.id, admin, kinds=["note", "call"]) == [
        "deal note",
        "ann call",
        "company note",
    ]


def test_paging_walks_every_activity_once_in_order_with_ties_broken_by_id(
    session: Session, admin: Actor
) -> None:
    firm = company(session, "Firm")
    people = [contact(session, email=f"p{i}@firm.example", company_id=firm.id) for i in range(3)]
    logged = []
    for index in range(11):
        links = [ref("contact", people[index % 3].id), ref("company", firm.id)]
        # Several activities share a minute: the order falls back on the id.
        logged.append(log(session, admin, "note", links, index // 3, subject=f"n{index}"))
    expected = [a.id for a in sorted(logged, key=lambda a: (a.occurred_at, a.id), reverse=True)]
    seen: list[int] = []
    cursor = None
    while True:
        page = service.timeline(session, "company", firm.id, admin, cursor=cursor, limit=4)
        seen += [a.id for a in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected


def test_a_changed_time_moves_the_activity_on_every_timeline(
    session: Session, admin: Actor
) -> None:
    firm = company(session, "Firm")
    person = contact(session, email="a@firm.example", company_id=firm.id)
    early = log(session, admin, "note", [ref("contact", person.id)], 0, subject="early")
    log(session, admin, "note", [ref("company", firm.id)], 10, subject="late")
    service.update_activity(
        session,
        early.id,
        ActivityUpdate.model_validate({"occurred_at": "2026-05-02T00:00:00Z"}),
        admin,
    )
    assert _subjects(session, "company", firm.id, admin) == ["early", "late"]


def test_a_company_with_more_contacts_than_one_query_takes_is_read_in_slices(
    session: Session, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "IDS_PER_QUERY", 2)
    firm = company(session, "Firm")
    people = [contact(session, email=f"p{i}@firm.example", company_id=firm.id) for i in range(5)]
    for index in range(10):
        links = [ref("contact", people[index % 5].id), ref("contact", people[(index + 1) % 5].id)]
        log(session, admin, "call", links, index, subject=f"c{index}")
    assert len(queries.record_slices({"company": [firm.id], "contact": [p.id for p in people]})) > 1
    first = service.timeline(session, "company", firm.id, admin, limit=3)
    assert [a.subject for a in first.items] == ["c9", "c8", "c7"]
    rest = service.timeline(session, "company", firm.id, admin, cursor=first.next_cursor, limit=10)
    assert [a.subject for a in rest.items] == [f"c{i}" for i in range(6, -1, -1)]
    assert rest.next_cursor is None


def test_bad_requests_name_their_problem(session: Session, admin: Actor) -> None:
    person = contact(session, email="a@example.jp")
    with pytest.raises(NotFound):
        service.timeline(session, "contact", 999, admin)
    with pytest.raises(NotFound):
        service.timeline(session, "ticket", 1, admin)
    with pytest.raises(BadRequest) as info:
        service.timeline(session, "contact", person.id, admin, kinds=["note", "fax"])
    assert info.value.errors[0].loc == ("query", "kind", 1)
    with pytest.raises(BadRequest) as info:
        service.timeline(session, "contact", person.id, admin, cursor="forged")
    assert info.value.errors[0].loc == ("query", "cursor")
    viewer = actor(session, "v@example.com", "viewer")
    assert service.timeline(session, "contact", person.id, viewer).items == []


def test_the_activity_list_filters_by_kind_owner_record_and_dates(
    session: Session, admin: Actor
) -> None:
    rep = actor(session, "rep@example.com", "sales")
    firm = company(session, "Firm")
    person = contact(session, email="a@firm.example", company_id=firm.id)
    log(session, rep, "call", [ref("contact", person.id)], 0, subject="rep call")
    log(session, admin, "note", [ref("company", firm.id)], 10, subject="admin note")
    log(session, rep, "email", [ref("company", firm.id)], 20, subject="rep email")

    def subjects(**kw: Any) -> list[str]:
        return [a.subject for a in service.list_activities(session, admin, **kw).items]

    assert subjects() == ["rep email", "admin note", "rep call"]
    assert subjects(owner_id=rep.user_id) == ["rep email", "rep call"]
    assert subjects(kinds=["note", "call"]) == ["admin note", "rep call"]
    assert subjects(record=ref("company", firm.id)) == ["rep email", "admin note"]
    assert subjects(record=ref("company", firm.id), owner_id=rep.user_id) == ["rep email"]
    assert subjects(start=at(5), end=at(20)) == ["admin note"]
    page = service.list_activities(session, admin, limit=2)
    more = service.list_activities(session, admin, limit=2, cursor=page.next_cursor)
    assert [a.subject for a in more.items] == ["rep call"]


def test_a_large_timeline_looks_in_recent_windows_first_and_misses_nothing(
    session: Session, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queries, "WINDOWED_FROM", 2)
    firm = company(session, "Firm")
    people = [contact(session, email=f"p{i}@firm.example", company_id=firm.id) for i in range(3)]
    now = utcnow()
    # Ages in days: a future meeting, this week, this quarter, years ago.
    ages = [-3, 1, 2, 30, 90, 400, 2000, 5000]
    for index, age in enumerate(ages):
        service.log_activity(
            session,
            ActivityCreate.model_validate(
                {
                    "kind": "note",
                    "subject": f"{age}d",
                    "occurred_at": now - timedelta(days=age),
                    "links": [{"type": "contact", "id": people[index % 3].id}],
                }
            ),
            admin,
        )
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = service.timeline(session, "company", firm.id, admin, cursor=cursor, limit=3)
        seen += [a.subject for a in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"{age}d" for age in ages]
    assert [a.subject for a in service.timeline(session, "company", firm.id, admin).items] == [
        f"{age}d" for age in ages
    ]
