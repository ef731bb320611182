"""Companies in and out of the service."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ichigen.core.schemas import RecordId

Short = Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=50, strip_whitespace=True)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Country = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2}$")]

EXAMPLE: dict[str, Any] = {
    "name": "株式会社サクラ精工",
    "domain": "sakura-seiko.co.jp",
    "industry": "Manufacturing",
    "employees": 420,
    "annual_revenue": "1250000000",
    "revenue_currency": "JPY",
    "city": "大阪市",
    "country": "JP",
    "tags": ["key-account"],
}


class CompanyFields(BaseModel):
    """Fields a caller may set; every one is optional so PATCH can reuse them."""

    model_config = ConfigDict(extra="forbid")

    external_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    domain: Annotated[str, Field(max_length=255)] | None = None
    website: Annotated[str, Field(max_length=2000)] | None = None
    industry: Annotated[str, Field(max_length=100)] | None = None
    employees: Annotated[int, Field(ge=0, le=10_000_000)] | None = None
    annual_revenue: Annotated[Decimal, Field(ge=0, lt=Decimal("1e15"), decimal_places=2)] | None = (
        None
    )
    revenue_currency: Currency | None = None
    phone: Annotated[str, Field(max_length=40)] | None = None
    street: Annotated[str, Field(max_length=500)] | None = None
    city: Short | None = None
    region: Short | None = None
    postal_code: Annotated[str, Field(max_length=20)] | None = None
    country: Country | None = None
    description: Annotated[str, Field(max_length=20_000)] | None = None
    owner_id: RecordId | None = None
    parent_id: RecordId | None = None
    tags: Annotated[list[Tag], Field(max_length=50)] | None = None
    custom: dict[str, Any] | None = None


class CompanyCreate(CompanyFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    name: Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True)]


class CompanyUpdate(CompanyFields):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"employees": 450}]})

    name: (
        Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True)]
        | None
    ) = None


class CompanyRef(BaseModel):
    id: int
    name: str
    domain: str | None = None


class CompanyRead(BaseModel):
    id: int
    external_id: str | None
    name: str
    domain: str | None
    website: str | None
    industry: str | None
    employees: int | None
    annual_revenue: Decimal | None
    revenue_currency: str | None
    phone: str | None
    street: str | None
    city: str | None
    region: str | None
    postal_code: str | None
    country: str | None
    description: str
    owner_id: int | None
    parent_id: int | None
    tags: list[str]
    custom: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
