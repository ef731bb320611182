"""JSON API for unified profiles: a profile by person id or any identifier, its merged
timeline, and the history of its tracked traits."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from ichigen.auth.permissions import require
from ichigen.collect.store import EventStore
from ichigen.core.errors import NotFound
from ichigen.core.schemas import RecordId
from ichigen.identity import service as identity
from ichigen.profiles import service
from ichigen.profiles.schemas import ProfileRead, TimelinePage, TraitChangeRead
from ichigen.web.deps import ApiActor, DbSession, json_body

router = APIRouter(tags=["profiles"])

ProfileRef = Annotated[
    str,
    Path(
        max_length=400,
        description="A person id, or any identifier as `type:value` (normalised as when "
        "resolving, so `email:TARO@EXAMPLE.JP` finds `taro@example.jp`).",
        examples=["42", "email:taro@example.jp", "user_id:u-42", "crm_contact:17"],
    ),
]


def event_store(request: Request) -> EventStore | None:
    """This process's event store, when it collects events."""
    state = getattr(request.app.state, "collect", None)
    return None if state is None else state.collector.store


@router.get("/profiles/{ref:path}/timeline", response_model=TimelinePage)
def profile_timeline(
    ref: ProfileRef,
    request: Request,
    session: DbSession,
    actor: ApiActor,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """One timeline, newest first: the person's tracked events (under every user and
    anonymous id it holds) and the CRM activities of its contact and the contact's deals."""
    require(actor, "identity", "read")
    person = identity.person_by_reference(session, ref)
    profile = service.profile_of(session, person, actor)
    events = service.person_events(event_store(request), person, actor, limit)
    items = service.timeline(session, events, profile, actor, limit)
    return json_body(TimelinePage(items=items))


@router.get("/profiles/{ref:path}/trait-history", response_model=list[TraitChangeRead])
def profile_trait_history(
    ref: ProfileRef,
    session: DbSession,
    actor: ApiActor,
    name: Annotated[str | None, Query(max_length=200, description="One trait only.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[TraitChangeRead]:
    """Every value the person's tracked traits took, with its source, newest first."""
    require(actor, "identity", "read")
    person = identity.person_by_reference(session, ref)
    return service.trait_history(session, person, name, limit)


@router.get("/profiles/{ref:path}", response_model=ProfileRead)
def get_profile(ref: ProfileRef, request: Request, session: DbSession, actor: ApiActor) -> Response:
    """The unified profile: identifiers, traits with their sources (a CRM value beats a
    tracked one, else the newest wins), first and last seen, the CRM contact and consent.
    Asked by a merged person's id, it answers with the survivor and says so in `merged`."""
    require(actor, "identity", "read")
    person = identity.person_by_reference(session, ref)
    profile = service.profile_of(session, person, actor)
    events = service.person_events(event_store(request), person, actor, limit=20)
    consent, at = service.tracked_consent(events)
    if consent is not None:
        profile.consent.tracked, profile.consent.tracked_at = consent, at
    return json_body(profile)


@router.get("/contacts/{contact_id}/profile", response_model=ProfileRead)
def contact_profile(contact_id: RecordId, session: DbSession, actor: ApiActor) -> Response:
    """The profile of a CRM contact (linked into the identity graph first, if the background
    pass has not reached it yet)."""
    require(actor, "identity", "read")
    profile = service.profile_of_contact(session, contact_id, actor)
    if profile is None:
        raise NotFound(f"Contact {contact_id} has nothing that links it to a profile.")
    session.commit()
    return json_body(profile)
