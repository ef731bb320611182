"""Meetings in and out of iCalendar (RFC 5545) files, with the ``icalendar`` library.

Reading checks the file's structure first (content lines, BEGIN/END nesting), so that a
problem is reported with its line number and component, and then lets ``icalendar`` parse
it. Every time becomes UTC: a TZID names a zone (IANA, Windows names, or the file's own
VTIMEZONE); floating times are read in the zone the caller gives; all-day events keep their
dates (midnight UTC of each date, flagged ``all_day``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import urlsplit

from icalendar import Calendar, Event, vCalAddress
from icalendar.error import BrokenCalendarProperty, IncompleteComponent, InvalidCalendar

from ichigen.core.errors import FieldError, ValidationFailed
from ichigen.core.normalise import normalise_email
from ichigen.crm.activities.schemas import ActivityRead

PRODID = "-//ichigen//ichigen CRM//EN"
#: Problems listed at most per refused file.
MAX_PROBLEMS = 50

_NAME = r"[A-Za-z0-9-]+"
_VALUE = r'(?:"[^"]*"|[^";:,]*)'
_CONTENT_LINE = re.compile(rf"^{_NAME}(?:;{_NAME}={_VALUE}(?:,{_VALUE})*)*:")


@dataclass(frozen=True)
class ParsedAttendee:
    email: str
    name: str | None = None


@dataclass
class ParsedEvent:
    """One VEVENT as a meeting: UTC times, and where in the file it starts."""

    uid: str
    line: int
    start: datetime
    end: datetime | None
    all_day: bool
    subject: str = ""
    description: str = ""
    location: str | None = None
    attendees: list[ParsedAttendee] = field(default_factory=list)
    organizer: ParsedAttendee | None = None
    cancelled: bool = False
    #: A changed occurrence of a repeating event (it shares the UID of the series).
    occurrence: bool = False

    @property
    def people(self) -> list[ParsedAttendee]:
        """The organizer and the attendees: whom the meeting can be linked to."""
        return [self.organizer, *self.attendees] if self.organizer else self.attendees


def _problem(message: str) -> FieldError:
    return FieldError(("file",), message, "ical")


def _refuse(problems: list[FieldError]) -> ValidationFailed:
    shown = problems[:MAX_PROBLEMS]
    first = shown[0].msg
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return ValidationFailed(
        f"The file is not a valid iCalendar file: {first}{more}; nothing was imported.", shown
    )


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _refuse([_problem(f"line {line}: the file is not UTF-8 text")]) from None


def _unfolded(text: str) -> list[tuple[int, str]]:
    """Logical content lines with the physical line each starts on (folds joined)."""
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw[:1] in (" ", "\t") and lines:
            start, joined = lines[-1]
            lines[-1] = (start, joined + raw[1:])
        elif raw.strip():
            lines.append((number, raw))
    return lines


def _structure(lines: list[tuple[int, str]]) -> list[int]:
    """Check content lines and BEGIN/END nesting; the line of each VEVENT, in order."""
    problems: list[FieldError] = []
    if not lines:
        raise _refuse([_problem("the file is empty")])
    if lines[0][1].strip().upper() != "BEGIN:VCALENDAR":
        problems.append(_problem(f"line {lines[0][0]}: a calendar starts with BEGIN:VCALENDAR"))
    stack: list[tuple[str, int]] = []
    events: list[int] = []
    calendars = 0
    for number, line in lines:
        if not _CONTENT_LINE.match(line):
            problems.append(
                _problem(f"line {number}: not an iCalendar content line: {line[:80]!r}")
            )
            continue
        name, _, value = line.partition(":")
        name = name.split(";", 1)[0].upper()
        component = value.strip().upper()
        if name == "BEGIN":
            if component == "VCALENDAR":
                calendars += 1
                if calendars > 1:
                    problems.append(_problem(f"line {number}: a second VCALENDAR in one file"))
            if component == "VEVENT" and [c for c, _ in stack] == ["VCALENDAR"]:
                events.append(number)
            stack.append((component, number))
        elif name == "END":
            if component not in (c for c, _ in stack):
                problems.append(_problem(f"line {number}: END:{component} without a BEGIN"))
                continue
            while stack[-1][0] != component:
                opened, at = stack.pop()
                problems.append(
                    _problem(
                        f"line {number}: END:{component} does not close BEGIN:{opened} (line {at})"
                    )
                )
            stack.pop()
        elif not stack:
            problems.append(_problem(f"line {number}: {name} outside BEGIN:VCALENDAR"))
    for component, at in stack:
        problems.append(_problem(f"line {at}: BEGIN:{component} is never closed"))
    if problems:
        raise _refuse(problems)
    return events


def _text(event: Event, name: str) -> str:
    value = event.get(name)
    return str(value).strip() if value is not None else ""


def _addresses(event: Event, name: str) -> list[ParsedAttendee]:
    """The people of one property (ATTENDEE, ORGANIZER) with a valid email address (others,
    such as rooms without one, are left out)."""
    found: dict[str, ParsedAttendee] = {}
    value = event.get(name)
    values: list[Any] = [] if value is None else value if isinstance(value, list) else [value]
    for value in values:
        raw = str(value).strip()
        if raw.lower().startswith("mailto:"):
            raw = raw[7:]
        try:
            email = normalise_email(raw)
        except ValueError:
            continue
        params = getattr(value, "params", {})
        common_name = str(params.get("CN", "")).strip()[:200] or None
        if email not in found or (common_name and not found[email].name):
            found[email] = ParsedAttendee(email, common_name)
    return list(found.values())


def _moment(value: date, zone: tzinfo, tzid: str | None) -> datetime:
    """A DTSTART/DTEND value in UTC (dates: midnight UTC of that date)."""
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), UTC)
    if value.tzinfo is None:
        if tzid:
            raise ValueError(f"unknown time zone {tzid!r}")
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _tzid(event: Event, name: str) -> str | None:
    prop = event.get(name)
    params = getattr(prop, "params", None)
    tzid = params.get("TZID") if params is not None else None
    return str(tzid) if tzid else None


def _event(event: Event, line: int, index: int, zone: tzinfo) -> ParsedEvent | list[FieldError]:
    where = f"line {line}, VEVENT #{index}"
    uid = _text(event, "UID")
    if uid:
        where += f" (UID {uid[:60]!r})"
    problems = [
        _problem(f"{where}: {name + ': ' if name else ''}{message}")
        for name, message in event.errors
    ]
    if not uid:
        problems.append(_problem(f"{where}: has no UID"))
    if "DTSTART" not in event:
        problems.append(_problem(f"{where}: has no DTSTART"))
    if problems:
        return problems
    try:
        raw_start = event.start
        raw_end = event.end
        start = _moment(raw_start, zone, _tzid(event, "DTSTART"))
        end = _moment(raw_end, zone, _tzid(event, "DTEND"))
    except (InvalidCalendar, IncompleteComponent, BrokenCalendarProperty, ValueError) as exc:
        return [_problem(f"{where}: {exc}")]
    all_day = not isinstance(raw_start, datetime)
    if end < start:
        return [_problem(f"{where}: DTEND is before DTSTART")]
    if all_day and end == start:
        end = start + timedelta(days=1)
    status = _text(event, "STATUS").upper()
    return ParsedEvent(
        uid=uid[:300],
        line=line,
        start=start,
        end=end if end > start else None,
        all_day=all_day,
        subject=_text(event, "SUMMARY"),
        description=_text(event, "DESCRIPTION")[:100_000],
        location=_text(event, "LOCATION")[:500] or None,
        attendees=_addresses(event, "ATTENDEE"),
        organizer=next(iter(_addresses(event, "ORGANIZER")), None),
        cancelled=status == "CANCELLED",
        occurrence="RECURRENCE-ID" in event,
    )


def parse_ical(data: bytes, zone: tzinfo) -> list[ParsedEvent]:
    """The VEVENTs of an iCalendar file, or ``ValidationFailed`` listing each problem with
    its line and component (the file is then refused as a whole)."""
    text = _decode(data)
    event_lines = _structure(_unfolded(text))
    try:
        calendar = Calendar.from_ical(text)
    except ValueError as exc:
        raise _refuse([_problem(str(exc)[:300])]) from None
    problems: list[FieldError] = [
        _problem(f"VCALENDAR: {name + ': ' if name else ''}{message}")
        for name, message in calendar.errors
    ]
    events: list[ParsedEvent] = []
    components = [c for c in calendar.subcomponents if isinstance(c, Event)]
    for index, (component, line) in enumerate(zip(components, event_lines, strict=False), 1):
        parsed = _event(component, line, index, zone)
        if isinstance(parsed, list):
            problems.extend(parsed)
        else:
            events.append(parsed)
    if problems:
        raise _refuse(problems)
    return events


# ----------------------------------------------------------------------------- export


def host_of(public_url: str) -> str:
    """The host part of ichigen's address, for the UIDs of exported meetings."""
    return urlsplit(public_url).hostname or "ichigen"


