"""Duplicate contacts: the scan that fills the review queue, the queue's decisions, and
merging two contacts (with everything that points at them) in a way that can be undone.

The contacts feature merges the two records themselves; each CRM feature moves its own
references (deals' contact roles, timeline links, tasks) from one contact to the other and
back. This module puts those steps in one transaction with the merge log row, so a merge
and its undo each happen whole or not at all.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ichigen.auth.permissions import require
from ichigen.core.audit import Actor, record_change
from ichigen.core.clock import utcnow
from ichigen.core.errors import Conflict, FieldError, IchigenError, NotFound, ValidationFailed
from ichigen.core.schemas import RecordId
from ichigen.crm.activities import service as activities
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactMatch, ContactMergeOutcome, ContactRead
from ichigen.crm.deals import service as deals
from ichigen.crm.tasks import service as tasks
from ichigen.identity import contact_graph
from ichigen.identity.matching import MatchingError, MatchSettings, find_duplicates
from ichigen.identity.models import ContactMerge, DuplicatePair, DuplicateScan

Side = Literal["survivor", "merged"]
PairStatus = Literal["pending", "merged", "not_duplicate"]
#: Called during a scan with the step (``load``, ``match``, ``store``), work done and total.
Progress = Callable[[str, int, int], None]

# ----------------------------------------------------------------------------- schemas


class MergeChoices(BaseModel):
    """How to merge: which contact's value survives per field, and the versions read."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"choices": {"job_title": "merged", "custom.rank": "survivor"}}]
        },
    )

    #: Field name (or ``custom.<key>``) -> the contact whose value to keep. Fields not named
    #: keep the survivor's value unless it is empty.
    choices: dict[Annotated[str, Field(max_length=120)], Side] = Field(
        default_factory=dict, max_length=100
    )
    survivor_version: int | None = Field(default=None, ge=1)
    merged_version: int | None = Field(default=None, ge=1)


class MergeRequest(MergeChoices):
    """Merge contact ``merged_id`` into contact ``survivor_id``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"survivor_id": 12, "merged_id": 31, "choices": {"job_title": "merged"}}]
        },
    )

    survivor_id: RecordId
    merged_id: RecordId


class PairMergeRequest(MergeChoices):
    """Merge a queued pair; ``survivor_id`` (one of the two) defaults to the older contact."""

    survivor_id: RecordId | None = None


class MovedRecords(BaseModel):
    """What a merge moved from the merged contact to the survivor, as row ids."""

    deal_contacts: list[int] = Field(default_factory=list)
    #: ``(deal_id, role)`` of roles dropped because the survivor was on that deal already.
    deal_contacts_dropped: list[tuple[int, str | None]] = Field(default_factory=list)
    activity_links: list[int] = Field(default_factory=list)
    #: Activities linked to both contacts: their link to the merged contact was dropped.
    activity_links_dropped: list[int] = Field(default_factory=list)
    tasks: list[int] = Field(default_factory=list)


class ContactMergeRead(BaseModel):
    """One contact merge, as the merge log shows it."""

    id: int
    survivor_id: int
    merged_id: int
    status: Literal["merged", "undone"]
    pair_id: int | None
    merged_at: datetime
    merged_by: str
    undone_at: datetime | None
    undone_by: str | None
    #: ``{field: [survivor's value before, after]}``.
    changes: dict[str, list[Any]]
    moved: MovedRecords


class DuplicatePairRead(BaseModel):
    """A pair in the review queue: its score, and what each field contributed to it."""

    id: int
    left_contact_id: int
    right_contact_id: int
    status: PairStatus
    match_probability: float
    match_weight: float
    #: Match weight (log2 Bayes factor) per compared field; positive speaks for a match.
    contributions: dict[str, float]
    found_at: datetime
    scanned_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    merge_id: int | None


class DuplicatePairDetail(DuplicatePairRead):
    """A queued pair with both contacts, for side-by-side review."""

    left: ContactRead
    right: ContactRead


class DuplicateQueuePage(BaseModel):
    """A page of the review queue, best match first; pass ``next_offset`` back as ``offset``."""

    items: list[DuplicatePairDetail]
    next_offset: int | None


class ScanResult(BaseModel):
    """What one scan of the contact base did."""

    #: The scan's row in the history (``GET /identity/duplicates/scans/{id}``).
    scan_id: int
    contacts: int
    #: Pairs at or above the threshold.
    candidates: int
    #: New pairs added to the queue.
    queued: int
    #: Pending pairs whose score was refreshed.
    updated: int
    #: Pairs found again that were already decided (merged or not duplicates): left alone.
    already_decided: int
    #: Pending pairs this scan no longer found at the threshold (the contacts were edited,
    #: or the model changed): taken out of the queue.
    withdrawn: int = 0
    threshold: float
    seconds: float


class DuplicateCheck(BaseModel):
    """A contact being entered, to look for existing contacts like it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"last_name": "山田", "first_name": "太郎", "email": "taro@example.jp"}]
        },
    )

    first_name: Annotated[str, Field(max_length=200)] | None = None
    last_name: Annotated[str, Field(max_length=200)] | None = None
    first_name_reading: Annotated[str, Field(max_length=200)] | None = None
    last_name_reading: Annotated[str, Field(max_length=200)] | None = None
    email: Annotated[str, Field(max_length=320)] | None = None
    phone: Annotated[str, Field(max_length=40)] | None = None
    emails: Annotated[list[Annotated[str, Field(max_length=320)]], Field(max_length=20)] = Field(
        default_factory=list
    )
    phones: Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=20)] = Field(
        default_factory=list
    )
    #: The contact being edited, which is not its own duplicate.
    exclude_id: RecordId | None = None


