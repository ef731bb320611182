"""JSON API for activities: CRUD, lists, record timelines and iCalendar files."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status

from ichigen.auth.permissions import require
from ichigen.core.audit import AuditEntryRead, record_history
from ichigen.core.schemas import Page, RecordId
from ichigen.crm.activities import service
from ichigen.crm.activities.schemas import (
    ActivityCreate,
    ActivityKind,
    ActivityRead,
    ActivityUpdate,
    IcalImportReport,
    RecordRef,
    RecordType,
)
from ichigen.web.deps import ApiActor, DbSession, IfMatch, etag, json_body

router = APIRouter(tags=["activities"])

RECORD_PATTERN = r"^(contact|company|deal|ticket):[1-9][0-9]{0,17}$"
KindQuery = Annotated[
    list[ActivityKind],
    Query(description="Only these kinds (repeatable).", examples=[["call", "meeting"]]),
]
RecordQuery = Annotated[
    str | None,
    Query(
        pattern=RECORD_PATTERN,
        description="A record as `type:id`, e.g. `contact:12`.",
        examples=["company:4"],
    ),
]
FromQuery = Annotated[
    datetime | None,
    Query(alias="from", description="From this time on (ISO 8601; UTC if no offset)."),
]
ToQuery = Annotated[
    datetime | None, Query(alias="to", description="Before this time (ISO 8601; UTC if no offset).")
]
CursorQuery = Annotated[str | None, Query(max_length=2000)]


def _record(value: str | None) -> RecordRef | None:
    if value is None:
        return None
    record_type, _, record_id = value.partition(":")
    return RecordRef.model_validate({"type": record_type, "id": int(record_id)})


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get("/activities", response_model=Page[ActivityRead])
def list_activities(
    session: DbSession,
    actor: ApiActor,
    kind: KindQuery = [],  # noqa: B006
    owner_id: Annotated[RecordId | None, Query(description="Only this owner's.")] = None,
    record: RecordQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
    cursor: CursorQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Activities newest first, by kind, owner, the record they are linked to (directly: the
    timeline adds the records under it) and time range `[from, to)`."""
    return json_body(
        service.list_activities(
            session,
            actor,
            kinds=kind,
            owner_id=owner_id,
            record=_record(record),
            start=_utc(start),
            end=_utc(end),
            cursor=cursor,
            limit=limit,
        )
    )


@router.post("/activities", response_model=ActivityRead, status_code=status.HTTP_201_CREATED)
def log_activity(
    data: ActivityCreate, session: DbSession, actor: ApiActor, response: Response
) -> ActivityRead:
    """Log a note, call, email or meeting against one or more records; it shows on each
    one's timeline (and on the timelines above them: a contact's company, …)."""
    activity = service.log_activity(session, data, actor)
    response.headers["Location"] = f"/api/v1/activities/{activity.id}"
    response.headers["ETag"] = etag(activity.version)
    return activity


@router.get(
    "/activities/ical",
    response_class=Response,
    responses={200: {"content": {"text/calendar": {}}, "description": "An iCalendar file."}},
)
def export_ical(
    session: DbSession,
    actor: ApiActor,
    record: RecordQuery = None,
    start: FromQuery = None,
    end: ToQuery = None,
) -> Response:
    """Meetings as an `.ics` file: those on a record's timeline, those in `[from, to)`, or
    both. Importing the file again updates the same meetings."""
    body = service.export_meetings_ical(
        session, actor, record=_record(record), start=_utc(start), end=_utc(end)
    )
    return Response(
        body,
        media_type="text/calendar; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="meetings.ics"'},
    )


@router.post("/activities/ical", response_model=IcalImportReport)
def import_ical(
    session: DbSession,
    actor: ApiActor,
    file: Annotated[UploadFile, File(description="An iCalendar (.ics) file.")],
    record: Annotated[
        str | None,
        Form(pattern=RECORD_PATTERN, description="Also link every meeting to this record."),
    ] = None,
    dry_run: Annotated[bool, Form(description="Report what would happen; write nothing.")] = False,
    timezone: Annotated[
        str, Form(max_length=64, description="The zone of times without one (IANA name).")
    ] = "UTC",
) -> IcalImportReport:
    """Import meetings from an `.ics` file: each VEVENT is linked to the contacts among its
    attendees (and to `record`); a UID imported before updates its meeting. A malformed file
    is a 422 naming the line and component, and nothing is imported."""
    data = file.file.read(service.MAX_ICAL_BYTES + 1)
    return service.import_meetings_ical(
        session, data, actor, record=_record(record), dry_run=dry_run, timezone=timezone
    )


@router.get("/activities/{activity_id}", response_model=ActivityRead)
def get_activity(activity_id: RecordId, session: DbSession, actor: ApiActor) -> Response:
    activity = service.get_activity(session, activity_id, actor)
    return json_body(activity, {"ETag": etag(activity.version)})


@router.patch("/activities/{activity_id}", response_model=ActivityRead)
def update_activity(
    activity_id: RecordId,
    data: ActivityUpdate,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> ActivityRead:
    """Change the fields that are set; send `If-Match` with the ETag you read."""
    activity = service.update_activity(session, activity_id, data, actor, if_version=version)
    response.headers["ETag"] = etag(activity.version)
    return activity


@router.delete("/activities/{activity_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_activity(
    activity_id: RecordId, session: DbSession, actor: ApiActor, version: IfMatch
) -> None:
    service.delete_activity(session, activity_id, actor, if_version=version)


@router.get("/activities/{activity_id}/history", response_model=list[AuditEntryRead])
def activity_history(
    activity_id: RecordId, session: DbSession, actor: ApiActor
) -> list[AuditEntryRead]:
    """The activity's audit history, newest first."""
    require(actor, "audit", "read")
    service.get_activity(session, activity_id, actor)
    return record_history(session, "activities", activity_id)


@router.get("/timeline/{record_type}/{record_id}", response_model=Page[ActivityRead])
def timeline(
    record_type: RecordType,
    record_id: RecordId,
    session: DbSession,
    actor: ApiActor,
    kind: KindQuery = [],  # noqa: B006
    cursor: CursorQuery = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """A record's timeline, newest first: its own activities and those of the records under
    it (a company: its contacts' and deals'; a contact: its deals'), each once."""
    return json_body(
        service.timeline(
            session, record_type, record_id, actor, kinds=kind, cursor=cursor, limit=limit
        )
    )
