"""JSON API for activities as CSV files: import (with a dry run), import preview and export."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse

from ichigen.core.schemas import RecordId
from ichigen.core.tabular import ImportPreview, ImportReport, parse_mapping
from ichigen.crm.activities import imports
from ichigen.crm.activities.schemas import ActivityKind, RecordRef
from ichigen.web.deps import ApiActor, DbSession

router = APIRouter(tags=["activities"])

ImportFile = Annotated[UploadFile, File(description="A CSV file (UTF-8 or Shift_JIS).")]
MappingForm = Annotated[
    str | None,
    Form(
        max_length=20_000,
        description='JSON object from column names to fields, e.g. {"Call notes": "body", '
        '"Notes": null}; laid over the automatic mapping.',
    ),
]
EncodingForm = Annotated[
    str | None, Form(max_length=40, description="Leave empty to detect; e.g. utf-8, shift_jis.")
]
TimeZoneForm = Annotated[
    str | None,
    Form(
        max_length=64,
        description="IANA time zone for times without an offset (e.g. Asia/Tokyo); UTC if none.",
    ),
]
KindQuery = Annotated[list[ActivityKind], Query(description="Only these kinds (repeatable).")]
RECORD_PATTERN = r"^(contact|company|deal|ticket):[1-9][0-9]{0,17}$"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.post("/activities/import", response_model=ImportReport)
@router.post("/activities/imports", response_model=ImportReport, include_in_schema=False)
def import_activities(
    session: DbSession,
    actor: ApiActor,
    file: ImportFile,
    mapping: MappingForm = None,
    mode: Annotated[Literal["create", "update", "upsert"], Form()] = "upsert",
    match_on: Annotated[Literal["external_id", "id"], Form()] = "external_id",
    dry_run: Annotated[bool, Form()] = False,
    encoding: EncodingForm = None,
    time_zone: TimeZoneForm = None,
) -> ImportReport:
    """Import notes, calls, emails and meetings from a CSV file (HubSpot, Salesforce or an
    ichigen export), each linked to the contacts, companies and deals its cells name: rows
    with errors (a row that links to nothing, a name that finds no record) are reported by
    row and column, the others are written; `dry_run` writes nothing."""
    return imports.import_activities(
        session,
        file.file.read(),
        actor,
        mapping=parse_mapping(mapping),
        mode=mode,
        match_on=match_on,
        dry_run=dry_run,
        encoding=encoding,
        time_zone=time_zone,
    )


@router.post("/activities/import/preview", response_model=ImportPreview)
@router.post("/activities/imports/preview", response_model=ImportPreview, include_in_schema=False)
def preview_activities_import(
    session: DbSession,
    actor: ApiActor,
    file: ImportFile,
    mapping: MappingForm = None,
    encoding: EncodingForm = None,
) -> ImportPreview:
    """A file's detected encoding and delimiter, its headers, the suggested column mapping
    and its first rows; nothing is written."""
    return imports.preview_activities_import(
        session, file.file.read(), actor, encoding=encoding, mapping=parse_mapping(mapping)
    )


@router.get(
    "/activities/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The activities as CSV."}},
)
@router.get(
    "/activities/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The activities as CSV."}},
    include_in_schema=False,
)
def export_activities(
    session: DbSession,
    actor: ApiActor,
    kind: KindQuery = [],  # noqa: B006
    owner_id: Annotated[RecordId | None, Query(description="Only this owner's.")] = None,
    record: Annotated[
        str | None,
        Query(pattern=RECORD_PATTERN, description="Linked to this record (`type:id`)."),
    ] = None,
    start: Annotated[
        datetime | None, Query(alias="from", description="From this time on (ISO 8601).")
    ] = None,
    end: Annotated[datetime | None, Query(alias="to", description="Before this time.")] = None,
    bom: Annotated[bool, Query(description="Start with a BOM so Excel reads UTF-8.")] = True,
) -> StreamingResponse:
    """The activities of these kinds, owner, record and time range `[from, to)` as CSV,
    newest first, with linked records by email or name; the file imports again."""
    linked = None
    if record is not None:
        record_type, _, record_id = record.partition(":")
        linked = RecordRef.model_validate({"type": record_type, "id": int(record_id)})
    chunks = imports.activities_csv(
        session,
        actor,
        kinds=kind,
        owner_id=owner_id,
        record=linked,
        start=_utc(start),
        end=_utc(end),
        bom=bom,
    )
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="activities.csv"'},
    )
