"""JSON API for pipelines, their stages, lost reasons and deals (and a pipeline's board)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from ichigen.auth.permissions import require
from ichigen.core.audit import AuditEntryRead, record_history
from ichigen.core.schemas import Page, RecordId
from ichigen.crm.deals import service
from ichigen.crm.deals.schemas import (
    Board,
    DealContactDetail,
    DealContactIn,
    DealContacts,
    DealCreate,
    DealMove,
    DealRead,
    DealUpdate,
    LostReasonCreate,
    LostReasonRead,
    LostReasonUpdate,
    PipelineCreate,
    PipelineRead,
    PipelineUpdate,
    StageChangeRead,
    StageCreate,
    StageOrder,
    StageUpdate,
)
from ichigen.web.deps import ApiActor, DbSession, IfMatch, etag, json_body

router = APIRouter()

FilterQuery = Annotated[
    list[str],
    Query(
        description="Repeatable `field:op:value`; ops: eq ne lt lte gt gte in contains "
        "startswith is_null. Fields: pipeline_id, stage_id, status, owner_id, company_id, "
        "amount, currency, expected_close_date, closed_at, next_step_due, tags, … and custom "
        "fields as `cf.<key>`.",
        examples=["status:eq:open", "expected_close_date:lte:2026-12-31"],
    ),
]


# ----------------------------------------------------------------------------- pipelines


@router.get("/pipelines", response_model=list[PipelineRead], tags=["pipelines"])
def list_pipelines(
    session: DbSession,
    actor: ApiActor,
    include_archived: Annotated[bool, Query(description="Archived pipelines too.")] = False,
) -> list[PipelineRead]:
    """Pipelines in display order, each with its stages."""
    return service.list_pipelines(session, actor, include_archived=include_archived)


@router.post(
    "/pipelines",
    response_model=PipelineRead,
    status_code=status.HTTP_201_CREATED,
    tags=["pipelines"],
)
def create_pipeline(
    data: PipelineCreate, session: DbSession, actor: ApiActor, response: Response
) -> PipelineRead:
    """Create a pipeline; without `stages` it gets the standard six (Qualified … Won, Lost).
    Needs at least one open, one won (100 %) and one lost (0 %) stage."""
    pipeline = service.create_pipeline(session, data, actor)
    response.headers["Location"] = f"/api/v1/pipelines/{pipeline.id}"
    response.headers["ETag"] = etag(pipeline.version)
    return pipeline


@router.get("/pipelines/{pipeline_id}", response_model=PipelineRead, tags=["pipelines"])
def get_pipeline(pipeline_id: RecordId, session: DbSession, actor: ApiActor) -> Response:
    pipeline = service.get_pipeline(session, pipeline_id, actor)
    return json_body(pipeline, {"ETag": etag(pipeline.version)})


@router.patch("/pipelines/{pipeline_id}", response_model=PipelineRead, tags=["pipelines"])
def update_pipeline(
    pipeline_id: RecordId,
    data: PipelineUpdate,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> PipelineRead:
    """Rename, reorder, archive, make default, or replace the stages (kept by `id`)."""
    pipeline = service.update_pipeline(session, pipeline_id, data, actor, if_version=version)
    response.headers["ETag"] = etag(pipeline.version)
    return pipeline


@router.delete(
    "/pipelines/{pipeline_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["pipelines"]
)
def delete_pipeline(
    pipeline_id: RecordId, session: DbSession, actor: ApiActor, version: IfMatch
) -> None:
    """Delete a pipeline that has no deals (archive one that has)."""
    service.delete_pipeline(session, pipeline_id, actor, if_version=version)


@router.post(
    "/pipelines/{pipeline_id}/stages",
    response_model=PipelineRead,
    status_code=status.HTTP_201_CREATED,
    tags=["pipelines"],
)
def add_stage(
    pipeline_id: RecordId,
    data: StageCreate,
    session: DbSession,
    actor: ApiActor,
    response: Response,
) -> PipelineRead:
    """Add a stage at `position`, or after the last open stage."""
    pipeline = service.add_stage(session, pipeline_id, data, actor)
    response.headers["ETag"] = etag(pipeline.version)
    return pipeline


@router.put(
    "/pipelines/{pipeline_id}/stages/order", response_model=PipelineRead, tags=["pipelines"]
)
def reorder_stages(
    pipeline_id: RecordId, data: StageOrder, session: DbSession, actor: ApiActor
) -> PipelineRead:
    """Put every stage of the pipeline in the given order."""
    return service.reorder_stages(session, pipeline_id, data.stage_ids, actor)


@router.patch(
    "/pipelines/{pipeline_id}/stages/{stage_id}", response_model=PipelineRead, tags=["pipelines"]
)
def update_stage(
    pipeline_id: RecordId,
    stage_id: RecordId,
    data: StageUpdate,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
) -> PipelineRead:
    """Change a stage; `If-Match` takes the stage's own version."""
    return service.update_stage(session, pipeline_id, stage_id, data, actor, if_version=version)


