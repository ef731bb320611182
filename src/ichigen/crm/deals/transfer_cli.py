"""``ichigen import deals`` and ``ichigen export deals``."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from ichigen.cli.context import (
    AsOption,
    BomOption,
    DryRunOption,
    EncodingOption,
    ErrorsOption,
    FileArgument,
    FilterOption,
    ImportMode,
    MappingOption,
    ModeOption,
    OutputOption,
    QueryOption,
    acting_user,
    db_session,
    err_console,
    import_progress,
    print_import_report,
    read_mapping,
)
from ichigen.crm.deals import imports


class MatchOn(StrEnum):
    external_id = "external_id"
    id = "id"


_MODES: dict[ImportMode, imports.ImportMode] = {
    ImportMode.create: "create",
    ImportMode.update: "update",
    ImportMode.upsert: "upsert",
}
_MATCH: dict[MatchOn, imports.DealMatch] = {
    MatchOn.external_id: "external_id",
    MatchOn.id: "id",
}
TimeZoneOption = Annotated[
    str | None,
    typer.Option("--time-zone", help="IANA time zone of times without an offset (default: UTC)."),
]


def import_deals(
    file: FileArgument,
    mapping: MappingOption = None,
    mode: ModeOption = ImportMode.upsert,
    match_on: Annotated[
        MatchOn, typer.Option("--match-on", help="How a row finds its deal.")
    ] = MatchOn.external_id,
    dry_run: DryRunOption = False,
    encoding: EncodingOption = None,
    time_zone: TimeZoneOption = None,
    errors: ErrorsOption = None,
    as_user: AsOption = None,
) -> None:
    """Import deals from a CSV file (HubSpot, Salesforce, or an ichigen export)."""
    data = file.read_bytes()
    with db_session() as session:
        actor = acting_user(session, as_user)
        with import_progress(f"importing {file.name}") as progress:
            report = imports.import_deals(
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


def export_deals(
    filter: FilterOption = None,
    query: QueryOption = None,
    output: OutputOption = None,
    bom: BomOption = None,
    as_user: AsOption = None,
) -> None:
    """Export the deals the filters select as CSV (custom fields as cf.<key> columns)."""
    with db_session() as session:
        actor = acting_user(session, as_user)
        if output is None:
            count = imports.export_deals_csv(
                session, actor, filters=filter or [], q=query, out=sys.stdout, bom=bool(bom)
            )
        else:
            with output.open("w", encoding="utf-8", newline="") as out:
                count = imports.export_deals_csv(
                    session, actor, filters=filter or [], q=query, out=out, bom=bom is not False
                )
    err_console.print(f"exported {count} deals" + (f" to {output}" if output else ""))