# ----------------------------------------------------------------------------- merging


def _merge_read(row: ContactMerge) -> ContactMergeRead:
    outcome = ContactMergeOutcome.model_validate(row.contacts)
    return ContactMergeRead(
        id=row.id,
        survivor_id=row.survivor_id,
        merged_id=row.merged_id,
        status=row.status,
        pair_id=row.pair_id,
        merged_at=row.merged_at,
        merged_by=row.merged_by,
        undone_at=row.undone_at,
        undone_by=row.undone_by,
        changes=outcome.changes,
        moved=MovedRecords.model_validate(row.moved),
    )


def _check_not_merged_away(session: Session, contact_id: int, loc: str) -> None:
    """A clear 409 for a contact that a merge (not undone) folded into another."""
    earlier = session.scalars(
        select(ContactMerge)
        .where(ContactMerge.merged_id == contact_id, ContactMerge.status == "merged")
        .order_by(ContactMerge.id.desc())
        .limit(1)
    ).first()
    if earlier is not None and not contacts.existing_contact_ids(session, [contact_id]):
        raise Conflict(
            f"Contact {contact_id} was already merged into contact {earlier.survivor_id} "
            f"(merge {earlier.id}).",
            [FieldError((loc,), "already merged")],
        )


def _pair_of(session: Session, a: int, b: int) -> DuplicatePair | None:
    left, right = min(a, b), max(a, b)
    return session.scalars(
        select(DuplicatePair).where(
            DuplicatePair.left_contact_id == left, DuplicatePair.right_contact_id == right
        )
    ).first()


