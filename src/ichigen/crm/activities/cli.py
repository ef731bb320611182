"""``ichigen activities …``: log an activity, show a timeline, iCalendar export and import."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from ichigen.cli.context import AsOption, DryRunOption, acting_user, console, db_session
from ichigen.core.errors import FieldError, ValidationFailed
from ichigen.crm.activities import service
from ichigen.crm.activities.schemas import KINDS, OUTCOMES, ActivityCreate, RecordRef

activities = typer.Typer(
    help="Activities: log calls, notes, emails and meetings; iCalendar import and export.",
    no_args_is_help=True,
)

RecordOption = Annotated[
    str | None,
    typer.Option("--record", help="A record as type:id, e.g. contact:12 or company:4."),
]


def _moment(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time from the command line (UTC when it has no offset)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-05-12T10:00+09:00)", param_hint=option
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _record(value: str | None) -> RecordRef | None:
    if value is None:
        return None
    record_type, _, record_id = value.partition(":")
    try:
        return RecordRef.model_validate({"type": record_type, "id": int(record_id)})
    except (ValueError, ValidationError):
        raise typer.BadParameter(
            f"{value!r} is not type:id with type contact, company or deal", param_hint="--record"
        ) from None


def _validated(record: dict[str, Any]) -> ActivityCreate:
    try:
        return ActivityCreate.model_validate(record)
    except ValidationError as exc:
        raise ValidationFailed(
            "The activity has invalid fields.",
            [FieldError(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()],
        ) from None


@activities.command("log")
def log_activity(
    kind: Annotated[str, typer.Option("--kind", help=f"One of {', '.join(KINDS[:4])}.")],
    contact: Annotated[
        list[int] | None, typer.Option("--contact", help="A contact id (repeatable).")
    ] = None,
    company: Annotated[
        list[int] | None, typer.Option("--company", help="A company id (repeatable).")
    ] = None,
    deal: Annotated[
        list[int] | None, typer.Option("--deal", help="A deal id (repeatable).")
    ] = None,
    subject: Annotated[str, typer.Option(help="A short summary.")] = "",
    body: Annotated[str, typer.Option(help="Notes, the email's text, the minutes.")] = "",
    at: Annotated[
        str | None, typer.Option("--at", help="When it happened (ISO 8601); default now.")
    ] = None,
    end: Annotated[str | None, typer.Option("--end", help="A meeting's end (ISO 8601).")] = None,
    direction: Annotated[
        str | None, typer.Option(help="Calls and emails: inbound or outbound.")
    ] = None,
    duration: Annotated[
        int | None, typer.Option("--duration", help="Calls: seconds.", min=0)
    ] = None,
    outcome: Annotated[
        str | None, typer.Option(help=f"Calls: one of {', '.join(OUTCOMES)}.")
    ] = None,
    email_from: Annotated[str | None, typer.Option("--email-from", help="Emails: sender.")] = None,
    email_to: Annotated[
        list[str] | None, typer.Option("--email-to", help="Emails: a recipient (repeatable).")
    ] = None,
    attendee: Annotated[
        list[str] | None, typer.Option("--attendee", help="Meetings: an email (repeatable).")
    ] = None,
    location: Annotated[str | None, typer.Option(help="Meetings: where.")] = None,
    as_user: AsOption = None,
) -> None:
    """Log a note, call, email or meeting against contacts, companies and deals."""
    links = [
        *({"type": "contact", "id": i} for i in contact or []),
        *({"type": "company", "id": i} for i in company or []),
        *({"type": "deal", "id": i} for i in deal or []),
    ]
    record: dict[str, Any] = {"kind": kind, "subject": subject, "body": body, "links": links}
    optional = {
        "occurred_at": _moment(at, "--at"),
        "ends_at": _moment(end, "--end"),
        "direction": direction,
        "duration_seconds": duration,
        "outcome": outcome,
        "email_from": email_from,
        "location": location,
    }
    record.update({k: v for k, v in optional.items() if v is not None})
    if email_to:
        record["email_to"] = email_to
    if attendee:
        record["attendees"] = [{"email": a} for a in attendee]
    with db_session() as session:
        actor = acting_user(session, as_user)
        logged = service.log_activity(session, _validated(record), actor)
    shown = ", ".join(f"{link.type} {link.id}" for link in logged.links)
    console.print(f"logged {logged.kind} {logged.id} on {shown}")


@activities.command("timeline")
def show_timeline(
    record: Annotated[str, typer.Argument(help="A record as type:id, e.g. company:4.")],
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help="Only this kind (repeatable).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 20,
    as_user: AsOption = None,
) -> None:
    """A record's newest activities, with those of the records under it."""
    ref = _record(record)
    assert ref is not None
    with db_session() as session:
        actor = acting_user(session, as_user)
        page = service.timeline(session, ref.type, ref.id, actor, kinds=kind, limit=limit)
    table = Table("when (UTC)", "kind", "subject", "linked to", title=f"Timeline of {record}")
    for item in page.items:
        table.add_row(
            item.occurred_at.strftime("%Y-%m-%d %H:%M"),
            item.kind,
            item.subject,
            ", ".join(link.name or f"{link.type} {link.id}" for link in item.links),
        )
    console.print(table)


@activities.command("export-ical")
def export_ical(
    file: Annotated[Path, typer.Argument(help="The .ics file to write.", dir_okay=False)],
    start: Annotated[
        str | None, typer.Option("--from", help="Meetings from this time (ISO 8601).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Meetings before this time (ISO 8601).")
    ] = None,
    record: RecordOption = None,
    as_user: AsOption = None,
) -> None:
    """Write meetings (of a time range and/or a record's timeline) to an iCalendar file."""
    with db_session() as session:
        actor = acting_user(session, as_user)
        data = service.export_meetings_ical(
            session,
            actor,
            record=_record(record),
            start=_moment(start, "--from"),
            end=_moment(end, "--to"),
        )
    file.write_bytes(data)
    console.print(f"exported {data.count(b'BEGIN:VEVENT')} meetings to {file}")


@activities.command("import-ical")
def import_ical(
    file: Annotated[
        Path,
        typer.Argument(help="An .ics file.", exists=True, dir_okay=False, readable=True),
    ],
    dry_run: DryRunOption = False,
    record: RecordOption = None,
    timezone: Annotated[
        str, typer.Option(help="The zone of times without one (IANA name).")
    ] = "UTC",
    as_user: AsOption = None,
) -> None:
    """Import meetings: each is linked to the contacts among its attendees (and --record);
    a meeting imported before is updated by its UID."""
    with db_session() as session:
        actor = acting_user(session, as_user)
        report = service.import_meetings_ical(
            session,
            file.read_bytes(),
            actor,
            record=_record(record),
            dry_run=dry_run,
            timezone=timezone,
        )
    verb = "would be" if report.dry_run else "were"
    console.print(
        f"{len(report.events)} events: {report.created} {verb} created, {report.updated} "
        f"updated, {report.unchanged} unchanged, {report.skipped} skipped"
        + (" — dry run, nothing was written" if report.dry_run else "")
    )
    skipped = [e for e in report.events if e.status == "skipped"]
    if skipped:
        table = Table("line", "UID", "subject", "reason", title="Skipped events")
        for event in skipped:
            table.add_row(str(event.line), event.uid, event.subject, event.reason or "")
        console.print(table)