def meeting_uid(meeting: ActivityRead, host: str) -> str:
    return meeting.ical_uid or f"ichigen-activity-{meeting.id}@{host}"


def _address(email: str, name: str | None) -> vCalAddress:
    address = vCalAddress(f"mailto:{email}")
    if name:
        address.params["CN"] = name
    return address


def meetings_to_ical(
    meetings: Iterable[ActivityRead],
    *,
    host: str,
    organizers: Mapping[int, tuple[str, str]],
) -> bytes:
    """A VCALENDAR with one VEVENT per meeting, times in UTC (all-day ones as dates).

    ``organizers`` gives each owner's (email, name), written as the ORGANIZER.
    """
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    for meeting in meetings:
        event = Event()
        event.add("uid", meeting_uid(meeting, host))
        event.add("dtstamp", meeting.updated_at.astimezone(UTC))
        event.add("created", meeting.created_at.astimezone(UTC))
        event.add("last-modified", meeting.updated_at.astimezone(UTC))
        event.add("sequence", meeting.version - 1)
        start = meeting.occurred_at.astimezone(UTC)
        if meeting.all_day:
            event.add("dtstart", start.date())
            end = meeting.ends_at or start + timedelta(days=1)
            event.add("dtend", end.astimezone(UTC).date())
        else:
            event.add("dtstart", start)
            if meeting.ends_at is not None:
                event.add("dtend", meeting.ends_at.astimezone(UTC))
        event.add("summary", meeting.subject)
        if meeting.body:
            event.add("description", meeting.body)
        if meeting.location:
            event.add("location", meeting.location)
        if meeting.owner_id is not None and meeting.owner_id in organizers:
            email, name = organizers[meeting.owner_id]
            event.add("organizer", _address(email, name), encode=False)
        for attendee in meeting.attendees:
            event.add("attendee", _address(attendee.email, attendee.name), encode=False)
        calendar.add_component(event)
    encoded: bytes = calendar.to_ical()
    return encoded