def merge_contacts(
    session: Session, data: MergeRequest, actor: Actor, *, pair_id: int | None = None
) -> ContactMergeRead:
    """Merge contact ``data.merged_id`` into ``data.survivor_id`` in one transaction.

    The survivor takes the chosen field values (default: its own unless empty), all emails,
    phones, tags and custom values, the merged contact's deal roles, timeline and tasks; the
    merged contact is deleted. The merge is logged (and audited) with everything needed to
    undo it. 422: a contact merged with itself or a bad choice; 404: unknown contact; 409: a
    contact already merged away, or being changed concurrently; 412: a stale version.
    Nothing changes on error.
    """
    require(actor, "identity", "write")
    if data.survivor_id == data.merged_id:
        raise ValidationFailed(
            "A contact cannot be merged with itself.",
            [FieldError(("merged_id",), "is the survivor itself")],
        )
    try:
        _check_not_merged_away(session, data.survivor_id, "survivor_id")
        _check_not_merged_away(session, data.merged_id, "merged_id")
        survivor, merged = contacts.claim_contacts_for_merge(
            session,
            data.survivor_id,
            data.merged_id,
            actor,
            survivor_version=data.survivor_version,
            merged_version=data.merged_version,
        )
        # Move what points at the merged contact before deleting it (deleting cascades).
        deal_links, deal_dropped = deals.reassign_contact(session, merged.id, survivor.id)
        activity_links, activity_dropped = activities.reassign_contact(
            session, merged.id, survivor.id
        )
        task_ids = tasks.reassign_contact(session, merged.id, survivor.id)
        outcome = contacts.merge_contact_into(session, survivor, merged, data.choices, actor)
        moved = MovedRecords(
            deal_contacts=deal_links,
            deal_contacts_dropped=deal_dropped,
            activity_links=activity_links,
            activity_links_dropped=activity_dropped,
            tasks=task_ids,
        )
        pair = _pair_of(session, survivor.id, merged.id)
        row = ContactMerge(
            survivor_id=survivor.id,
            merged_id=merged.id,
            status="merged",
            pair_id=pair.id if pair is not None else pair_id,
            merged_at=outcome.survivor_after.updated_at,
            merged_by=actor.label,
            contacts=outcome.model_dump(mode="json"),
            moved=moved.model_dump(mode="json"),
        )
        session.add(row)
        session.flush()
        # One customer, one profile: the merged contact's person joins the survivor's.
        contact_graph.join_contacts(session, survivor.id, merged.id, row.id)
        if pair is not None:
            pair.status = "merged"
            pair.decided_at = row.merged_at
            pair.decided_by = actor.label
            pair.merge_id = row.id
        record_change(
            session,
            actor,
            "contact_merges",
            row.id,
            "merge",
            {
                "survivor_id": [None, survivor.id],
                "merged_id": [None, merged.id],
                "moved": [None, moved.model_dump(mode="json")],
            },
        )
        session.commit()
    except IchigenError:
        session.rollback()
        raise
    return _merge_read(row)


def _merge_row(session: Session, merge_id: int) -> ContactMerge:
    row = session.get(ContactMerge, merge_id)
    if row is None:
        raise NotFound(f"Merge {merge_id} does not exist.")
    return row


def get_merge(session: Session, merge_id: int, actor: Actor) -> ContactMergeRead:
    """One contact merge with what it changed and moved."""
    require(actor, "identity", "read")
    return _merge_read(_merge_row(session, merge_id))


def list_merges(
    session: Session, actor: Actor, *, contact_id: int | None = None, limit: int = 50
) -> list[ContactMergeRead]:
    """The latest contact merges, newest first; about one contact (either side) if given."""
    require(actor, "identity", "read")
    stmt = select(ContactMerge).order_by(ContactMerge.id.desc()).limit(limit)
    if contact_id is not None:
        stmt = stmt.where(
            or_(ContactMerge.survivor_id == contact_id, ContactMerge.merged_id == contact_id)
        )
    return [_merge_read(row) for row in session.scalars(stmt)]


def undo_merge(session: Session, merge_id: int, actor: Actor) -> ContactMergeRead:
    """Undo a contact merge in one transaction: the merged contact comes back with its id,
    fields, emails and phones; the survivor gets back the values the merge changed (unless
    changed since); exactly the deal roles, timeline links and tasks the merge moved go back.
    404: unknown merge; 409: already undone, or the contacts changed so that it cannot be.
    """
    require(actor, "identity", "write")
    try:
        row = _merge_row(session, merge_id)
        if row.status != "merged":
            raise Conflict(f"Merge {merge_id} has already been undone.")
        claimed = session.execute(
            update(ContactMerge)
            .where(ContactMerge.id == merge_id, ContactMerge.status == "merged")
            .values(status="undone", undone_at=utcnow(), undone_by=actor.label)
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 1) != 1:
            raise Conflict(f"Merge {merge_id} is being undone by someone else.")
        outcome = ContactMergeOutcome.model_validate(row.contacts)
        moved = MovedRecords.model_validate(row.moved)
        contacts.undo_contact_merge(session, outcome, actor)
        survivor_id, merged_id = row.survivor_id, row.merged_id
        deals.undo_reassign_contact(
            session, moved.deal_contacts, moved.deal_contacts_dropped, survivor_id, merged_id
        )
        activities.undo_reassign_contact(
            session, moved.activity_links, moved.activity_links_dropped, survivor_id, merged_id
        )
        tasks.undo_reassign_contact(session, moved.tasks, survivor_id, merged_id)
        back = contacts.get_contact(session, merged_id, Actor.system("identity"))
        contact_graph.separate_contacts(
            session,
            survivor_id,
            merged_id,
            merge_id,
            row.merged_at,
            [("email", e.email) for e in back.emails] + [("phone", p.number) for p in back.phones],
            actor,
        )
        session.execute(
            update(DuplicatePair)
            .where(DuplicatePair.merge_id == merge_id)
            .values(status="pending", decided_at=None, decided_by=None, merge_id=None)
            .execution_options(synchronize_session=False)
        )
        record_change(
            session, actor, "contact_merges", merge_id, "undo", {"status": ["merged", "undone"]}
        )
        session.commit()
    except IchigenError:
        session.rollback()
        raise
    session.refresh(row)
    return _merge_read(row)


