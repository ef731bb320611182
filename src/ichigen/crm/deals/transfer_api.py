"""JSON API for deals as CSV files: import (with a dry run), import preview and export."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import StreamingResponse

from ichigen.core.tabular import ImportPreview, ImportReport, parse_mapping
from ichigen.crm.deals import imports
from ichigen.web.deps import ApiActor, DbSession

router = APIRouter(tags=["deals"])

ImportFile = Annotated[UploadFile, File(description="A CSV file (UTF-8 or Shift_JIS).")]
MappingForm = Annotated[
    str | None,
    Form(
        max_length=20_000,
        description='JSON object from column names to fields, e.g. {"Deal Name": "name", '
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
FilterQuery = Annotated[
    list[str],
    Query(
        description="Repeatable `field:op:value`, as the deal list takes them; custom fields "
        "as `cf.<key>`.",
        examples=["status:eq:open"],
    ),
]


@router.post("/deals/import", response_model=ImportReport)
@router.post("/deals/imports", response_model=ImportReport, include_in_schema=False)
def import_deals(
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
    """Import deals from a CSV file (HubSpot, Salesforce or an ichigen export): rows with
    errors are reported by row and column, the others are written through the deals service
    (stage rules, stage history, audit); `dry_run` writes nothing and previews the changes."""
    return imports.import_deals(
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


@router.post("/deals/import/preview", response_model=ImportPreview)
@router.post("/deals/imports/preview", response_model=ImportPreview, include_in_schema=False)
def preview_deals_import(
    session: DbSession,
    actor: ApiActor,
    file: ImportFile,
    mapping: MappingForm = None,
    encoding: EncodingForm = None,
) -> ImportPreview:
    """A file's detected encoding and delimiter, its headers, the suggested column mapping
    and its first rows; nothing is written."""
    return imports.preview_deals_import(
        session, file.file.read(), actor, encoding=encoding, mapping=parse_mapping(mapping)
    )


@router.get(
    "/deals/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The deals as CSV."}},
)
@router.get(
    "/deals/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The deals as CSV."}},
    include_in_schema=False,
)
def export_deals(
    session: DbSession,
    actor: ApiActor,
    filter: FilterQuery = [],  # noqa: B006
    q: Annotated[str | None, Query(max_length=200, description="Name, by prefix.")] = None,
    bom: Annotated[bool, Query(description="Start with a BOM so Excel reads UTF-8.")] = True,
) -> StreamingResponse:
    """Every deal the filters select as CSV, with pipelines, stages, owners, companies and
    contacts by name; the file imports again unchanged."""
    chunks = imports.deals_csv(session, actor, filters=filter, q=q, bom=bom)
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="deals.csv"'},
    )
