"""The JSON API under ``/api/v1``: each feature's router, plus custom fields and audit."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from ichigen.auth.api import router as auth_router
from ichigen.auth.permissions import require
from ichigen.collect.api import router as collect_router
from ichigen.core import custom_fields
from ichigen.core.audit import AuditEntryRead, record_history
from ichigen.core.custom_fields import CustomFieldCreate, CustomFieldRead, CustomFieldUpdate
from ichigen.core.schemas import RecordId
from ichigen.crm.activities.api import router as activities_router
from ichigen.crm.activities.transfer_api import router as activity_transfers_router
from ichigen.crm.companies.api import router as companies_router
from ichigen.crm.contacts.api import router as contacts_router
from ichigen.crm.deals.api import router as deals_router
from ichigen.crm.deals.forecast_api import router as forecast_router
from ichigen.crm.deals.transfer_api import router as deal_transfers_router
from ichigen.crm.tasks.api import router as tasks_router
from ichigen.identity.api import router as identity_router
from ichigen.identity.duplicates_api import router as duplicates_router
from ichigen.profiles.api import router as profiles_router
from ichigen.web.deps import ApiActor, DbSession, IfMatch, etag
from ichigen.web.problems import PROBLEM_RESPONSES

fields_router = APIRouter(prefix="/custom-fields", tags=["custom fields"])


@fields_router.get("", response_model=list[CustomFieldRead])
def list_custom_fields(
    session: DbSession,
    actor: ApiActor,
    entity: Literal["contacts", "companies", "deals"] = "contacts",
) -> list[CustomFieldRead]:
    require(actor, "custom_fields", "read")
    return custom_fields.list_fields(session, entity)


@fields_router.post("", response_model=CustomFieldRead, status_code=status.HTTP_201_CREATED)
def create_custom_field(
    data: CustomFieldCreate, session: DbSession, actor: ApiActor, response: Response
) -> CustomFieldRead:
    """Define a field; `indexed` builds an index so filters on it stay fast at scale."""
    require(actor, "custom_fields", "write")
    created = custom_fields.create_field(session, data, actor)
    response.headers["Location"] = f"/api/v1/custom-fields/{created.id}"
    response.headers["ETag"] = etag(created.version)
    return created


@fields_router.get("/{field_id}", response_model=CustomFieldRead)
def get_custom_field(
    field_id: RecordId, session: DbSession, actor: ApiActor, response: Response
) -> CustomFieldRead:
    require(actor, "custom_fields", "read")
    found = custom_fields.get_field(session, field_id)
    response.headers["ETag"] = etag(found.version)
    return found


@fields_router.patch("/{field_id}", response_model=CustomFieldRead)
def update_custom_field(
    field_id: RecordId,
    data: CustomFieldUpdate,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> CustomFieldRead:
    require(actor, "custom_fields", "write")
    updated = custom_fields.update_field(session, field_id, data, actor, if_version=version)
    response.headers["ETag"] = etag(updated.version)
    return updated


@fields_router.delete("/{field_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_custom_field(field_id: RecordId, session: DbSession, actor: ApiActor) -> None:
    require(actor, "custom_fields", "write")
    custom_fields.delete_field(session, field_id, actor)


audit_router = APIRouter(prefix="/audit", tags=["audit"])


@audit_router.get("", response_model=list[AuditEntryRead])
def audit_entries(
    session: DbSession,
    actor: ApiActor,
    entity: Annotated[str, Query(pattern="^[a-z_]{1,40}$")],
    record_id: Annotated[RecordId, Query()],
    before_id: Annotated[RecordId | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditEntryRead]:
    """Audit entries of any one record, newest first; page with `before_id`."""
    require(actor, "audit", "read")
    return record_history(session, entity, record_id, limit=limit, before_id=before_id)


def api_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", responses=PROBLEM_RESPONSES)
    for sub in (
        auth_router,
        companies_router,
        contacts_router,
        # Before the feature routers, whose /deals/{id} and /activities/{id} would take
        # export.csv.
        deal_transfers_router,
        deals_router,
        forecast_router,
        activity_transfers_router,
        activities_router,
        tasks_router,
        fields_router,
        audit_router,
        collect_router,
        duplicates_router,
        identity_router,
        profiles_router,
    ):
        router.include_router(sub)
    return router