# ----------------------------------------------------------------------------- the queue


def _pair_read(row: DuplicatePair) -> DuplicatePairRead:
    return DuplicatePairRead(
        id=row.id,
        left_contact_id=row.left_contact_id,
        right_contact_id=row.right_contact_id,
        status=row.status,
        match_probability=row.match_probability,
        match_weight=row.match_weight,
        contributions=dict(row.contributions or {}),
        found_at=row.found_at,
        scanned_at=row.scanned_at,
        decided_at=row.decided_at,
        decided_by=row.decided_by,
        merge_id=row.merge_id,
    )


def _pair_row(session: Session, pair_id: int) -> DuplicatePair:
    row = session.get(DuplicatePair, pair_id)
    if row is None:
        raise NotFound(f"Duplicate pair {pair_id} does not exist.")
    return row


def _details(
    session: Session, rows: list[DuplicatePair], actor: Actor
) -> list[DuplicatePairDetail]:
    out = []
    for row in rows:
        left = contacts.get_contact(session, row.left_contact_id, actor)
        right = contacts.get_contact(session, row.right_contact_id, actor)
        out.append(DuplicatePairDetail(**_pair_read(row).model_dump(), left=left, right=right))
    return out


def list_pairs(
    session: Session,
    actor: Actor,
    *,
    status: PairStatus = "pending",
    offset: int = 0,
    limit: int = 20,
) -> DuplicateQueuePage:
    """A page of the review queue with both contacts of each pair, best match first.

    Pairs one of whose contacts no longer exists (merged into a third, or deleted) are not
    shown; they come back if that merge is undone.
    """
    require(actor, "identity", "read")
    require(actor, "contacts", "read")
    found: list[DuplicatePair] = []
    position = offset
    batch = max(limit * 2, 50)
    while len(found) < limit + 1:
        rows = list(
            session.scalars(
                select(DuplicatePair)
                .where(DuplicatePair.status == status)
                .order_by(DuplicatePair.match_probability.desc(), DuplicatePair.id)
                .offset(position)
                .limit(batch)
            )
        )
        if not rows:
            break
        ids = {r.left_contact_id for r in rows} | {r.right_contact_id for r in rows}
        live = contacts.existing_contact_ids(session, ids)
        for row in rows:
            position += 1
            if row.left_contact_id in live and row.right_contact_id in live:
                found.append(row)
                if len(found) == limit + 1:
                    position -= 1
                    break
    has_more = len(found) > limit
    return DuplicateQueuePage(
        items=_details(session, found[:limit], actor), next_offset=position if has_more else None
    )


def count_pending(session: Session, actor: Actor) -> int:
    """How many pairs wait for review (including some whose contacts have gone since)."""
    require(actor, "identity", "read")
    return int(
        session.scalar(
            select(func.count()).select_from(DuplicatePair).where(DuplicatePair.status == "pending")
        )
        or 0
    )


def get_pair(session: Session, pair_id: int, actor: Actor) -> DuplicatePairDetail:
    """One pair of the queue with both contacts (404 when a contact has gone since)."""
    require(actor, "identity", "read")
    return _details(session, [_pair_row(session, pair_id)], actor)[0]