@router.delete(
    "/pipelines/{pipeline_id}/stages/{stage_id}", response_model=PipelineRead, tags=["pipelines"]
)
def delete_stage(
    pipeline_id: RecordId, stage_id: RecordId, session: DbSession, actor: ApiActor
) -> PipelineRead:
    """Remove a stage that has no deals and has never had any."""
    return service.delete_stage(session, pipeline_id, stage_id, actor)


@router.get("/pipelines/{pipeline_id}/board", response_model=Board, tags=["pipelines"])
def pipeline_board(
    pipeline_id: RecordId,
    session: DbSession,
    actor: ApiActor,
    owner_id: Annotated[RecordId | None, Query(description="Only this owner's deals.")] = None,
    per_stage: Annotated[int, Query(ge=1, le=200, description="Cards per column.")] = 50,
) -> Response:
    """The kanban: per stage its deal count, totals per currency and first deals by board
    position."""
    return json_body(
        service.kanban(session, pipeline_id, actor, per_stage=per_stage, owner_id=owner_id)
    )


# ----------------------------------------------------------------------------- lost reasons


@router.get("/lost-reasons", response_model=list[LostReasonRead], tags=["pipelines"])
def list_lost_reasons(
    session: DbSession,
    actor: ApiActor,
    include_inactive: Annotated[bool, Query(description="Deactivated reasons too.")] = False,
) -> list[LostReasonRead]:
    return service.list_lost_reasons(session, actor, include_inactive=include_inactive)


@router.post(
    "/lost-reasons",
    response_model=LostReasonRead,
    status_code=status.HTTP_201_CREATED,
    tags=["pipelines"],
)
def create_lost_reason(
    data: LostReasonCreate, session: DbSession, actor: ApiActor, response: Response
) -> LostReasonRead:
    reason = service.create_lost_reason(session, data, actor)
    response.headers["Location"] = f"/api/v1/lost-reasons/{reason.id}"
    return reason


@router.patch("/lost-reasons/{reason_id}", response_model=LostReasonRead, tags=["pipelines"])
def update_lost_reason(
    reason_id: RecordId, data: LostReasonUpdate, session: DbSession, actor: ApiActor
) -> LostReasonRead:
    """Rename, reorder or (de)activate a lost reason."""
    return service.update_lost_reason(session, reason_id, data, actor)


@router.delete(
    "/lost-reasons/{reason_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["pipelines"]
)
def delete_lost_reason(reason_id: RecordId, session: DbSession, actor: ApiActor) -> None:
    """Delete a lost reason no deal was lost for."""
    service.delete_lost_reason(session, reason_id, actor)


# ----------------------------------------------------------------------------- deals


@router.get("/deals", response_model=Page[DealRead], tags=["deals"])
def list_deals(
    session: DbSession,
    actor: ApiActor,
    filter: FilterQuery = [],  # noqa: B006
    sort: Annotated[
        str | None, Query(max_length=60, description="Field, `-` for descending.")
    ] = None,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    q: Annotated[str | None, Query(max_length=200, description="Name, by prefix.")] = None,
) -> Response:
    return json_body(
        service.list_deals(
            session, actor, filters=filter, sort=sort, cursor=cursor, limit=limit, q=q
        )
    )


