"""Retention of anonymous profiles: visitors never identified, not seen for a long time.

An anonymous profile is a surviving person whose identifiers are all ``anonymous_id`` (it
was never linked to a user id, an e-mail address, a phone number, a CRM contact or an
external id). Audiences of unidentified visitors are part of the product, so they are kept
like any profile, but not for ever: after ``anonymous_profile_retention_days`` without a
visit the person, the persons merged into it, its identifiers, its edges and its merge-log
rows are deleted (the profile layer deletes its traits with it). A profile that was ever
identified is never removed here. Its stored events are not touched: each source's event
retention applies to them. Person ids are never handed out again (see :func:`purge_persons`).

Processes that remember identifiers on the ingest path forget them after a purge: it is
logged as a ``purged`` merge-log row, one of ``service.SPLIT_ACTIONS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import delete, exists, func, insert, or_, select
from sqlalchemy.orm import Session

from ichigen.core.clock import utcnow
from ichigen.identity.models import IdentityEdge, IdentityIdentifier, MergeLogEntry, Person

#: The merge-log action of a purge.
PURGED = "purged"
_CHUNK = 500


class PurgeResult(BaseModel):
    """What one purge removed (or, with ``dry_run``, would remove)."""

    #: Surviving anonymous profiles removed.
    profiles: int
    #: Persons removed in all: the profiles and the persons once merged into them.
    persons: int
    identifiers: int
    edges: int
    seen_before: datetime
    dry_run: bool = False
    #: Their events removed from the event store (not counted in a dry run).
    events: int = 0


def stale_anonymous(
    session: Session,
    seen_before: datetime,
    limit: int,
    among: Sequence[int] | None = None,
) -> list[int]:
    """Surviving persons not seen since ``seen_before`` whose identifiers are all anonymous
    ids, oldest id first. With ``among``: those of these persons still so, their rows locked
    until the transaction ends (where the database locks rows), so that a visitor coming back
    in the meantime is not removed."""
    identified = exists().where(
        IdentityIdentifier.person_id == Person.id, IdentityIdentifier.type != "anonymous_id"
    )
    anonymous = exists().where(IdentityIdentifier.person_id == Person.id)
    query = select(Person.id).where(
        Person.merged_into.is_(None), Person.last_seen < seen_before, anonymous, ~identified
    )
    if among is None:
        return list(session.scalars(query.order_by(Person.id).limit(limit)))
    found: list[int] = []
    for chunk in _chunks(among):
        found.extend(
            session.scalars(
                query.where(Person.id.in_(chunk)).order_by(Person.id).with_for_update(of=Person)
            )
        )
    return found


def _chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]


def merged_into(session: Session, survivors: Sequence[int]) -> list[int]:
    """The persons once merged into these survivors."""
    found: list[int] = []
    for chunk in _chunks(survivors):
        found.extend(session.scalars(select(Person.id).where(Person.merged_into.in_(chunk))))
    return found


def purge_persons(session: Session, survivors: Sequence[int], seen_before: datetime) -> PurgeResult:
    """Delete these anonymous survivors (from :func:`stale_anonymous`) with everything of
    theirs in the identity graph, in the caller's transaction; the caller deletes what
    other layers keep per person first and commits."""
    absorbed = merged_into(session, survivors)
    identifiers: list[int] = []
    for chunk in _chunks(survivors):
        identifiers.extend(
            session.scalars(
                select(IdentityIdentifier.id).where(IdentityIdentifier.person_id.in_(chunk))
            )
        )
    edges = 0
    for chunk in _chunks(identifiers):
        edges += _count(
            session.execute(
                delete(IdentityEdge).where(
                    or_(IdentityEdge.left_id.in_(chunk), IdentityEdge.right_id.in_(chunk))
                )
            )
        )
    for chunk in _chunks(identifiers):
        session.execute(delete(IdentityIdentifier).where(IdentityIdentifier.id.in_(chunk)))
    persons = [*absorbed, *survivors]
    for chunk in _chunks(persons):
        session.execute(
            delete(MergeLogEntry).where(
                or_(MergeLogEntry.person_id.in_(chunk), MergeLogEntry.other_person_id.in_(chunk))
            )
        )
    # The newest person's row stays, bare (no identifiers, traits or merges): SQLite hands a
    # new row the largest id plus one, and a person id must never name two people (stored
    # events keep the id they were attributed to).
    newest = session.scalar(select(func.max(Person.id)))
    # Merged persons point at their survivor: they go first.
    for group in (absorbed, survivors):
        for chunk in _chunks([p for p in group if p != newest]):
            session.execute(delete(Person).where(Person.id.in_(chunk)))
    if survivors:
        session.execute(
            insert(MergeLogEntry).values(
                occurred_at=utcnow(),
                action=PURGED,
                person_id=survivors[0],
                other_person_id=None,
                reason=(
                    f"{len(survivors)} anonymous profile(s) not seen since "
                    f"{seen_before.date().isoformat()} removed"
                ),
                source_kind="retention",
                source_ref=None,
                details={
                    "profiles": len(survivors),
                    "persons": len(persons),
                    "first_person_id": survivors[0],
                    "last_person_id": survivors[-1],
                },
            )
        )
    session.flush()
    return PurgeResult(
        profiles=len(survivors),
        persons=len(persons),
        identifiers=len(identifiers),
        edges=edges,
        seen_before=seen_before,
    )


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