def mark_not_duplicate(session: Session, pair_id: int, actor: Actor) -> DuplicatePairRead:
    """Decide that a queued pair is two different people: it leaves the queue and later scans
    never queue it again. 409 if it was merged."""
    require(actor, "identity", "write")
    row = _pair_row(session, pair_id)
    if row.status == "merged":
        raise Conflict(f"Pair {pair_id} has been merged; undo the merge first.")
    if row.status != "not_duplicate":
        before = row.status
        row.status = "not_duplicate"
        row.decided_at = utcnow()
        row.decided_by = actor.label
        record_change(
            session, actor, "duplicate_pairs", row.id, "update", {"status": [before, row.status]}
        )
        session.commit()
    return _pair_read(row)


def merge_pair(
    session: Session, pair_id: int, data: PairMergeRequest, actor: Actor
) -> ContactMergeRead:
    """Merge the two contacts of a queued pair (see :func:`merge_contacts`). 409 if the pair
    was already merged or marked not a duplicate; 422 if ``survivor_id`` is not one of them."""
    require(actor, "identity", "write")
    row = _pair_row(session, pair_id)
    if row.status == "merged":
        raise Conflict(f"Pair {pair_id} has already been merged (merge {row.merge_id}).")
    if row.status == "not_duplicate":
        raise Conflict(f"Pair {pair_id} was marked as not a duplicate.")
    pair = (row.left_contact_id, row.right_contact_id)
    survivor_id = data.survivor_id if data.survivor_id is not None else pair[0]
    if survivor_id not in pair:
        raise ValidationFailed(
            f"Contact {survivor_id} is not in pair {pair_id}.",
            [FieldError(("survivor_id",), "must be one of the pair's contacts")],
        )
    merged_id = pair[1] if survivor_id == pair[0] else pair[0]
    request = MergeRequest(
        survivor_id=survivor_id,
        merged_id=merged_id,
        choices=data.choices,
        survivor_version=data.survivor_version,
        merged_version=data.merged_version,
    )
    return merge_contacts(session, request, actor, pair_id=pair_id)


# ----------------------------------------------------------------------------- the scan


def _load_records(
    session: Session, page_size: int, progress: Progress | None
) -> list[dict[str, Any]]:
    total = contacts.contact_count(session)
    records: list[dict[str, Any]] = []
    after = 0
    while True:
        page = contacts.contact_match_records(session, after_id=after, limit=page_size)
        if not page:
            break
        records.extend(page)
        after = page[-1]["id"]
        if progress:
            progress("load", len(records), max(total, len(records)))
    return records


def scan_contacts(
    session: Session,
    actor: Actor,
    *,
    settings: MatchSettings | None = None,
    progress: Progress | None = None,
    page_size: int = 50_000,
    trigger: ScanTrigger = "manual",
) -> ScanResult:
    """Look for duplicates across every contact and queue the pairs above the threshold.

    Runs the Splink model (:func:`ichigen.identity.matching.find_duplicates`) over names,
    readings, primary email and phone, company and address. A pair already queued gets its
    score refreshed; a pair already decided (merged, or not a duplicate) is left alone, so
    it is never queued twice.

    Each scan is recorded in the scan history (``running``, then ``finished`` with its
    counts, or ``failed`` with the reason, the error being raised again). Only one scan runs
    at a time, across every process: 409 while another is running (one that showed a sign
    of life less than :data:`SCAN_LEASE` ago). Commits.
    """
    require(actor, "identity", "write")
    require(actor, "contacts", "read")
    settings = settings or MatchSettings()
    scan_id = _start_scan(session, actor, trigger, settings.threshold)
    started = time.perf_counter()
    with _Heartbeat(session, scan_id):
        try:
            return _scan(session, scan_id, started, settings, progress, page_size)
        except BaseException as exc:  # recorded whatever stopped it, even Ctrl-C in the CLI
            _record_failure(session, scan_id, exc, time.perf_counter() - started)
            raise


