"""Deals: the fields a deal list filters and sorts on, quick search, and the board's reads."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Select,
    Table,
    bindparam,
    func,
    select,
    union_all,
)

from ichigen.core.custom_fields import CustomFieldRead
from ichigen.core.query import ListField, custom_list_field
from ichigen.core.text import fold, prefix_upper_bound
from ichigen.crm.deals.models import Deal as D
from ichigen.crm.deals.models import DealContact, DealStageTotal, Pipeline, Stage

BASE_FIELDS: dict[str, ListField] = {
    "id": ListField(D.id, "int", nullable=False),
    "name": ListField(D.name_folded, "text", nullable=False, folded=True),
    "amount": ListField(D.amount, "decimal"),
    "currency": ListField(D.currency, "text", nullable=False),
    "pipeline_id": ListField(D.pipeline_id, "int", nullable=False),
    "stage_id": ListField(D.stage_id, "int", nullable=False),
    "status": ListField(D.status, "text", nullable=False),
    "owner_id": ListField(D.owner_id, "int"),
    "company_id": ListField(D.company_id, "int"),
    "expected_close_date": ListField(D.expected_close_date, "date"),
    "closed_at": ListField(D.closed_at, "datetime"),
    "lost_reason_id": ListField(D.lost_reason_id, "int"),
    "probability_override": ListField(D.probability_override, "int"),
    "forecast_category": ListField(D.forecast_category, "text"),
    "next_step_due": ListField(D.next_step_due, "date"),
    "source": ListField(D.source, "text"),
    "external_id": ListField(D.external_id, "text"),
    "tags": ListField(D.tags, "list", sortable=False),
    "stage_entered_at": ListField(D.stage_entered_at, "datetime", nullable=False),
    "created_at": ListField(D.created_at, "datetime", nullable=False),
    "updated_at": ListField(D.updated_at, "datetime", nullable=False),
}


def list_fields(custom: dict[str, CustomFieldRead], dialect: str) -> dict[str, ListField]:
    fields = dict(BASE_FIELDS)
    for key, field in custom.items():
        fields[f"cf.{key}"] = custom_list_field("deals", field, dialect)
    return fields


def name_starts_with(q: str) -> ColumnElement[bool]:
    """Deals whose name starts with ``q`` (folded: case, width and kana do not matter)."""
    folded = fold(q)
    return (D.name_folded >= folded) & (D.name_folded < prefix_upper_bound(folded))


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


DEALS = _table(D)
STAGES = _table(Stage)
PIPELINES = _table(Pipeline)
TOTALS = _table(DealStageTotal)
DEAL_CONTACTS = _table(DealContact)

# Reads built once: on the hot paths (a deal, a board) building a statement costs more than
# running it.
DEAL_BY_ID = select(*DEALS.c).where(DEALS.c.id == bindparam("deal_id"))
CONTACTS_OF = (
    select(DEAL_CONTACTS.c.deal_id, DEAL_CONTACTS.c.contact_id, DEAL_CONTACTS.c.role)
    .where(DEAL_CONTACTS.c.deal_id.in_(bindparam("ids", expanding=True)))
    .order_by(DEAL_CONTACTS.c.deal_id, DEAL_CONTACTS.c.id)
)
STAGE_NAMES = (
    select(
        STAGES.c.id,
        STAGES.c.name,
        STAGES.c.probability,
        PIPELINES.c.name.label("pipeline_name"),
    )
    .join(PIPELINES, PIPELINES.c.id == STAGES.c.pipeline_id)
    .where(STAGES.c.id.in_(bindparam("ids", expanding=True)))
)
PIPELINE_BY_ID = select(*PIPELINES.c).where(PIPELINES.c.id == bindparam("pipeline_id"))
#: A pipeline and its stages in one read (stage columns prefixed ``stage_``).
PIPELINE_AND_STAGES = (
    select(*PIPELINES.c, *(c.label(f"stage_{c.name}") for c in STAGES.c))
    .join(STAGES, STAGES.c.pipeline_id == PIPELINES.c.id)
    .where(PIPELINES.c.id == bindparam("pipeline_id"))
    .order_by(STAGES.c.position, STAGES.c.id)
)
STAGES_OF = (
    select(*STAGES.c)
    .where(STAGES.c.pipeline_id.in_(bindparam("ids", expanding=True)))
    .order_by(STAGES.c.pipeline_id, STAGES.c.position, STAGES.c.id)
)

#: The columns a board card shows.
CARD_COLUMNS = (
    DEALS.c.id,
    DEALS.c.stage_id,
    DEALS.c.name,
    DEALS.c.amount,
    DEALS.c.currency,
    DEALS.c.company_id,
    DEALS.c.owner_id,
    DEALS.c.expected_close_date,
    DEALS.c.next_step,
    DEALS.c.stage_entered_at,
    DEALS.c.board_position,
    DEALS.c.version,
)


@lru_cache(maxsize=128)
def board_cards(stages: int, one_owner: bool) -> CompoundSelect[Any]:
    """The first cards of ``stages`` columns in one statement (parameters ``stage_0`` …,
    ``limit`` and, for one owner, ``owner_id``): per stage, a walk of
    ``ix_deals_stage_id_position_id`` (``ix_deals_owner_id_stage_id_position_id``) that stops at
    the limit. Built once per shape: building it costs more than running it."""
    parts = []
    for index in range(stages):
        stmt = select(*CARD_COLUMNS).where(DEALS.c.stage_id == bindparam(f"stage_{index}"))
        if one_owner:
            stmt = stmt.where(DEALS.c.owner_id == bindparam("owner_id"))
        first = (
            stmt.order_by(DEALS.c.board_position, DEALS.c.id).limit(bindparam("limit")).subquery()
        )
        parts.append(select(*first.c))
    return union_all(*parts)


def stage_totals(owner_key: int | None) -> Select[Any]:
    """Counts and amounts per stage and currency, from the running totals (a few rows)."""
    stmt = select(
        TOTALS.c.stage_id,
        TOTALS.c.currency,
        func.sum(TOTALS.c.deal_count).label("deals"),
        func.sum(TOTALS.c.amount_minor).label("minor"),
    ).where(TOTALS.c.stage_id.in_(bindparam("ids", expanding=True)))
    if owner_key is not None:
        stmt = stmt.where(TOTALS.c.owner_key == owner_key)
    return stmt.group_by(TOTALS.c.stage_id, TOTALS.c.currency)
