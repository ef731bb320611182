"""Contacts in and out of the service."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ichigen.core.schemas import RecordId
from ichigen.crm.companies.schemas import CompanyRef

Short = Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=50, strip_whitespace=True)]


class LifecycleStage(StrEnum):
    subscriber = "subscriber"
    lead = "lead"
    mql = "mql"
    sql = "sql"
    opportunity = "opportunity"
    customer = "customer"
    evangelist = "evangelist"
    other = "other"


class LeadStatus(StrEnum):
    new = "new"
    open = "open"
    in_progress = "in_progress"
    open_deal = "open_deal"
    unqualified = "unqualified"
    attempted_to_contact = "attempted_to_contact"
    connected = "connected"
    bad_timing = "bad_timing"


class EmailIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Annotated[str, Field(min_length=3, max_length=320)]
    label: Literal["work", "personal", "other"] = "work"
    primary: bool = False


class PhoneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: Annotated[str, Field(min_length=3, max_length=40)]
    label: Literal["mobile", "work", "home", "fax", "other"] = "mobile"
    primary: bool = False


class EmailOut(BaseModel):
    email: str
    label: str
    primary: bool


class PhoneOut(BaseModel):
    number: str
    label: str
    primary: bool


EXAMPLE: dict[str, Any] = {
    "last_name": "山田",
    "first_name": "太郎",
    "last_name_reading": "やまだ",
    "first_name_reading": "たろう",
    "emails": [{"email": "taro.yamada@sakura-seiko.co.jp", "primary": True}],
    "phones": [{"number": "090-1234-5678", "label": "mobile"}],
    "job_title": "購買部長",
    "lifecycle_stage": "lead",
    "tags": ["展示会2026"],
    "custom": {},
}


class ContactFields(BaseModel):
    """Fields a caller may set; all optional so PATCH and bulk upsert reuse them."""

    model_config = ConfigDict(extra="forbid")

    external_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    first_name: Short | None = None
    last_name: Short | None = None
    first_name_reading: Short | None = None
    last_name_reading: Short | None = None
    email: Annotated[str, Field(max_length=320)] | None = Field(
        default=None, description="Shorthand: sets the primary email (kept with the others)."
    )
    phone: Annotated[str, Field(max_length=40)] | None = Field(
        default=None, description="Shorthand: sets the primary phone (kept with the others)."
    )
    emails: Annotated[list[EmailIn], Field(max_length=20)] | None = Field(
        default=None, description="Replaces all emails of the contact."
    )
    phones: Annotated[list[PhoneIn], Field(max_length=20)] | None = Field(
        default=None, description="Replaces all phone numbers of the contact."
    )
    company_id: RecordId | None = None
    company_name: Annotated[str, Field(max_length=300)] | None = Field(
        default=None, description="Link to the company of this name, creating it if missing."
    )
    owner: Annotated[str, Field(max_length=320)] | None = Field(
        default=None, description="Owner by email or name, as an alternative to owner_id."
    )
    job_title: Short | None = None
    street: Annotated[str, Field(max_length=500)] | None = None
    city: Short | None = None
    region: Short | None = None
    postal_code: Annotated[str, Field(max_length=20)] | None = None
    country: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")] | None = None
    lifecycle_stage: LifecycleStage | None = None
    lead_status: LeadStatus | None = None
    source: Annotated[str, Field(max_length=100)] | None = None
    owner_id: RecordId | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    do_not_email: bool | None = None
    do_not_call: bool | None = None
    do_not_sms: bool | None = None
    custom: dict[str, Any] | None = None


class ContactCreate(ContactFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})


class ContactUpdate(ContactFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"lifecycle_stage": "mql", "custom": {"nps_score": 9}}]},
    )


class ContactRead(BaseModel):
    id: int
    external_id: str | None
    first_name: str | None
    last_name: str | None
    first_name_reading: str | None
    last_name_reading: str | None
    full_name: str
    primary_email: str | None
    primary_phone: str | None
    emails: list[EmailOut]
    phones: list[PhoneOut]
    company_id: int | None
    company: CompanyRef | None
    job_title: str | None
    street: str | None
    city: str | None
    region: str | None
    postal_code: str | None
    country: str | None
    lifecycle_stage: LifecycleStage | None
    lead_status: LeadStatus | None
    source: str | None
    owner_id: int | None
    tags: list[str]
    do_not_email: bool
    do_not_call: bool
    do_not_sms: bool
    custom: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


class BulkContacts(BaseModel):
    """Up to 1,000 contacts to create or update in one call."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "match_on": "email",
                    "records": [{"email": "hanako@example.jp", "last_name": "鈴木"}],
                }
            ]
        },
    )

    match_on: Literal["email", "external_id"] = "email"
    mode: Literal["create", "update", "upsert"] = "upsert"
    dry_run: bool = False
    records: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=1000)]


class ContactState(BaseModel):
    """A contact whole, as stored: what a merge keeps so that undoing it can put it back.

    ``fields`` holds the plain columns a caller sets (``service.COLUMNS``) and ``custom``.
    """

    id: int
    fields: dict[str, Any]
    emails: list[EmailOut]
    phones: list[PhoneOut]
    version: int
    created_at: datetime
    updated_at: datetime


class ContactMergeOutcome(BaseModel):
    """What merging one contact into another did to the two contacts."""

    #: The survivor before and after the merge, and the merged contact as it was.
    survivor_before: ContactState
    survivor_after: ContactState
    merged: ContactState
    #: ``{field: [survivor's value before, after]}`` for each field the merge changed.
    changes: dict[str, list[Any]]


class ContactMatch(BaseModel):
    """An existing contact that looks like the one being entered, and why."""

    id: int
    full_name: str
    primary_email: str | None
    primary_phone: str | None
    #: email, phone or name: what the two share.
    reasons: list[str]


class ContactIdentifiers(BaseModel):
    """A contact's e-mail addresses and phone numbers, and when it last changed (what the
    identity graph links to the contact's person)."""

    id: int
    version: int
    updated_at: datetime
    emails: list[str]
    phones: list[str]