def _scan(
    session: Session,
    scan_id: int,
    started: float,
    settings: MatchSettings,
    progress: Progress | None,
    page_size: int,
) -> ScanResult:
    records = _load_records(session, page_size, progress)
    if progress:
        progress("match", 0, 1)
    try:
        candidates = find_duplicates(records, settings) if len(records) >= 2 else []
    except MatchingError:
        candidates = []
    if progress:
        progress("match", 1, 1)
    existing = {
        (left, right): (pair_id, status)
        for pair_id, left, right, status in session.execute(
            select(
                DuplicatePair.id,
                DuplicatePair.left_contact_id,
                DuplicatePair.right_contact_id,
                DuplicatePair.status,
            )
        )
    }
    now = utcnow()
    new_rows: list[dict[str, Any]] = []
    refreshed: list[dict[str, Any]] = []
    decided = 0
    seen: set[tuple[int, int]] = set()
    for candidate in candidates:
        a, b = int(candidate.left_id), int(candidate.right_id)
        key = (min(a, b), max(a, b))
        if key in seen:
            continue
        seen.add(key)
        score = {
            "match_probability": candidate.match_probability,
            "match_weight": candidate.match_weight,
            "contributions": dict(candidate.contributions),
            "scanned_at": now,
        }
        if key in existing:
            pair_id, status = existing[key]
            if status == "pending":
                refreshed.append({"id": pair_id, **score})
            else:
                decided += 1
            continue
        new_rows.append(
            {
                "left_contact_id": key[0],
                "right_contact_id": key[1],
                "status": "pending",
                "found_at": now,
                **score,
            }
        )
    chunk = 5_000
    for start in range(0, len(new_rows), chunk):
        session.execute(insert(DuplicatePair), new_rows[start : start + chunk])
        if progress:
            progress("store", min(start + chunk, len(new_rows)), len(new_rows))
    for start in range(0, len(refreshed), chunk):
        session.execute(update(DuplicatePair), refreshed[start : start + chunk])
    # A full scan is the queue's truth: pending pairs it no longer finds go.
    stale = [
        pair_id
        for key, (pair_id, status) in existing.items()
        if status == "pending" and key not in seen
    ]
    for start in range(0, len(stale), chunk):
        session.execute(
            delete(DuplicatePair)
            .where(
                DuplicatePair.id.in_(stale[start : start + chunk]),
                DuplicatePair.status == "pending",
            )
            .execution_options(synchronize_session=False)
        )
    result = ScanResult(
        scan_id=scan_id,
        contacts=len(records),
        candidates=len(seen),
        queued=len(new_rows),
        updated=len(refreshed),
        already_decided=decided,
        withdrawn=len(stale),
        threshold=settings.threshold,
        seconds=round(time.perf_counter() - started, 3),
    )
    # The pairs and the scan's outcome are committed together.
    session.execute(
        update(DuplicateScan)
        .where(DuplicateScan.id == scan_id)
        .values(
            status="finished",
            finished_at=utcnow(),
            **result.model_dump(exclude={"scan_id", "threshold"}),
        )
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result


# ----------------------------------------------------------------------------- scan history

ScanStatus = Literal["running", "finished", "failed"]
#: manual: a person through the UI, the API or the CLI; scheduled: the server's own timer.
ScanTrigger = Literal["manual", "scheduled"]
#: How often a running scan marks itself alive (from a thread of its own, so that it goes on
#: doing so while Splink works for many minutes).
SCAN_HEARTBEAT = timedelta(minutes=1)
#: A scan still ``running`` with no sign of life for this long is taken for dead (its process
#: stopped without recording the outcome): it no longer blocks another scan, which records
#: it as failed.
SCAN_LEASE = timedelta(minutes=15)
#: After a failed scan, the schedule waits this long (or its interval, if shorter) to retry.
SCAN_RETRY = timedelta(hours=1)
#: Who the scheduled scans are recorded as.
SCHEDULER = Actor.system("scheduler")
_ABANDONED = (
    f"abandoned: no sign of life for {SCAN_LEASE.total_seconds() / 60:.0f} minutes "
    "(its process stopped during the scan)"
)

log = logging.getLogger(__name__)


class ScanStopped(Exception):
    """Raise from a scan's progress callback to stop it; it is recorded as failed."""


class DuplicateScanRead(BaseModel):
    """One scan in the history; the counts are empty until it has finished."""

    id: int
    started_at: datetime
    #: The last sign of life of a running scan (it marks itself alive every minute).
    heartbeat_at: datetime | None
    finished_at: datetime | None
    status: ScanStatus
    trigger: ScanTrigger
    #: The user (email) or the system part (``scheduler``, ``cli``) that started it.
    started_by: str
    contacts: int | None
    candidates: int | None
    queued: int | None
    updated: int | None
    already_decided: int | None
    withdrawn: int | None
    threshold: float
    seconds: float | None
    #: Why a failed scan failed.
    error: str | None


class DuplicateScanPage(BaseModel):
    """A page of the scan history, newest first; pass ``next_offset`` back as ``offset``."""

    items: list[DuplicateScanRead]
    next_offset: int | None


class ScanSchedule(BaseModel):
    """The scheduled scan: when it is due next, and the scans that decide it."""

    #: Hours between scheduled scans (``ICHIGEN_DUPLICATES_SCAN_HOURS``); 0: off.
    every_hours: float
    #: When the next scheduled scan is due (it starts at the server's next check after
    #: that); none when scheduled scans are off.
    next_at: datetime | None
    #: A scheduled scan should start now.
    due: bool
    #: The scan running now, if any.
    running: DuplicateScanRead | None
    #: The latest scan that ended, finished or failed.
    last: DuplicateScanRead | None
    #: The latest scan that finished.
    last_finished: DuplicateScanRead | None


def _scan_read(row: DuplicateScan) -> DuplicateScanRead:
    return DuplicateScanRead.model_validate(row, from_attributes=True)


class _Heartbeat:
    """Marks a running scan alive every :data:`SCAN_HEARTBEAT` while the block runs, through
    a connection of its own (the scan's session is busy, or inside a long transaction)."""

    def __init__(self, session: Session, scan_id: int) -> None:
        self._engine = session.get_bind().engine
        self._scan_id = scan_id
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"duplicate-scan-{scan_id}-heartbeat", daemon=True
        )

    def _beat(self) -> None:
        while not self._stop.wait(SCAN_HEARTBEAT.total_seconds()):
            try:
                with Session(self._engine) as session:
                    session.execute(
                        update(DuplicateScan)
                        .where(DuplicateScan.id == self._scan_id, DuplicateScan.status == "running")
                        .values(heartbeat_at=utcnow())
                        .execution_options(synchronize_session=False)
                    )
                    session.commit()
            except Exception:  # a missed beat is retried; only a long silence loses the lease
                log.warning("duplicate scan %s: heartbeat failed", self._scan_id, exc_info=True)

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        # A beat in progress ends within the store's lock timeout; never wait for ever.
        self._thread.join(timeout=30)


