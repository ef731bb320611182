"""JSON API for companies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, File, Form, Query, Response, UploadFile, status
from fastapi.responses import StreamingResponse

from ichigen.auth.permissions import require
from ichigen.core.audit import AuditEntryRead, record_history
from ichigen.core.schemas import BulkResult, Page, RecordId
from ichigen.core.tabular import ImportPreview, ImportReport, parse_mapping
from ichigen.crm.companies import imports, service
from ichigen.crm.companies.schemas import CompanyCreate, CompanyRead, CompanyUpdate
from ichigen.web.deps import ApiActor, DbSession, IfMatch, etag, json_body

router = APIRouter(prefix="/companies", tags=["companies"])

FilterQuery = Annotated[
    list[str],
    Query(
        description="Repeatable `field:op:value`; ops: eq ne lt lte gt gte in contains "
        "startswith is_null. Custom fields as `cf.<key>`.",
        examples=["industry:eq:Manufacturing"],
    ),
]


@router.get("", response_model=Page[CompanyRead])
def list_companies(
    session: DbSession,
    actor: ApiActor,
    filter: FilterQuery = [],  # noqa: B006
    sort: Annotated[
        str | None, Query(max_length=60, description="Field, `-` for descending.")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    q: Annotated[str | None, Query(max_length=200, description="Name or domain prefix.")] = None,
) -> Response:
    return json_body(
        service.list_companies(
            session, actor, filters=filter, sort=sort, cursor=cursor, limit=limit, q=q
        )
    )


@router.post("", response_model=CompanyRead, status_code=status.HTTP_201_CREATED)
def create_company(
    data: CompanyCreate, session: DbSession, actor: ApiActor, response: Response
) -> CompanyRead:
    company = service.create_company(session, data, actor)
    response.headers["Location"] = f"/api/v1/companies/{company.id}"
    response.headers["ETag"] = etag(company.version)
    return company


@router.post("/bulk", response_model=list[BulkResult])
def bulk_upsert(
    session: DbSession,
    actor: ApiActor,
    records: Annotated[list[dict[str, Any]], Body(embed=True, min_length=1, max_length=1000)],
    match_on: Annotated[Literal["external_id", "domain"], Body(embed=True)] = "external_id",
) -> list[BulkResult]:
    """Create or update up to 1,000 companies, matched on external id or domain."""
    return service.bulk_upsert_companies(session, records, match_on, actor)


ImportFile = Annotated[UploadFile, File(description="A CSV file (UTF-8 or Shift_JIS).")]
MappingForm = Annotated[
    str | None,
    Form(
        max_length=20_000,
        description='JSON object from column names to fields, e.g. {"E-mail": "email", '
        '"Notes": null}; laid over the automatic mapping.',
    ),
]
EncodingForm = Annotated[
    str | None, Form(max_length=40, description="Leave empty to detect; e.g. utf-8, shift_jis.")
]


@router.post("/import", response_model=ImportReport)
def import_companies(
    session: DbSession,
    actor: ApiActor,
    file: ImportFile,
    mapping: MappingForm = None,
    mode: Annotated[Literal["create", "update", "upsert"], Form()] = "upsert",
    match_on: Annotated[Literal["external_id", "domain"], Form()] = "external_id",
    dry_run: Annotated[bool, Form()] = False,
    encoding: EncodingForm = None,
) -> ImportReport:
    """Import companies from a CSV file: rows with errors are reported by row and column,
    the others are written; `dry_run` writes nothing and previews the changes."""
    return imports.import_companies(
        session,
        file.file.read(),
        actor,
        mapping=parse_mapping(mapping),
        mode=mode,
        match_on=match_on,
        dry_run=dry_run,
        encoding=encoding,
    )


@router.post("/import/preview", response_model=ImportPreview)
def preview_companies_import(
    session: DbSession,
    actor: ApiActor,
    file: ImportFile,
    mapping: MappingForm = None,
    encoding: EncodingForm = None,
) -> ImportPreview:
    """A file's detected encoding and delimiter, its headers, the suggested column mapping
    and its first rows; nothing is written."""
    return imports.preview_companies_import(
        session, file.file.read(), actor, encoding=encoding, mapping=parse_mapping(mapping)
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The companies as CSV."}},
)
def export_companies(
    session: DbSession,
    actor: ApiActor,
    filter: FilterQuery = [],  # noqa: B006
    q: Annotated[str | None, Query(max_length=200, description="Name or domain prefix.")] = None,
    bom: Annotated[bool, Query(description="Start with a BOM so Excel reads UTF-8.")] = True,
) -> StreamingResponse:
    """Every company the filters select as CSV, custom fields as `cf.<key>` columns; the
    file imports again unchanged."""
    chunks = imports.companies_csv(session, actor, filters=filter, q=q, bom=bom)
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="companies.csv"'},
    )


@router.get("/{company_id}", response_model=CompanyRead)
def get_company(company_id: RecordId, session: DbSession, actor: ApiActor) -> Response:
    company = service.get_company(session, company_id, actor)
    return json_body(company, {"ETag": etag(company.version)})


@router.patch("/{company_id}", response_model=CompanyRead)
def update_company(
    company_id: RecordId,
    data: CompanyUpdate,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> CompanyRead:
    company = service.update_company(session, company_id, data, actor, if_version=version)
    response.headers["ETag"] = etag(company.version)
    return company


@router.delete("/{company_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_company(
    company_id: RecordId, session: DbSession, actor: ApiActor, version: IfMatch
) -> None:
    service.delete_company(session, company_id, actor, if_version=version)


@router.get("/{company_id}/history", response_model=list[AuditEntryRead])
def company_history(
    company_id: RecordId, session: DbSession, actor: ApiActor
) -> list[AuditEntryRead]:
    """The company's audit history, newest first."""
    require(actor, "audit", "read")
    service.get_company(session, company_id, actor)
    return record_history(session, "companies", company_id)
