"""Activity pages for CSV files: the import (upload, column mapping, dry run, report), the
export of activities by kind, owner, record and time range, and the addresses an import's
report links to (``/activities`` and ``/activities/<id>``, which lead to the records' pages)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated

from fastapi import Query, Response

from ichigen.auth import service as auth_service
from ichigen.core.errors import BadRequest, FieldError, NotFound
from ichigen.core.tabular import ImportReport, parse_datetime
from ichigen.crm.activities import imports, service
from ichigen.crm.activities.schemas import RecordRef
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.import_views import ImportFlow, add_import_routes
from ichigen.web.templating import ChangeFormatter, SignedIn, Ui, csv_download, ui_router_for

router = ui_router_for("/activities")

Text = Annotated[str, Query(max_length=200)]

IMPORT_MODES: dict[str, str] = {
    "upsert": N_("Create new activities and update existing ones"),
    "create": N_("Only create new activities"),
    "update": N_("Only update existing activities"),
}
IMPORT_MATCH: dict[str, str] = {
    "external_id": N_("External ID (HubSpot Record ID, Salesforce Activity ID)"),
    "id": N_("ID in ichigen"),
}
#: How a dry run names the fields it would change.
IMPORT_FIELD_LABELS: dict[str, str] = {
    "kind": N_("Kind of activity"),
    "subject": N_("Subject"),
    "body": N_("Message"),
    "occurred_at": N_("When"),
    "ends_at": N_("Ends"),
    "all_day": N_("All day"),
    "direction": N_("Direction"),
    "duration_seconds": N_("Duration (seconds)"),
    "outcome": N_("Outcome"),
    "email_from": N_("Sender"),
    "email_to": N_("Recipients"),
    "attendees": N_("Attendees"),
    "location": N_("Where"),
    "owner_id": N_("Owner"),
    "external_id": N_("External ID"),
    "links": N_("Linked to"),
}
KIND_LABELS: dict[str, str] = {
    "note": N_("Note"),
    "call": N_("Call"),
    "email": N_("E-mail"),
    "meeting": N_("Meeting"),
    "task": N_("Task"),
}
VALUE_LABELS: dict[str, str] = {
    "inbound": N_("Inbound"),
    "outbound": N_("Outbound"),
    "connected": N_("Connected"),
    "left_voicemail": N_("Left voicemail"),
    "no_answer": N_("No answer"),
    "busy": N_("Busy"),
    "wrong_number": N_("Wrong number"),
}


def _import_changes(ui: Ui, session: DbSession, report: ImportReport) -> ChangeFormatter:
    """How a dry run's changes read: kinds, directions and outcomes in words, owners by name."""
    return ChangeFormatter(
        ui,
        IMPORT_FIELD_LABELS,
        (),
        {
            "kind": KIND_LABELS,
            "direction": VALUE_LABELS,
            "outcome": VALUE_LABELS,
            "owner_id": {u.id: u.name for u in auth_service.list_users(session)},
        },
        translated=("kind", "direction", "outcome"),
    )


ACTIVITY_IMPORT = ImportFlow(
    entity="activities",
    base="/activities",
    title=N_("Import activities"),
    list_label=N_("Activities"),
    match_label=N_("Match existing activities on"),
    back_label=N_("Go to the activities"),
    modes=IMPORT_MODES,
    match_options=IMPORT_MATCH,
    preview=imports.preview_activities_import,
    run=imports.import_activities,
    changes=_import_changes,
    zoned=True,
)
add_import_routes(router, ACTIVITY_IMPORT)


def _moment(ui: Ui, value: str, name: str) -> datetime | None:
    """A ``from``/``to`` value (a date, or a date and time) in the visitor's time zone."""
    if not value.strip():
        return None
    try:
        return parse_datetime(value, ui.timezone)
    except ValueError as exc:
        raise BadRequest(str(exc), [FieldError(("query", name), "not a date")]) from None


@router.get("/export.csv")
def export_activities(
    ui: SignedIn,
    kind: Annotated[list[str], Query(max_length=10)] = [],  # noqa: B006
    owner_id: int | None = None,
    record: Text = "",
    start: Annotated[str, Query(alias="from", max_length=40)] = "",
    end: Annotated[str, Query(alias="to", max_length=40)] = "",
) -> Response:
    """Activities as CSV, streamed: of these kinds, this owner, linked to this record
    (``record=deal:12``) and in ``[from, to)``; dates are read in the visitor's time zone."""
    linked = None
    if record.strip():
        record_type, _, record_id = record.strip().partition(":")
        if not record_id.isdigit() or record_type not in ("contact", "company", "deal"):
            raise BadRequest(
                "Name a record as contact:ID, company:ID or deal:ID.",
                [FieldError(("query", "record"), "not a record")],
            )
        linked = RecordRef.model_validate({"type": record_type, "id": int(record_id)})
    since, until = _moment(ui, start, "from"), _moment(ui, end, "to")
    if until is not None and ":" not in end:
        # A date alone includes that whole day.
        day = until.astimezone(ui.timezone).date() + timedelta(days=1)
        until = datetime.combine(day, time(), ui.timezone).astimezone(UTC)
    return csv_download(
        ui,
        "activities",
        lambda session: imports.activities_csv(
            session,
            ui.actor,
            kinds=[k for k in kind if k] or None,
            owner_id=owner_id,
            record=linked,
            start=since,
            end=until,
            bom=True,
        ),
    )


#: Where an activity is seen: on the page of a record it is linked to (deals first).
RECORD_PAGES = (("deal", "/deals"), ("contact", "/contacts"), ("company", "/companies"))


@router.get("")
def activities_home(ui: SignedIn) -> Response:
    """Activities live on their records' timelines; their own address leads to the import."""
    return ui.redirect("/activities/import")


@router.get("/{activity_id}")
def activity_page(ui: SignedIn, session: DbSession, activity_id: int) -> Response:
    """An activity (as an import report links it): the page of a record it is linked to."""
    activity = service.get_activity(session, activity_id, ui.actor)
    for record_type, base in RECORD_PAGES:
        linked = next((link.id for link in activity.links if link.type == record_type), None)
        if linked is not None:
            return ui.redirect(f"{base}/{linked}")
    raise NotFound(f"Activity {activity_id} is not linked to a record that has a page.")
