"""JSON API for contacts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Response, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ichigen.auth.permissions import require
from ichigen.core.audit import AuditEntryRead, record_history
from ichigen.core.schemas import BulkResult, Page, RecordId
from ichigen.core.tabular import ImportPreview, ImportReport, parse_mapping
from ichigen.crm.contacts import imports, service
from ichigen.crm.contacts.schemas import BulkContacts, ContactCreate, ContactRead, ContactUpdate
from ichigen.web.deps import ApiActor, DbSession, IfMatch, etag, json_body

router = APIRouter(prefix="/contacts", tags=["contacts"])

FilterQuery = Annotated[
    list[str],
    Query(
        description="Repeatable `field:op:value`; ops: eq ne lt lte gt gte in contains "
        "startswith is_null. Custom fields as `cf.<key>`.",
        examples=["lifecycle_stage:eq:lead"],
    ),
]


class BulkOutcome(BaseModel):
    created: int
    updated: int
    unchanged: int
    errors: int
    dry_run: bool
    results: list[BulkResult]


@router.get("", response_model=Page[ContactRead])
def list_contacts(
    session: DbSession,
    actor: ApiActor,
    filter: FilterQuery = [],  # noqa: B006
    sort: Annotated[
        str | None, Query(max_length=60, description="Field, `-` for descending.")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Quick search: name, reading, email, phone or company, by prefix.",
        ),
    ] = None,
) -> Response:
    return json_body(
        service.list_contacts(
            session, actor, filters=filter, sort=sort, cursor=cursor, limit=limit, q=q
        )
    )


@router.post("", response_model=ContactRead, status_code=status.HTTP_201_CREATED)
def create_contact(
    data: ContactCreate, session: DbSession, actor: ApiActor, response: Response
) -> ContactRead:
    contact = service.create_contact(session, data, actor)
    response.headers["Location"] = f"/api/v1/contacts/{contact.id}"
    response.headers["ETag"] = etag(contact.version)
    return contact


@router.post("/bulk", response_model=BulkOutcome)
def bulk_upsert(data: BulkContacts, session: DbSession, actor: ApiActor) -> BulkOutcome:
    """Create or update up to 1,000 contacts matched on email or external id; each record
    succeeds or fails on its own, and ``dry_run`` writes nothing."""
    results = service.bulk_upsert_contacts(
        session, data.records, actor, match_on=data.match_on, mode=data.mode, dry_run=data.dry_run
    )
    count = {
        s: sum(1 for r in results if r.status == s)
        for s in ("created", "updated", "unchanged", "error")
    }
    return BulkOutcome(
        created=count["created"],
        updated=count["updated"],
        unchanged=count["unchanged"],
        errors=count["error"],
        dry_run=data.dry_run,
        results=results,
    )


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
def import_contacts(
    session: DbSession,
    actor: ApiActor,
    file: ImportFile,
    mapping: MappingForm = None,
    mode: Annotated[Literal["create", "update", "upsert"], Form()] = "upsert",
    match_on: Annotated[Literal["email", "external_id"], Form()] = "email",
    dry_run: Annotated[bool, Form()] = False,
    encoding: EncodingForm = None,
) -> ImportReport:
    """Import contacts from a CSV file: rows with errors are reported by row and column,
    the others are written; `dry_run` writes nothing and previews the changes."""
    return imports.import_contacts(
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
def preview_contacts_import(
    session: DbSession,
    actor: ApiActor,
    file: ImportFile,
    mapping: MappingForm = None,
    encoding: EncodingForm = None,
) -> ImportPreview:
    """A file's detected encoding and delimiter, its headers, the suggested column mapping
    and its first rows; nothing is written."""
    return imports.preview_contacts_import(
        session, file.file.read(), actor, encoding=encoding, mapping=parse_mapping(mapping)
    )


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "The contacts as CSV."}},
)
def export_contacts(
    session: DbSession,
    actor: ApiActor,
    filter: FilterQuery = [],  # noqa: B006
    q: Annotated[str | None, Query(max_length=200, description="Quick search.")] = None,
    bom: Annotated[bool, Query(description="Start with a BOM so Excel reads UTF-8.")] = True,
) -> StreamingResponse:
    """Every contact the filters select as CSV, custom fields as `cf.<key>` columns; the
    file imports again unchanged."""
    chunks = imports.contacts_csv(session, actor, filters=filter, q=q, bom=bom)
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="contacts.csv"'},
    )


@router.get("/{contact_id}", response_model=ContactRead)
def get_contact(contact_id: RecordId, session: DbSession, actor: ApiActor) -> Response:
    contact = service.get_contact(session, contact_id, actor)
    return json_body(contact, {"ETag": etag(contact.version)})


@router.patch("/{contact_id}", response_model=ContactRead)
def update_contact(
    contact_id: RecordId,
    data: ContactUpdate,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> ContactRead:
    contact = service.update_contact(session, contact_id, data, actor, if_version=version)
    response.headers["ETag"] = etag(contact.version)
    return contact


@router.delete("/{contact_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_contact(
    contact_id: RecordId, session: DbSession, actor: ApiActor, version: IfMatch
) -> None:
    service.delete_contact(session, contact_id, actor, if_version=version)


@router.get("/{contact_id}/history", response_model=list[AuditEntryRead])
def contact_history(
    contact_id: RecordId, session: DbSession, actor: ApiActor
) -> list[AuditEntryRead]:
    """The contact's audit history, newest first."""
    require(actor, "audit", "read")
    service.get_contact(session, contact_id, actor)
    return record_history(session, "contacts", contact_id)