def _alive(scan: DuplicateScan, now: datetime) -> bool:
    """A running scan that showed a sign of life within the lease."""
    return (scan.heartbeat_at or scan.started_at) > now - SCAN_LEASE


def _running_scan(session: Session) -> DuplicateScan | None:
    """The one row marked running (a unique index allows no second), live or abandoned."""
    return session.scalars(
        select(DuplicateScan).where(DuplicateScan.status == "running").limit(1)
    ).first()


def _busy(running: DuplicateScan) -> Conflict:
    return Conflict(
        f"Duplicate scan {running.id} is running (started "
        f"{running.started_at:%Y-%m-%d %H:%M} UTC by {running.started_by}); "
        "start another when it has finished."
    )


def _start_scan(session: Session, actor: Actor, trigger: ScanTrigger, threshold: float) -> int:
    """Record a running scan and commit, or refuse (409) while another one is running."""
    now = utcnow()
    running = _running_scan(session)
    if running is not None:
        if _alive(running, now):
            refused = _busy(running)
            session.rollback()
            raise refused
        running.status = "failed"
        running.finished_at = now
        running.error = _ABANDONED
        session.flush()
    row = DuplicateScan(
        started_at=now,
        status="running",
        trigger=trigger,
        started_by=actor.label,
        threshold=threshold,
    )
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        # Another process recorded its running scan between our look and our write.
        session.rollback()
        running = _running_scan(session)
        if running is None:
            raise
        refused = _busy(running)
        session.rollback()
        raise refused from None
    return row.id


