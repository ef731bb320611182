"""JSON API for the identity graph: resolve identifiers, look a person up, explain a link,
undo a wrong merge and read the merge log."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from ichigen.auth.permissions import require
from ichigen.core.errors import NotFound
from ichigen.core.schemas import Page, RecordId
from ichigen.identity import service
from ichigen.identity.schemas import (
    ExplainResult,
    IdentitySource,
    MergeLogRead,
    PersonRead,
    ResolveRequest,
    ResolveResult,
    UnmergeRequest,
    UnmergeResult,
)
from ichigen.web.deps import ApiActor, DbSession, json_body

router = APIRouter(prefix="/identity", tags=["identity"])
logger = logging.getLogger(__name__)

IdentifierQuery = Annotated[
    str,
    Query(
        min_length=3,
        max_length=400,
        description="An identifier as `type:value` (URL-encode it: a `+` must be `%2B`).",
        examples=["email:taro@example.jp"],
    ),
]


@router.post("/resolve", response_model=ResolveResult)
def resolve_identifiers(data: ResolveRequest, session: DbSession, actor: ApiActor) -> ResolveResult:
    """Link the identifiers of one message or record and return their person: new or not,
    the persons merged into it, the merges the rules refused (with the rule) and the blocked
    values that were dropped. A malformed identifier is a 422 naming it, and nothing changes."""
    require(actor, "identity", "write")
    return service.resolve_and_commit(
        session,
        [(i.type, i.value) for i in data.identifiers],
        IdentitySource(kind=data.source.kind, ref=data.source.reference),
    )


@router.get("/persons/{ref:path}", response_model=PersonRead)
def get_person(
    ref: Annotated[
        str,
        Path(
            max_length=400,
            description="A person id, or an identifier as `type:value` (normalised as when "
            "resolving, so `email:TARO@EXAMPLE.JP` finds `taro@example.jp`).",
            examples=["42", "email:taro@example.jp", "user_id:u-42"],
        ),
    ],
    session: DbSession,
    actor: ApiActor,
) -> Response:
    """A person with its identifiers and first and last seen. Asked by the id of a person
    merged into another, it answers with the survivor and says so in `merged`."""
    require(actor, "identity", "read")
    return json_body(service.person_by_reference(session, ref))


@router.get("/explain", response_model=ExplainResult)
def explain_link(
    a: IdentifierQuery, b: IdentifierQuery, session: DbSession, actor: ApiActor
) -> ExplainResult:
    """Why `a` and `b` are one person: the chain of active edges from `a` to `b`, each with
    its source and time (empty when they are the same identifier). 404 when they are not one
    person, or either is unknown."""
    require(actor, "identity", "read")
    first = service.split_identifier(a, ("query", "a"))
    second = service.split_identifier(b, ("query", "b"))
    person = service.find_person(session, *first, loc=("query", "a"))
    service.find_person(session, *second, loc=("query", "b"))
    edges = service.explain(session, first, second)
    if edges is None:
        raise NotFound(f"'{a}' and '{b}' are not one person.")
    return ExplainResult(person_id=person.id, edges=edges)


@router.post("/persons/{person_id}/unmerge", response_model=UnmergeResult)
def unmerge_person(
    person_id: RecordId,
    data: UnmergeRequest,
    request: Request,
    session: DbSession,
    actor: ApiActor,
) -> UnmergeResult:
    """Split a wrongly merged person by removing edges (ids from `explain`); the part with
    the oldest identifier keeps the id, each other part becomes a new person. 404: unknown
    person; 409: merged into another, or never merged; 422: edges not its active edges."""
    require(actor, "identity", "write")
    result = service.unmerge_and_commit(session, person_id, data.edge_ids, actor)
    collect = getattr(request.app.state, "collect", None)
    if collect is not None:
        collect.collector.forget_identities()
    if collect is not None and result.new_person_ids:
        try:
            service.reattribute_events(collect.collector.store, session, result.new_person_ids)
        except Exception:  # reads follow identifiers anyway; the stored ids are for analysis
            logger.exception("re-attributing events after unmerging person %s failed", person_id)
    return result


@router.get("/merge-log", response_model=Page[MergeLogRead])
def merge_log(
    person_id: Annotated[RecordId, Query(description="Entries about this person.")],
    session: DbSession,
    actor: ApiActor,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Merges done, merges refused (with the rule) and splits about a person, as survivor or
    as the other side, newest first; pass `next_cursor` back as `cursor`."""
    require(actor, "identity", "read")
    return json_body(service.merge_log_page(session, person_id, cursor=cursor, limit=limit))
