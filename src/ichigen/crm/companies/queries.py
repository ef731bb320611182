"""The fields a company list can filter and sort on."""

from __future__ import annotations

from ichigen.core.custom_fields import CustomFieldRead
from ichigen.core.query import ListField, custom_list_field
from ichigen.crm.companies.models import Company as C

BASE_FIELDS: dict[str, ListField] = {
    "id": ListField(C.id, "int", nullable=False),
    "name": ListField(C.name_folded, "text", nullable=False, folded=True),
    "domain": ListField(C.domain, "text"),
    "industry": ListField(C.industry, "text"),
    "employees": ListField(C.employees, "int"),
    "annual_revenue": ListField(C.annual_revenue, "decimal"),
    "city": ListField(C.city, "text"),
    "country": ListField(C.country, "text"),
    "owner_id": ListField(C.owner_id, "int"),
    "parent_id": ListField(C.parent_id, "int"),
    "external_id": ListField(C.external_id, "text"),
    "tags": ListField(C.tags, "list", sortable=False),
    "created_at": ListField(C.created_at, "datetime", nullable=False),
    "updated_at": ListField(C.updated_at, "datetime", nullable=False),
}


def list_fields(custom: dict[str, CustomFieldRead], dialect: str) -> dict[str, ListField]:
    fields = dict(BASE_FIELDS)
    for key, field in custom.items():
        fields[f"cf.{key}"] = custom_list_field("companies", field, dialect)
    return fields
