"""JSON API for duplicate contacts: scan and the scan history, the review queue, merge, undo,
and the check a form makes before creating a contact."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from ichigen.core.schemas import RecordId
from ichigen.crm.contacts.schemas import ContactMatch
from ichigen.identity import duplicates as service
from ichigen.identity.duplicates import (
    ContactMergeRead,
    DuplicateCheck,
    DuplicatePairDetail,
    DuplicatePairRead,
    DuplicateQueuePage,
    DuplicateScanPage,
    DuplicateScanRead,
    MergeRequest,
    PairMergeRequest,
    PairStatus,
    ScanResult,
)
from ichigen.web.deps import ApiActor, DbSession, json_body

router = APIRouter(prefix="/identity", tags=["duplicates"])


@router.post("/duplicates/scan", response_model=ScanResult)
def scan_duplicates(session: DbSession, actor: ApiActor) -> ScanResult:
    """Scan every contact for likely duplicates (Splink, trained on the contacts themselves)
    and queue the pairs at or above the threshold. Pairs already queued are re-scored; pairs
    already merged or marked not duplicates are never queued again. The answer's `scan_id`
    is the scan's entry in the history. 409 while another scan is running (one at a time,
    whoever started it, the server's scheduled scans included)."""
    return service.scan_contacts(session, actor)


@router.get("/duplicates/scans", response_model=DuplicateScanPage)
def list_scans(
    session: DbSession,
    actor: ApiActor,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """The history of duplicate scans, newest first: when, who or what started it (`trigger`
    manual or scheduled), running, finished with its counts, or failed with the reason.
    Pass `next_offset` as `offset`."""
    return json_body(service.list_scans(session, actor, offset=offset, limit=limit))


@router.get("/duplicates/scans/{scan_id}", response_model=DuplicateScanRead)
def get_scan(scan_id: RecordId, session: DbSession, actor: ApiActor) -> DuplicateScanRead:
    """One duplicate scan of the history."""
    return service.get_scan(session, scan_id, actor)


@router.get("/duplicates", response_model=DuplicateQueuePage)
def list_duplicates(
    session: DbSession,
    actor: ApiActor,
    status_: Annotated[PairStatus, Query(alias="status")] = "pending",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> Response:
    """The review queue, best match first: each pair with its match probability, each
    field's contribution (match weight) and both contacts. Pass `next_offset` as `offset`."""
    return json_body(service.list_pairs(session, actor, status=status_, offset=offset, limit=limit))


@router.post("/duplicates/check", response_model=list[ContactMatch])
def check_duplicates(
    data: DuplicateCheck, session: DbSession, actor: ApiActor
) -> list[ContactMatch]:
    """Existing contacts like one about to be created: the same normalised email or phone,
    or the same name or reading. Indexed look-ups only, fast enough to call while typing."""
    return service.check_new_contact(session, data, actor)


@router.get("/duplicates/{pair_id}", response_model=DuplicatePairDetail)
def get_duplicate(pair_id: RecordId, session: DbSession, actor: ApiActor) -> Response:
    """One queued pair with both contacts side by side."""
    return json_body(service.get_pair(session, pair_id, actor))


@router.post(
    "/duplicates/{pair_id}/merge",
    response_model=ContactMergeRead,
    status_code=status.HTTP_201_CREATED,
)
def merge_duplicate(
    pair_id: RecordId,
    session: DbSession,
    actor: ApiActor,
    data: Annotated[PairMergeRequest | None, Body()] = None,
) -> ContactMergeRead:
    """Merge a queued pair (survivor: `survivor_id`, by default the older contact). 409 when
    the pair was already merged or marked not a duplicate."""
    return service.merge_pair(session, pair_id, data or PairMergeRequest(), actor)


@router.post("/duplicates/{pair_id}/not-duplicate", response_model=DuplicatePairRead)
def not_duplicate(pair_id: RecordId, session: DbSession, actor: ApiActor) -> DuplicatePairRead:
    """Two different people: the pair leaves the queue and is never queued again."""
    return service.mark_not_duplicate(session, pair_id, actor)


@router.post(
    "/contact-merges", response_model=ContactMergeRead, status_code=status.HTTP_201_CREATED
)
def merge_contacts(data: MergeRequest, session: DbSession, actor: ApiActor) -> ContactMergeRead:
    """Merge contact `merged_id` into `survivor_id`: fields by `choices` (default: the
    survivor's unless empty), emails, phones, tags, custom values, deal roles, timeline and
    tasks; the merged contact is deleted. 422: itself or a bad choice; 404: unknown contact;
    409: already merged away or changed concurrently; 412: a stale `*_version`."""
    return service.merge_contacts(session, data, actor)


@router.get("/contact-merges", response_model=list[ContactMergeRead])
def list_merges(
    session: DbSession,
    actor: ApiActor,
    contact_id: Annotated[RecordId | None, Query(description="Merges about this contact.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[ContactMergeRead]:
    """Contact merges, newest first."""
    return service.list_merges(session, actor, contact_id=contact_id, limit=limit)


@router.get("/contact-merges/{merge_id}", response_model=ContactMergeRead)
def get_merge(merge_id: RecordId, session: DbSession, actor: ApiActor) -> ContactMergeRead:
    """One merge: the survivor's changed fields and the records moved."""
    return service.get_merge(session, merge_id, actor)


@router.post("/contact-merges/{merge_id}/undo", response_model=ContactMergeRead)
def undo_merge(merge_id: RecordId, session: DbSession, actor: ApiActor) -> ContactMergeRead:
    """Undo a merge in one step: the merged contact comes back with its id, fields, emails
    and phones, and exactly the records moved go back. 409 if already undone."""
    return service.undo_merge(session, merge_id, actor)
