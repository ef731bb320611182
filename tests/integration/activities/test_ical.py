"""Meetings to and from iCalendar files through the service: export, import linked by
attendee email, re-import by UID, time zones, and malformed files that change nothing; on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from icalendar import Calendar
from sqlalchemy.orm import Session
from tests.integration.activities.factories import at, log, ref
from tests.integration.core.factories import actor, audit_count, company, contact, row_count

from ichigen.core.audit import Actor
from ichigen.core.errors import ValidationFailed
from ichigen.crm.activities import service
from ichigen.crm.activities.models import Activity
from ichigen.crm.activities.schemas import RecordRef


def _calendar(*events: str) -> bytes:
    body = "".join(f"BEGIN:VEVENT\r\n{e.strip()}\r\nEND:VEVENT\r\n" for e in events)
    return (
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n{body}END:VCALENDAR\r\n".encode()
    )


def _event(uid: str, *lines: str) -> str:
    return "\r\n".join([f"UID:{uid}", *lines])


def test_imported_events_link_to_contacts_by_attendee_and_reimport_updates(
    session: Session, admin: Actor
) -> None:
    ann = contact(session, email="ann@firm.example", last_name="Ann")
    firm = company(session, "Firm")
    data = _calendar(
        _event(
            "demo-1@calendar.example",
            "SUMMARY:Product demo",
            "DESCRIPTION:Line one\\nLine two",
            "LOCATION:Room 3",
            "DTSTART;TZID=Asia/Tokyo:20260512T100000",
            "DTEND;TZID=Asia/Tokyo:20260512T113000",
            "ORGANIZER;CN=Rep:mailto:rep@ichigen.example",
            "ATTENDEE;CN=Ann:mailto:ANN@firm.example",
        ),
        _event(
            "offsite-2@calendar.example",
            "SUMMARY:Offsite",
            "DTSTART;VALUE=DATE:20260601",
            "DTEND;VALUE=DATE:20260603",
            "ATTENDEE:mailto:nobody@else.example",
        ),
    )
    report = service.import_meetings_ical(session, data, admin)
    assert (report.created, report.skipped) == (1, 1)
    assert report.events[1].reason and "contact" in report.events[1].reason
    demo = service.get_activity(session, report.events[0].id or 0, admin)
    assert demo.kind == "meeting" and demo.ical_uid == "demo-1@calendar.example"
    assert demo.occurred_at == datetime(2026, 5, 12, 1, 0, tzinfo=UTC)
    assert demo.ends_at == datetime(2026, 5, 12, 2, 30, tzinfo=UTC)
    assert (demo.subject, demo.body, demo.location) == (
        "Product demo",
        "Line one\nLine two",
        "Room 3",
    )
    assert [(a.email, a.name) for a in demo.attendees] == [("ann@firm.example", "Ann")]
    assert [(link.type, link.id) for link in demo.links] == [("contact", ann.id)]

    # Again with a record to link to: the demo is unchanged except for the new link, and
    # the offsite is now imported as an all-day meeting.
    again = service.import_meetings_ical(session, data, admin, record=ref("company", firm.id))
    assert [e.status for e in again.events] == ["updated", "created"]
    assert {
        (link.type, link.id) for link in service.get_activity(session, demo.id, admin).links
    } == {
        ("contact", ann.id),
        ("company", firm.id),
    }
    offsite = service.get_activity(session, again.events[1].id or 0, admin)
    assert offsite.all_day
    assert (offsite.occurred_at, offsite.ends_at) == (
        datetime(2026, 6, 1, tzinfo=UTC),
        datetime(2026, 6, 3, tzinfo=UTC),
    )
    third = service.import_meetings_ical(session, data, admin, record=ref("company", firm.id))
    assert [e.status for e in third.events] == ["unchanged", "unchanged"]
    assert row_count(session, Activity) == 2


def test_export_then_import_round_trips_without_duplicates(session: Session, admin: Actor) -> None:
    person = contact(session, email="ann@firm.example")
    links = [ref("contact", person.id)]
    meeting = log(
        session,
        admin,
        "meeting",
        links,
        0,
        subject="Kick-off, phase 2",
        body="Agenda; budget",
        ends_at=at(45),
        location="本社 3F",
        attendees=[{"email": "ann@firm.example", "name": "山田 花子"}],
    )
    log(session, admin, "meeting", links, 24 * 60, subject="Next day", all_day=True)
    log(session, admin, "call", links, 5, subject="not a meeting")
    exported = service.export_meetings_ical(
        session, admin, record=RecordRef(type="contact", id=person.id)
    )
    calendar = Calendar.from_ical(exported)
    events = calendar.walk("VEVENT")
    assert sorted(str(e["SUMMARY"]) for e in events) == ["Kick-off, phase 2", "Next day"]
    kickoff = next(e for e in events if str(e["SUMMARY"]).startswith("Kick"))
    assert kickoff.start == at(0) and kickoff.end == at(45)
    assert str(kickoff["UID"]).startswith(f"ichigen-activity-{meeting.id}@")
    assert [str(a) for a in [kickoff["ATTENDEE"]]] == ["mailto:ann@firm.example"]
    assert "BEGIN:VEVENT" in exported.decode() and b"DTSTART;VALUE=DATE:20260502" in exported

    report = service.import_meetings_ical(session, exported, admin)
    assert [e.status for e in report.events] == ["unchanged", "unchanged"]
    assert row_count(session, Activity) == 3
    edited = exported.replace(b"SUMMARY:Kick-off", b"SUMMARY:Kick-off (moved)")
    report = service.import_meetings_ical(session, edited, admin)
    assert sorted(e.status for e in report.events) == ["unchanged", "updated"]
    assert service.get_activity(session, meeting.id, admin).subject == "Kick-off (moved), phase 2"

    ranged = Calendar.from_ical(
        service.export_meetings_ical(session, admin, start=at(-60), end=at(60))
    )
    assert [str(e["SUMMARY"]) for e in ranged.walk("VEVENT")] == ["Kick-off (moved), phase 2"]


def test_floating_times_are_read_in_the_given_zone(session: Session, admin: Actor) -> None:
    firm = company(session, "Firm")
    data = _calendar(_event("f-1", "SUMMARY:Floating", "DTSTART:20260512T100000"))
    report = service.import_meetings_ical(
        session, data, admin, record=ref("company", firm.id), timezone="Asia/Tokyo"
    )
    meeting = service.get_activity(session, report.events[0].id or 0, admin)
    assert meeting.occurred_at == datetime(2026, 5, 12, 1, 0, tzinfo=UTC)
    assert meeting.ends_at is None
    with pytest.raises(ValidationFailed) as info:
        service.import_meetings_ical(session, data, admin, timezone="Mars/Olympus")
    assert info.value.errors[0].loc == ("timezone",)


def test_a_dry_run_reports_and_writes_nothing(session: Session, admin: Actor) -> None:
    firm = company(session, "Firm")
    data = _calendar(_event("d-1", "SUMMARY:Dry", "DTSTART:20260512T100000Z"))
    report = service.import_meetings_ical(
        session, data, admin, record=ref("company", firm.id), dry_run=True
    )
    assert (report.created, report.dry_run) == (1, True)
    assert row_count(session, Activity) == 0 and audit_count(session, "activities") == 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "the file is empty"),
        (b"hello\r\n", "line 1"),
        (
            _calendar(_event("x", "DTSTART:2026XX01T100000Z")).replace(b"END:VCALENDAR\r\n", b""),
            "BEGIN:VCALENDAR is never closed",
        ),
        (_calendar(_event("x", "DTSTART:2026XX01T100000Z")), "line 4, VEVENT #1 (UID 'x')"),
        (_calendar(_event("x", "SUMMARY:no start")), "has no DTSTART"),
        (_calendar("SUMMARY:no uid\r\nDTSTART:20260512T100000Z"), "has no UID"),
        (
            _calendar(_event("x", "DTSTART:20260512T100000Z", "DTEND:20260512T090000Z")),
            "DTEND is before DTSTART",
        ),
        (
            _calendar(_event("x", "DTSTART;TZID=Nowhere/Land:20260512T100000")),
            "unknown time zone 'Nowhere/Land'",
        ),
        (
            b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nEND:VCALENDAR\r\n",
            "line 3: END:VCALENDAR does not close BEGIN:VEVENT",
        ),
        ("BEGIN:VCALENDAR\r\nSUMMARY:\udcff\r\n".encode("utf-8", "surrogateescape"), "not UTF-8"),
    ],
)
def test_a_malformed_file_names_its_problem_and_imports_nothing(
    session: Session, admin: Actor, data: bytes, expected: str
) -> None:
    firm = company(session, "Firm")
    good = _event("good-1", "SUMMARY:Fine", "DTSTART:20260512T100000Z")
    if data.startswith(b"BEGIN:VCALENDAR\r\nVERSION"):
        # A good event before the bad one is not imported either.
        data = data.replace(
            b"BEGIN:VEVENT", f"BEGIN:VEVENT\r\n{good}\r\nEND:VEVENT\r\nBEGIN:VEVENT".encode(), 1
        )
        expected = expected.replace("line 4, VEVENT #1", "line 9, VEVENT #2")
    with pytest.raises(ValidationFailed) as info:
        service.import_meetings_ical(session, data, admin, record=ref("company", firm.id))
    messages = " | ".join(e.msg for e in info.value.errors)
    assert expected in messages, messages
    assert all(e.loc == ("file",) for e in info.value.errors)
    assert row_count(session, Activity) == 0


def test_a_meeting_of_another_owner_is_skipped_not_overwritten(
    session: Session, admin: Actor
) -> None:
    owner = actor(session, "owner@example.com", "sales")
    intruder = actor(session, "intruder@example.com", "sales")
    firm = company(session, "Firm")
    data = _calendar(_event("own-1", "SUMMARY:Mine", "DTSTART:20260512T100000Z"))
    service.import_meetings_ical(session, data, owner, record=ref("company", firm.id))
    changed = data.replace(b"SUMMARY:Mine", b"SUMMARY:Taken")
    report = service.import_meetings_ical(
        session, changed, intruder, record=ref("company", firm.id)
    )
    assert report.events[0].status == "skipped" and "another owner" in (
        report.events[0].reason or ""
    )
    assert service.list_activities(session, admin).items[0].subject == "Mine"
