"""iCalendar reading and writing without a database: time zones, folded lines, people, and
the problems a refused file names."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from ichigen.core.errors import ValidationFailed
from ichigen.crm.activities.ical import meetings_to_ical, parse_ical
from ichigen.crm.activities.schemas import ActivityRead

TOKYO = ZoneInfo("Asia/Tokyo")


def _file(*lines: str) -> bytes:
    return (
        "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", *lines, "END:VCALENDAR"]) + "\r\n"
    ).encode()


def test_zones_from_iana_windows_and_the_files_own_vtimezone() -> None:
    events = parse_ical(
        _file(
            "BEGIN:VTIMEZONE",
            "TZID:Custom India",
            "BEGIN:STANDARD",
            "DTSTART:19700101T000000",
            "TZOFFSETFROM:+0530",
            "TZOFFSETTO:+0530",
            "END:STANDARD",
            "END:VTIMEZONE",
            "BEGIN:VEVENT",
            "UID:a",
            "DTSTART;TZID=Tokyo Standard Time:20260512T100000",
            "DURATION:PT30M",
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:b",
            "DTSTART;TZID=Custom India:20260512T100000",
            "DTEND;TZID=Europe/Paris:20260512T080000",
            "END:VEVENT",
        ),
        UTC,
    )
    assert [(e.start, e.end) for e in events] == [
        (datetime(2026, 5, 12, 1, 0, tzinfo=UTC), datetime(2026, 5, 12, 1, 30, tzinfo=UTC)),
        (datetime(2026, 5, 12, 4, 30, tzinfo=UTC), datetime(2026, 5, 12, 6, 0, tzinfo=UTC)),
    ]


def test_floating_times_all_day_events_and_events_without_an_end() -> None:
    events = parse_ical(
        _file(
            "BEGIN:VEVENT",
            "UID:floating",
            "DTSTART:20260512T100000",
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:day",
            "DTSTART;VALUE=DATE:20260601",
            "END:VEVENT",
        ),
        TOKYO,
    )
    floating, day = events
    assert (floating.start, floating.end, floating.all_day) == (
        datetime(2026, 5, 12, 1, 0, tzinfo=UTC),
        None,
        False,
    )
    assert (day.start, day.end, day.all_day) == (
        datetime(2026, 6, 1, tzinfo=UTC),
        datetime(2026, 6, 2, tzinfo=UTC),
        True,
    )


def test_folded_lines_people_status_and_changed_occurrences() -> None:
    [event, moved] = parse_ical(
        _file(
            "BEGIN:VEVENT",
            "UID:series-1",
            "SUMMARY:A long summary that the writer",
            "  folded onto a second line",
            "DTSTART:20260512T100000Z",
            "STATUS:CANCELLED",
            'ORGANIZER;CN="Rep, Sales":mailto:Rep@Ichigen.Example',
            "ATTENDEE;CN=Ann:MAILTO:ann@firm.example",
            "ATTENDEE:mailto:ann@firm.example",
            "ATTENDEE;CUTYPE=ROOM:Room 3",
            "END:VEVENT",
            "BEGIN:VEVENT",
            "UID:series-1",
            "RECURRENCE-ID:20260519T100000Z",
            "DTSTART:20260520T100000Z",
            "END:VEVENT",
        ),
        UTC,
    )
    assert event.subject == "A long summary that the writer folded onto a second line"
    assert event.cancelled and not event.occurrence and moved.occurrence
    assert [(p.email, p.name) for p in event.attendees] == [("ann@firm.example", "Ann")]
    assert event.organizer is not None and event.organizer.email == "rep@ichigen.example"
    assert [p.email for p in event.people] == ["rep@ichigen.example", "ann@firm.example"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            _file("BEGIN:VEVENT", "UID:x", "DTSTART:20260512T100000Z"),
            "line 6: END:VCALENDAR does not close BEGIN:VEVENT (line 3)",
        ),
        (_file("END:VEVENT"), "line 3: END:VEVENT without a BEGIN"),
        (_file("BEGIN:VEVENT", "UID:x", "DTSTART:1", "END:VEVENT"), "line 3, VEVENT #1 (UID 'x')"),
        (
            _file(
                "BEGIN:VEVENT",
                "UID:x",
                "DTSTART;VALUE=DATE:20260512",
                "DTEND:20260513T100000Z",
                "END:VEVENT",
            ),
            "same type",
        ),
        (
            b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
            "a second VCALENDAR",
        ),
        (b"SUMMARY:x\r\n", "starts with BEGIN:VCALENDAR"),
    ],
)
def test_refused_files_name_the_line_and_component(data: bytes, expected: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        parse_ical(data, UTC)
    assert any(expected in e.msg for e in info.value.errors), info.value.errors
    assert info.value.status == 422


def test_written_meetings_read_back_the_same() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    meeting = ActivityRead.model_validate(
        {
            "id": 7,
            "kind": "meeting",
            "subject": "Kick-off; phase 2, part 1",
            "body": "Agenda:\n1. budget",
            "occurred_at": "2026-05-12T01:00:00Z",
            "ends_at": "2026-05-12T02:00:00Z",
            "all_day": False,
            "direction": None,
            "duration_seconds": None,
            "outcome": None,
            "email_from": None,
            "email_to": [],
            "attendees": [{"email": "ann@firm.example", "name": "山田 花子"}],
            "location": "本社 3F",
            "owner_id": 3,
            "task_id": None,
            "external_id": None,
            "ical_uid": None,
            "links": [],
            "version": 2,
            "created_at": now,
            "updated_at": now,
        }
    )
    data = meetings_to_ical([meeting], host="crm.example", organizers={3: ("rep@x.example", "Rep")})
    assert b"UID:ichigen-activity-7@crm.example" in data and b"SEQUENCE:1" in data
    [event] = parse_ical(data, UTC)
    assert (event.subject, event.description, event.location) == (
        meeting.subject,
        meeting.body,
        meeting.location,
    )
    assert (event.start, event.end) == (meeting.occurred_at, meeting.ends_at)
    assert [(p.email, p.name) for p in event.attendees] == [("ann@firm.example", "山田 花子")]
    assert event.organizer is not None and event.organizer.email == "rep@x.example"
