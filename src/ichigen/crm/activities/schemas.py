"""Activities: request and response shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from ichigen.core.schemas import RecordId

ActivityKind = Literal["note", "call", "email", "meeting", "task"]
RecordType = Literal["contact", "company", "deal", "ticket"]
Direction = Literal["inbound", "outbound"]
CallOutcome = Literal["connected", "left_voicemail", "no_answer", "busy", "wrong_number"]

#: Every kind, in the order the UI offers them.
KINDS: tuple[str, ...] = ("note", "call", "email", "meeting", "task")
#: Kinds a person logs by hand (a ``task`` activity is written when a task is completed).
LOGGED_KINDS: tuple[str, ...] = ("note", "call", "email", "meeting")
RECORD_TYPES: tuple[str, ...] = ("contact", "company", "deal", "ticket")
OUTCOMES: tuple[str, ...] = ("connected", "left_voicemail", "no_answer", "busy", "wrong_number")

Subject = Annotated[str, StringConstraints(max_length=500, strip_whitespace=True)]
Body = Annotated[str, Field(max_length=100_000)]
EmailAddress = Annotated[str, Field(min_length=3, max_length=320)]


class RecordRef(BaseModel):
    """A record an activity is about: a contact, company, deal (or, later, a ticket)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: RecordType
    id: RecordId


class Attendee(BaseModel):
    """Someone at a meeting, by email address and (optionally) name."""

    model_config = ConfigDict(extra="forbid")

    email: EmailAddress
    name: Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)] | None = None


EXAMPLE_CALL: dict[str, Any] = {
    "kind": "call",
    "subject": "見積もりのフォローアップ",
    "body": "来週までに改訂版の見積もりを送付することで合意。",
    "occurred_at": "2026-05-12T05:30:00Z",
    "direction": "outbound",
    "duration_seconds": 540,
    "outcome": "connected",
    "links": [{"type": "contact", "id": 12}, {"type": "deal", "id": 3}],
}
EXAMPLE_MEETING: dict[str, Any] = {
    "kind": "meeting",
    "subject": "製品デモ",
    "occurred_at": "2026-05-14T01:00:00Z",
    "ends_at": "2026-05-14T02:00:00Z",
    "location": "大阪本社 3F 会議室",
    "attendees": [{"email": "taro.yamada@sakura-seiko.co.jp", "name": "山田 太郎"}],
    "links": [{"type": "company", "id": 4}],
}


class ActivityFields(BaseModel):
    """What a caller may set on an activity (shared by create and update)."""

    model_config = ConfigDict(extra="forbid")

    subject: Subject = ""
    body: Body = ""
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened (a meeting's start); none means now."
    )
    ends_at: AwareDatetime | None = Field(
        default=None, description="A meeting's end; after `occurred_at`."
    )
    all_day: bool = Field(
        default=False, description="A meeting for whole days (dates without times)."
    )
    direction: Direction | None = Field(default=None, description="Calls and emails.")
    duration_seconds: Annotated[int, Field(ge=0, le=86_400 * 7)] | None = Field(
        default=None, description="Calls."
    )
    outcome: CallOutcome | None = Field(default=None, description="Calls.")
    email_from: EmailAddress | None = Field(default=None, description="Emails.")
    email_to: Annotated[list[EmailAddress], Field(max_length=100)] = Field(
        default_factory=list, description="Emails."
    )
    attendees: Annotated[list[Attendee], Field(max_length=200)] = Field(
        default_factory=list, description="Meetings."
    )
    location: Annotated[str, StringConstraints(max_length=500, strip_whitespace=True)] | None = (
        Field(default=None, description="Meetings.")
    )
    owner_id: RecordId | None = Field(
        default=None, description="Who did it; none means the acting user."
    )
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None


class ActivityCreate(ActivityFields):
    """A note, call, email, meeting or completed task, about one or more records."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [EXAMPLE_CALL, EXAMPLE_MEETING]}
    )

    kind: ActivityKind
    links: Annotated[list[RecordRef], Field(max_length=50)] = Field(
        description="The records it is about (at least one): it shows on each one's timeline."
    )
    task_id: RecordId | None = Field(default=None, description="The task that was completed.")


class ActivityUpdate(BaseModel):
    """Fields to change; lists (links, recipients, attendees) are replaced whole."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"outcome": "left_voicemail", "body": "折り返し待ち。"}]},
    )

    subject: Subject | None = None
    body: Body | None = None
    occurred_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    all_day: bool | None = None
    direction: Direction | None = None
    duration_seconds: Annotated[int, Field(ge=0, le=86_400 * 7)] | None = None
    outcome: CallOutcome | None = None
    email_from: EmailAddress | None = None
    email_to: Annotated[list[EmailAddress], Field(max_length=100)] | None = None
    attendees: Annotated[list[Attendee], Field(max_length=200)] | None = None
    location: Annotated[str, StringConstraints(max_length=500, strip_whitespace=True)] | None = None
    owner_id: RecordId | None = None
    external_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    links: Annotated[list[RecordRef], Field(max_length=50)] | None = None


class LinkedRecord(BaseModel):
    """A record an activity is linked to, with the name to show for it."""

    type: RecordType
    id: int
    name: str | None = None


class ActivityRead(BaseModel):
    id: int
    kind: ActivityKind
    subject: str
    body: str
    occurred_at: datetime
    ends_at: datetime | None
    all_day: bool
    direction: Direction | None
    duration_seconds: int | None
    outcome: CallOutcome | None
    email_from: str | None
    email_to: list[str]
    attendees: list[Attendee]
    location: str | None
    owner_id: int | None
    task_id: int | None
    external_id: str | None
    ical_uid: str | None
    links: list[LinkedRecord]
    version: int
    created_at: datetime
    updated_at: datetime


class IcalEventResult(BaseModel):
    """What an iCalendar import did with one VEVENT."""

    uid: str
    line: int
    status: Literal["created", "updated", "unchanged", "skipped"]
    id: int | None = None
    subject: str = ""
    reason: str | None = None
    links: list[RecordRef] = []


class IcalImportReport(BaseModel):
    """The outcome of an iCalendar import (``dry_run``: what would happen; nothing written)."""

    created: int
    updated: int
    unchanged: int
    skipped: int
    dry_run: bool
    events: list[IcalEventResult]