def _record_failure(session: Session, scan_id: int, exc: BaseException, seconds: float) -> None:
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    try:
        session.rollback()
        session.execute(
            update(DuplicateScan)
            .where(DuplicateScan.id == scan_id, DuplicateScan.status == "running")
            .values(status="failed", finished_at=utcnow(), seconds=round(seconds, 3), error=reason)
            .execution_options(synchronize_session=False)
        )
        session.commit()
    except Exception:  # the store itself may be what failed; the lease frees the row then
        with contextlib.suppress(Exception):
            session.rollback()
        log.exception("could not record duplicate scan %s as failed", scan_id)


def get_scan(session: Session, scan_id: int, actor: Actor) -> DuplicateScanRead:
    """One scan of the history."""
    require(actor, "identity", "read")
    row = session.get(DuplicateScan, scan_id)
    if row is None:
        raise NotFound(f"Duplicate scan {scan_id} does not exist.")
    return _scan_read(row)


def list_scans(
    session: Session, actor: Actor, *, offset: int = 0, limit: int = 20
) -> DuplicateScanPage:
    """A page of the scan history, newest first."""
    require(actor, "identity", "read")
    rows = list(
        session.scalars(
            select(DuplicateScan).order_by(DuplicateScan.id.desc()).offset(offset).limit(limit + 1)
        )
    )
    return DuplicateScanPage(
        items=[_scan_read(row) for row in rows[:limit]],
        next_offset=offset + limit if len(rows) > limit else None,
    )


def _latest(session: Session, *statuses: str) -> DuplicateScan | None:
    return session.scalars(
        select(DuplicateScan)
        .where(DuplicateScan.status.in_(statuses))
        .order_by(DuplicateScan.finished_at.desc(), DuplicateScan.id.desc())
        .limit(1)
    ).first()


def scan_schedule(
    session: Session, actor: Actor, every_hours: float, *, now: datetime | None = None
) -> ScanSchedule:
    """Whether a scheduled scan is due: scheduled scans are on (``every_hours`` > 0), none is
    running, the last finished scan (scheduled or not) ended ``every_hours`` ago or more (or
    there is none), and the last failed one ended at least :data:`SCAN_RETRY` ago (or the
    interval, if shorter), so that a scan that keeps failing is not retried all the time."""
    require(actor, "identity", "read")
    now = now or utcnow()
    running = _running_scan(session)
    if running is not None and not _alive(running, now):
        running = None
    last = _latest(session, "finished", "failed")
    finished = _latest(session, "finished")
    next_at: datetime | None = None
    if every_hours > 0:
        every = timedelta(hours=every_hours)
        next_at = finished.finished_at + every if finished and finished.finished_at else now
        if last is not None and last.status == "failed" and last.finished_at is not None:
            next_at = max(next_at, last.finished_at + min(every, SCAN_RETRY))
    return ScanSchedule(
        every_hours=max(every_hours, 0),
        next_at=next_at,
        due=next_at is not None and running is None and next_at <= now,
        running=_scan_read(running) if running is not None else None,
        last=_scan_read(last) if last is not None else None,
        last_finished=_scan_read(finished) if finished is not None else None,
    )


def run_scheduled_scan(
    session: Session,
    every_hours: float,
    *,
    settings: MatchSettings | None = None,
    progress: Progress | None = None,
) -> ScanResult | None:
    """Scan as the scheduler if a scheduled scan is due (see :func:`scan_schedule`); none
    when it is not, or when another process has just started one."""
    if not scan_schedule(session, SCHEDULER, every_hours).due:
        return None
    try:
        return scan_contacts(
            session, SCHEDULER, settings=settings, progress=progress, trigger="scheduled"
        )
    except Conflict:
        return None


# ----------------------------------------------------------------------------- at creation


def check_new_contact(session: Session, data: DuplicateCheck, actor: Actor) -> list[ContactMatch]:
    """Existing contacts that look like the one being entered (same email or phone, or the
    same name or reading), from indexed look-ups only: fast enough to ask while typing."""
    return contacts.likely_duplicates(
        session,
        actor,
        emails=[e for e in [data.email, *data.emails] if e],
        phones=[p for p in [data.phone, *data.phones] if p],
        first_name=data.first_name,
        last_name=data.last_name,
        first_name_reading=data.first_name_reading,
        last_name_reading=data.last_name_reading,
        exclude_id=data.exclude_id,
    )
