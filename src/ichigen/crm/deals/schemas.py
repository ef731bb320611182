"""Deals: request and response shapes (pipelines, stages, lost reasons, deals, the board)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ichigen.core.schemas import RecordId
from ichigen.crm.companies.schemas import CompanyRef

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=50, strip_whitespace=True)]
Currency = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z]{3}$", to_upper=True, strip_whitespace=True),
    Field(description="ISO 4217 code, e.g. JPY or USD."),
]
Percent = Annotated[int, Field(ge=0, le=100)]
#: Amounts: never negative, below ten trillion, at most four decimals (the currency's own
#: scale is checked by the service).
Amount = Annotated[Decimal, Field(ge=0, lt=Decimal("1e13"), max_digits=17, decimal_places=4)]

StageKind = Literal["open", "won", "lost"]
DealStatus = Literal["open", "won", "lost"]
#: Deal fields a stage can require before a deal may enter it.
RequiredField = Literal[
    "amount",
    "expected_close_date",
    "company_id",
    "contacts",
    "owner_id",
    "next_step",
    "close_note",
    "lost_reason_id",
]
REQUIRED_FIELDS: tuple[str, ...] = RequiredField.__args__  # type: ignore[attr-defined]
ContactRole = Literal["decision_maker", "champion", "influencer", "economic_buyer", "user", "other"]
CONTACT_ROLES: tuple[str, ...] = ContactRole.__args__  # type: ignore[attr-defined]
ForecastCategory = Literal["commit", "best_case", "pipeline", "omitted"]
FORECAST_CATEGORIES: tuple[str, ...] = ForecastCategory.__args__  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- pipelines


class StageFields(BaseModel):
    """What a stage is: its name, win probability, kind, required fields and rotting days."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    probability: Percent = Field(description="Win probability in percent (won 100, lost 0).")
    kind: StageKind = "open"
    required_fields: Annotated[list[RequiredField], Field(max_length=8)] = []
    rotting_days: Annotated[int, Field(ge=1, le=3650)] | None = Field(
        default=None, description="Days in this stage after which a deal shows as stalled."
    )


class StageIn(StageFields):
    """A stage as a pipeline is created or its stages replaced; ``id`` keeps an existing one."""

    id: RecordId | None = Field(
        default=None, description="An existing stage of this pipeline (when replacing stages)."
    )


class StageCreate(StageFields):
    """A stage added to a pipeline, at ``position`` (0 = first) or after the last open stage."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Contract sent",
                    "probability": 90,
                    "kind": "open",
                    "required_fields": ["amount", "expected_close_date"],
                    "rotting_days": 14,
                }
            ]
        },
    )

    position: Annotated[int, Field(ge=0, le=1000)] | None = None


class StageUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"probability": 60, "required_fields": ["amount"]}]},
    )

    name: Name | None = None
    probability: Percent | None = None
    kind: StageKind | None = None
    required_fields: Annotated[list[RequiredField], Field(max_length=8)] | None = None
    rotting_days: Annotated[int, Field(ge=1, le=3650)] | None = None


class StageOrder(BaseModel):
    """Every stage id of the pipeline, in the new order."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"stage_ids": [3, 1, 2, 4, 5, 6]}]}
    )

    stage_ids: Annotated[list[RecordId], Field(min_length=1, max_length=100)]


class StageRead(BaseModel):
    id: int
    pipeline_id: int
    name: str
    position: int
    probability: int
    kind: StageKind
    required_fields: list[str]
    rotting_days: int | None
    version: int


PIPELINE_EXAMPLE: dict[str, Any] = {
    "name": "New business",
    "stages": [
        {"name": "Qualified", "probability": 10},
        {"name": "Meeting", "probability": 25, "rotting_days": 14},
        {"name": "Proposal", "probability": 50, "required_fields": ["amount"]},
        {
            "name": "Negotiation",
            "probability": 80,
            "required_fields": ["amount", "expected_close_date"],
        },
        {"name": "Won", "probability": 100, "kind": "won", "required_fields": ["amount"]},
        {"name": "Lost", "probability": 0, "kind": "lost", "required_fields": ["lost_reason_id"]},
    ],
}


class PipelineCreate(BaseModel):
    """A pipeline and its stages in order; without stages it gets the standard six."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [PIPELINE_EXAMPLE]})

    name: Name
    is_default: bool = False
    position: Annotated[int, Field(ge=0, le=10_000)] = 0
    stages: Annotated[list[StageIn], Field(min_length=3, max_length=50)] | None = None


class PipelineUpdate(BaseModel):
    """Changes to a pipeline; ``stages`` replaces the list (by ``id``, in the given order)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "New business (Japan)", "is_default": True}]},
    )

    name: Name | None = None
    is_default: bool | None = None
    archived: bool | None = None
    position: Annotated[int, Field(ge=0, le=10_000)] | None = None
    stages: Annotated[list[StageIn], Field(min_length=3, max_length=50)] | None = None


class PipelineRead(BaseModel):
    id: int
    name: str
    position: int
    is_default: bool
    archived: bool
    stages: list[StageRead]
    version: int
    created_at: datetime
    updated_at: datetime


class LostReasonCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Price too high"}]}
    )

    name: Name
    position: Annotated[int, Field(ge=0, le=10_000)] = 0


class LostReasonUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"active": False}]})

    name: Name | None = None
    position: Annotated[int, Field(ge=0, le=10_000)] | None = None
    active: bool | None = None


class LostReasonRead(BaseModel):
    id: int
    name: str
    position: int
    active: bool


# ----------------------------------------------------------------------------- deals


class DealContactIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"contact_id": 1, "role": "decision_maker"}]},
    )

    contact_id: RecordId
    role: ContactRole | None = None


class DealContactRead(BaseModel):
    contact_id: int
    role: ContactRole | None


class DealContactDetail(DealContactRead):
    """A contact of a deal with what people read of it."""

    name: str
    email: str | None
    job_title: str | None


class DealContacts(BaseModel):
    """The contacts of a deal, replaced whole."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "contacts": [
                        {"contact_id": 1, "role": "decision_maker"},
                        {"contact_id": 2, "role": "champion"},
                    ]
                }
            ]
        },
    )

    contacts: Annotated[list[DealContactIn], Field(max_length=100)]


DEAL_EXAMPLE: dict[str, Any] = {
    "name": "サクラ精工 生産管理システム更新",
    "amount": "12500000",
    "currency": "JPY",
    "company_id": 1,
    "contacts": [{"contact_id": 1, "role": "decision_maker"}],
    "expected_close_date": "2026-12-25",
    "next_step": "Send the revised quote",
    "next_step_due": "2026-12-01",
    "tags": ["manufacturing"],
}


class DealFields(BaseModel):
    """Fields a caller may set; all optional so PATCH and moves reuse them."""

    model_config = ConfigDict(extra="forbid")

    external_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    name: Annotated[str, StringConstraints(max_length=300, strip_whitespace=True)] | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    pipeline_id: RecordId | None = Field(
        default=None, description="Defaults to the stage's pipeline, or the default pipeline."
    )
    stage_id: RecordId | None = Field(
        default=None, description="Defaults to the pipeline's first stage."
    )
    owner_id: RecordId | None = Field(
        default=None, description="An active user; defaults to the caller on create."
    )
    company_id: RecordId | None = None
    contacts: Annotated[list[DealContactIn], Field(max_length=100)] | None = Field(
        default=None, description="Replaces all contacts of the deal, each with a role."
    )
    expected_close_date: date | None = None
    lost_reason_id: RecordId | None = None
    close_note: Annotated[str, Field(max_length=5000)] | None = None
    probability: Percent | None = Field(
        default=None, description="Overrides the stage's probability; null goes back to it."
    )
    forecast_category: ForecastCategory | None = Field(
        default=None, description="Overrides the category derived from the probability."
    )
    next_step: Annotated[str, StringConstraints(max_length=500, strip_whitespace=True)] | None = (
        None
    )
    next_step_due: date | None = None
    source: Annotated[str, Field(max_length=100)] | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    custom: dict[str, Any] | None = None


class DealCreate(DealFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [DEAL_EXAMPLE]})

    name: Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True)]


class DealUpdate(DealFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"amount": "13000000", "next_step": "Meet the CFO", "probability": 60}]
        },
    )


class DealMove(DealFields):
    """Move a deal to a stage, with any fields the stage requires filled at the same time."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"stage_id": 3},
                {"stage_id": 6, "lost_reason_id": 1, "close_note": "Chose a local vendor"},
            ]
        },
    )

    stage_id: RecordId
    board_position: Annotated[float, Field(ge=-1e15, le=1e15, allow_inf_nan=False)] | None = Field(
        default=None, description="Order in the board column (lower first); top if none."
    )


class DealRead(BaseModel):
    id: int
    external_id: str | None
    name: str
    amount: Decimal | None
    currency: str
    pipeline_id: int
    pipeline_name: str
    stage_id: int
    stage_name: str
    status: DealStatus
    board_position: float
    owner_id: int | None
    company_id: int | None
    company: CompanyRef | None
    contacts: list[DealContactRead]
    expected_close_date: date | None
    closed_at: datetime | None
    lost_reason_id: int | None
    close_note: str
    probability: int = Field(description="The override if set, else the stage's probability.")
    probability_override: int | None
    forecast_category: ForecastCategory = Field(
        description="The override if set, else derived from status and probability."
    )
    forecast_category_override: ForecastCategory | None
    next_step: str
    next_step_due: date | None
    stage_entered_at: datetime
    source: str | None
    tags: list[str]
    custom: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


class StageChangeRead(BaseModel):
    """One move of a deal into a stage, and how long it stayed there."""

    id: int
    deal_id: int
    pipeline_id: int
    from_stage_id: int | None
    from_stage_name: str | None
    to_stage_id: int
    to_stage_name: str
    changed_by: int | None
    changed_by_name: str | None
    changed_at: datetime
    left_at: datetime | None = Field(description="When the deal moved on; null if still there.")
    seconds_in_stage: int = Field(description="Until it moved on, or until now.")


# ----------------------------------------------------------------------------- the board


class MoneyTotal(BaseModel):
    currency: str
    amount: Decimal


class BoardCard(BaseModel):
    id: int
    name: str
    amount: Decimal | None
    currency: str
    company_id: int | None
    company_name: str | None
    owner_id: int | None
    owner_name: str | None
    expected_close_date: date | None
    next_step: str
    stage_entered_at: datetime
    stalled: bool = Field(description="In the stage longer than its rotting days.")
    board_position: float
    version: int


class BoardColumn(BaseModel):
    stage: StageRead
    count: int
    totals: list[MoneyTotal] = Field(description="The amounts of all its deals, per currency.")
    converted: MoneyTotal | None = Field(
        default=None,
        description="All its amounts in the base currency at today's rates (null when a "
        "currency has no rate).",
    )
    deals: list[BoardCard] = Field(description="The first deals, by board position.")
    has_more: bool


class Board(BaseModel):
    """A pipeline's kanban: one column per stage."""

    pipeline: PipelineRead
    owner_id: int | None
    columns: list[BoardColumn]
