"""``ichigen import activities`` and ``ichigen export activities``."""

from __future__ import annotations

import sys
from datetime import datetime
from enum import StrEnum
from typing import Annotated, TextIO

import typer

from ichigen.auth import service as auth_service
from ichigen.cli.context import (
    AsOption,
    BomOption,
    DryRunOption,
    EncodingOption,
    ErrorsOption,
    FileArgument,
    ImportMode,
    MappingOption,
    ModeOption,
    OutputOption,
    acting_user,
    db_session,
    err_console,
    import_progress,
    print_import_report,
    read_mapping,
)
from ichigen.core.tabular import parse_datetime
from ichigen.crm.activities import imports
from ichigen.crm.activities.schemas import KINDS, RecordRef


class MatchOn(StrEnum):
    external_id = "external_id"
    id = "id"


_MODES: dict[ImportMode, imports.ImportMode] = {
    ImportMode.create: "create",
    ImportMode.update: "update",
    ImportMode.upsert: "upsert",
}
_MATCH: dict[MatchOn, imports.ActivityMatch] = {
    MatchOn.external_id: "external_id",
    MatchOn.id: "id",
}
TimeZoneOption = Annotated[
    str | None,
    typer.Option("--time-zone", help="IANA time zone of times without an offset (default: UTC)."),
]


def import_activities(
    file: FileArgument,
    mapping: MappingOption = None,
    mode: ModeOption = ImportMode.upsert,
    match_on: Annotated[
        MatchOn, typer.Option("--match-on", help="How a row finds its activity.")
    ] = MatchOn.external_id,
    dry_run: DryRunOption = False,
    encoding: EncodingOption = None,
    time_zone: TimeZoneOption = None,
    errors: ErrorsOption = None,
    as_user: AsOption = None,
) -> None:
    """Import notes, calls, emails and meetings from a CSV file (HubSpot, Salesforce, or an
    ichigen export); each row is linked to the contacts, companies and deals it names."""
    data = file.read_bytes()
    with db_session() as session:
        actor = acting_user(session, as_user)
        with import_progress(f"importing {file.name}") as progress:
            report = imports.import_activities(
                session,
                data,
                actor,
                mapping=read_mapping(mapping),
                mode=_MODES[mode],
                match_on=_MATCH[match_on],
                dry_run=dry_run,
                encoding=encoding,
                time_zone=time_zone,
                progress=progress,
                max_errors=None if errors else 1000,
            )
    print_import_report(report, errors)
    if report.failed:
        raise typer.Exit(1)


def _moment(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_datetime(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _record(value: str | None) -> RecordRef | None:
    if value is None:
        return None
    record_type, _, record_id = value.partition(":")
    if not record_id.isdigit():
        raise typer.BadParameter("write a record as type:id, e.g. deal:12", param_hint="--record")
    try:
        return RecordRef.model_validate({"type": record_type, "id": int(record_id)})
    except ValueError:
        raise typer.BadParameter(
            "the type is contact, company or deal", param_hint="--record"
        ) from None


def export_activities(
    kind: Annotated[
        list[str] | None, typer.Option("--kind", help=f"Only these kinds: {', '.join(KINDS)}.")
    ] = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Only this user's (email).")] = None,
    record: Annotated[
        str | None, typer.Option("--record", help="Only those linked to a record: deal:12.")
    ] = None,
    start: Annotated[str | None, typer.Option("--from", help="From this time on (UTC).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Before this time (UTC).")] = None,
    output: OutputOption = None,
    bom: BomOption = None,
    as_user: AsOption = None,
) -> None:
    """Export activities (by kind, owner, record and time range) as CSV."""
    with db_session() as session:
        actor = acting_user(session, as_user)
        owner_id = None
        if owner is not None:
            user = auth_service.find_user_by_email(session, owner)
            if user is None:
                raise typer.BadParameter(f"no user with email {owner}", param_hint="--owner")
            owner_id = user.id
        record_ref, since, until = _record(record), _moment(start, "--from"), _moment(end, "--to")

        def write(out: TextIO, with_bom: bool) -> int:
            return imports.export_activities_csv(
                session,
                actor,
                kinds=kind or None,
                owner_id=owner_id,
                record=record_ref,
                start=since,
                end=until,
                out=out,
                bom=with_bom,
            )

        if output is None:
            count = write(sys.stdout, bool(bom))
        else:
            with output.open("w", encoding="utf-8", newline="") as out:
                count = write(out, bom is not False)
    err_console.print(f"exported {count} activities" + (f" to {output}" if output else ""))