@router.post("/deals", response_model=DealRead, status_code=status.HTTP_201_CREATED, tags=["deals"])
def create_deal(
    data: DealCreate, session: DbSession, actor: ApiActor, response: Response
) -> DealRead:
    """Create a deal. Without a stage it starts in the first stage of the pipeline (the
    default pipeline unless given); a stage with required fields needs them set."""
    deal = service.create_deal(session, data, actor)
    response.headers["Location"] = f"/api/v1/deals/{deal.id}"
    response.headers["ETag"] = etag(deal.version)
    return deal


@router.get("/deals/{deal_id}", response_model=DealRead, tags=["deals"])
def get_deal(deal_id: RecordId, session: DbSession, actor: ApiActor) -> Response:
    deal = service.get_deal(session, deal_id, actor)
    return json_body(deal, {"ETag": etag(deal.version)})


@router.patch("/deals/{deal_id}", response_model=DealRead, tags=["deals"])
def update_deal(
    deal_id: RecordId,
    data: DealUpdate,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> DealRead:
    """Change the fields that are set; a new `stage_id` moves the deal, as `/move` does."""
    deal = service.update_deal(session, deal_id, data, actor, if_version=version)
    response.headers["ETag"] = etag(deal.version)
    return deal


@router.delete("/deals/{deal_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["deals"])
def delete_deal(deal_id: RecordId, session: DbSession, actor: ApiActor, version: IfMatch) -> None:
    service.delete_deal(session, deal_id, actor, if_version=version)


@router.post("/deals/{deal_id}/move", response_model=DealRead, tags=["deals"])
def move_deal(
    deal_id: RecordId,
    data: DealMove,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> DealRead:
    """Move a deal to a stage of its pipeline (with `pipeline_id`, of another one), and to a
    place in the board column. Fields the stage requires may be set in the same call; if any
    is still empty the answer is a 422 naming each one, and nothing changes. Every move is
    kept in the deal's stage history."""
    deal = service.move_deal(
        session,
        deal_id,
        data.stage_id,
        actor,
        board_position=data.board_position,
        if_version=version,
        fields=data,
    )
    response.headers["ETag"] = etag(deal.version)
    return deal


@router.get("/deals/{deal_id}/history", response_model=list[StageChangeRead], tags=["deals"])
def deal_stage_history(
    deal_id: RecordId, session: DbSession, actor: ApiActor
) -> list[StageChangeRead]:
    """Every stage the deal entered, oldest first, who moved it and how long it stayed."""
    return service.stage_history(session, deal_id, actor)


@router.get("/deals/{deal_id}/audit", response_model=list[AuditEntryRead], tags=["deals"])
def deal_audit(deal_id: RecordId, session: DbSession, actor: ApiActor) -> list[AuditEntryRead]:
    """The deal's audit history (every field change), newest first."""
    require(actor, "audit", "read")
    service.get_deal(session, deal_id, actor)
    return record_history(session, "deals", deal_id)


@router.get("/deals/{deal_id}/contacts", response_model=list[DealContactDetail], tags=["deals"])
def list_deal_contacts(
    deal_id: RecordId, session: DbSession, actor: ApiActor
) -> list[DealContactDetail]:
    """The deal's contacts with their roles."""
    return service.deal_contacts(session, deal_id, actor)


@router.put("/deals/{deal_id}/contacts", response_model=list[DealContactDetail], tags=["deals"])
def set_deal_contacts(
    deal_id: RecordId,
    data: DealContacts,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
) -> list[DealContactDetail]:
    """Replace the deal's contacts and their roles."""
    return service.set_deal_contacts(session, deal_id, data.contacts, actor, if_version=version)


@router.post("/deals/{deal_id}/contacts", response_model=list[DealContactDetail], tags=["deals"])
def add_deal_contact(
    deal_id: RecordId, data: DealContactIn, session: DbSession, actor: ApiActor
) -> list[DealContactDetail]:
    """Add a contact to the deal, or change its role."""
    return service.add_deal_contact(session, deal_id, data, actor)


@router.delete(
    "/deals/{deal_id}/contacts/{contact_id}",
    response_model=list[DealContactDetail],
    tags=["deals"],
)
def remove_deal_contact(
    deal_id: RecordId, contact_id: RecordId, session: DbSession, actor: ApiActor
) -> list[DealContactDetail]:
    """Take a contact off the deal."""
    return service.remove_deal_contact(session, deal_id, contact_id, actor)
