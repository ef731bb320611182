"""What profile reads hand to their callers: the unified profile and its traits."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ichigen.identity.schemas import IdentifierRead, MergedPerson

TraitSource = Literal["crm", "event", "import"]


class TraitRead(BaseModel):
    """A trait's winning value and where it came from.

    A value typed into the CRM contact wins over any tracked one; among tracked values the
    newest wins. ``tracked_value`` is the newest tracked value when the CRM's overrides it
    with something different.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    value: Any
    source_kind: TraitSource
    source_ref: str | None
    observed_at: datetime | None
    tracked_value: Any = None


class TraitChangeRead(BaseModel):
    """One value a tracked trait took, and its source."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    name: str
    value: Any
    source_kind: str
    source_ref: str | None
    observed_at: datetime


class ContactSummary(BaseModel):
    """The CRM contact a profile is linked to."""

    id: int
    full_name: str
    primary_email: str | None
    primary_phone: str | None
    job_title: str | None
    company_id: int | None
    company_name: str | None
    owner_id: int | None
    lifecycle_stage: str | None


class ConsentState(BaseModel):
    """What the person agreed to: the CRM's do-not-contact flags, and the categories the
    newest tracked event carried (Segment's ``categoryPreferences``), when any."""

    do_not_email: bool | None = None
    do_not_call: bool | None = None
    do_not_sms: bool | None = None
    tracked: dict[str, Any] | None = None
    tracked_at: datetime | None = None


class ProfileRead(BaseModel):
    """One person as ichigen knows them: identity, traits, the CRM record and consent."""

    person_id: int
    anonymous: bool
    created_at: datetime
    first_seen: datetime
    last_seen: datetime
    identifiers: list[IdentifierRead]
    merged: MergedPerson | None
    #: The person ids merged into this one (events and traits under them are this person's).
    merged_person_ids: list[int]
    traits: list[TraitRead]
    contact: ContactSummary | None
    consent: ConsentState


class TimelineEntry(BaseModel):
    """One entry of the merged timeline: a tracked event or a CRM activity."""

    kind: Literal["event", "activity"]
    at: datetime
    #: event type and name (``track``/``Order Completed``), or activity kind and subject
    type: str
    title: str
    detail: dict[str, Any]
    #: the activity's id, or the event's message id
    ref: str


class TimelinePage(BaseModel):
    items: list[TimelineEntry]
