"""CSV import and export of deals, through the deals service's ``create_deal`` and ``update_deal``.

Each row is written by the same service functions the API uses, so a stage's required fields,
the currency's scale, an active owner, stage history and the audit log all apply. A batch of
rows runs in one transaction with a savepoint per row: a bad row rolls back alone, and a dry
run rolls the whole import back at the end, so it reports exactly what the import would do.

Rows are matched on ``external_id`` (HubSpot's Record ID, Salesforce's Opportunity ID) or on
our ``id``. Names in the file are looked up: the pipeline and the stage by name (case- and
width-insensitively, within the named pipeline, else the deal's own, else the default one;
"Closed Won" and "Closed Lost" find the pipeline's won and lost stages), the owner by email or
name, the company by name or domain, contacts by email or name, the lost reason by name.

A new deal keeps the creation date of the file (HubSpot's Create Date, Salesforce's Created
Date), and a won or lost deal its close date (our ``closed_at``, else the Close Date): the deal
is written through the service first, then dated, with an audit entry for the dates. A deal
whose close date lies before today is created in its pipeline's first stage, dated, and then
moved to its stage, so that the service checks the close date against the day it was created.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal, TextIO

from pydantic import ValidationError
from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import require
from ichigen.core.audit import Actor, diff, record_change
from ichigen.core.clock import utcnow
from ichigen.core.custom_fields import CustomFieldRead, fields_by_key
from ichigen.core.errors import BadRequest, FieldError, IchigenError
from ichigen.core.tabular import (
    BATCH_SIZE,
    MAX_REPORTED_ERRORS,
    ImportPreview,
    ImportReport,
    ReportBuilder,
    RowBatch,
    cell_text,
    check_header,
    csv_row,
    custom_cell,
    error_fields,
    money_with_currency,
    parse_date,
    parse_datetime,
    parse_percent,
    preview_import,
    read_table,
    resolve_mapping,
    split_list,
    the_one,
    time_zone_named,
    value_key,
    whole_number,
    write_in_batches,
)
from ichigen.core.text import fold
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts import service as contacts
from ichigen.crm.deals import service
from ichigen.crm.deals.models import Deal, DealStageChange
from ichigen.crm.deals.schemas import (
    CONTACT_ROLES,
    DealCreate,
    DealRead,
    DealUpdate,
    PipelineRead,
    StageRead,
)

ENTITY = "deals"
ImportMode = Literal["create", "update", "upsert"]
DealMatch = Literal["external_id", "id"]
Progress = Callable[[int, int], None]

#: Columns an export writes before the custom fields, in this order.
EXPORT_COLUMNS = (
    "id",
    "external_id",
    "name",
    "amount",
    "currency",
    "pipeline",
    "stage",
    "status",
    "owner",
    "company",
    "contacts",
    "contact_roles",
    "expected_close_date",
    "closed_at",
    "created_at",
    "probability",
    "forecast_category",
    "next_step",
    "next_step_due",
    "lost_reason",
    "close_note",
    "source",
    "tags",
    "updated_at",
)

_TEXT = {"external_id", "name", "next_step", "close_note", "source"}
#: Fields whose cells name other records (looked up once the row's deal is known).
_REFERENCES = {
    "pipeline",
    "stage",
    "owner",
    "company",
    "contacts",
    "contact_roles",
    "lost_reason",
    "deal_type",
}
#: Contact roles by their key or English label (``decision_maker``, "Decision maker").
_ROLES = {value_key(r): r for r in CONTACT_ROLES} | {
    value_key(r.replace("_", " ")): r for r in CONTACT_ROLES
}
_DATES = {"expected_close_date", "next_step_due"}
#: Stage names other systems use for their won and lost stages.
_WON = {value_key(v) for v in ("won", "closed won", "closed - won", "受注", "成約", "成立")}
_LOST = {value_key(v) for v in ("lost", "closed lost", "closed - lost", "失注", "不成立")}

_FORECAST: dict[str, str | None] = {}
for _category, _names in {
    "commit": ("commit", "コミット", "確約"),
    "best_case": ("best_case", "best case", "ベストケース", "最善"),
    "pipeline": ("pipeline", "パイプライン", "見込み"),
    "omitted": ("omitted", "not forecasted", "除外", "対象外"),
    # A closed deal's category follows from its stage.
    "": ("closed", "closed won", "closed lost", "closed - won", "closed - lost", "完了"),
}.items():
    for _name in _names:
        _FORECAST[value_key(_name)] = _category or None

#: A service error's field, as the import field (and column) it came from.
_FIELD_OF: dict[str, str] = {
    "pipeline_id": "pipeline",
    "stage_id": "stage",
    "owner_id": "owner",
    "company_id": "company",
    "lost_reason_id": "lost_reason",
}
_EMAIL = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")
#: Fields a deal created in its first stage gets only with the move to its own stage.
_MOVE_FIELDS = ("stage_id", "expected_close_date", "lost_reason_id", "close_note")
#: What a dry run shows of a deal.
_SHOWN = {
    "external_id",
    "name",
    "amount",
    "currency",
    "pipeline_id",
    "stage_id",
    "owner_id",
    "company_id",
    "contacts",
    "expected_close_date",
    "closed_at",
    "lost_reason_id",
    "close_note",
    "probability_override",
    "forecast_category_override",
    "next_step",
    "next_step_due",
    "source",
    "tags",
    "custom",
}


def forecast_category(value: str) -> str | None:
    """Our forecast category for ours, HubSpot's, Salesforce's and Japanese names; ``None``
    for a closed category (a closed deal's category follows from its stage)."""
    key = value_key(value)
    if key not in _FORECAST:
        raise ValueError(
            f"'{value}' is not a forecast category; use commit, best_case, pipeline or omitted"
        )
    return _FORECAST[key]


@dataclass
class _Row:
    """One file row on its way to a deal."""

    number: int
    cells: list[str]
    record: dict[str, Any] = field(default_factory=dict)
    #: Field (``amount``, ``stage``, ``custom.size``) -> the column it came from.
    sources: dict[str, int] = field(default_factory=dict)
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    #: Reference fields -> the text of their cell.
    names: dict[str, str] = field(default_factory=dict)
    record_id: int | None = None
    sign_currency: str | None = None
    created_at: datetime | None = None
    closed_at: datetime | None = None
    stage: StageRead | None = None

    def problem(self, name: str, reason: str) -> None:
        self.problems.append((self.sources.get(name), reason))


class _Reader:
    """Turns cells into deal records, per the resolved column mapping."""

    def __init__(
        self,
        headers: list[str],
        mapping: dict[str, str | None],
        custom: dict[str, CustomFieldRead],
        zone: tzinfo,
    ) -> None:
        self.headers = headers
        self.columns = [(i, t) for i, h in enumerate(headers) if (t := mapping.get(h)) is not None]
        self.custom = custom
        self.zone = zone
        self.width = len(headers)
        self.column_of = {target: i for i, target in reversed(self.columns)}

    def read(self, number: int, cells: list[str]) -> _Row:
        row = _Row(number, cells)
        if len(cells) > self.width:
            row.problems.append(
                (None, f"the row has {len(cells)} cells but the header names {self.width} columns")
            )
            return row
        record = row.record
        for index, target in self.columns:
            value = cell_text(cells[index]) if index < len(cells) else ""
            if not value:
                continue
            key = f"custom.{target[3:]}" if target.startswith("cf.") else target
            row.sources[key] = index
            try:
                self._convert(row, target, value)
            except ValueError as exc:
                row.problems.append((index, str(exc)))
        currency = record.get("currency")
        if row.sign_currency and currency and currency != row.sign_currency:
            row.problem(
                "amount", f"the amount is in {row.sign_currency} but the currency is {currency}"
            )
        elif row.sign_currency and not currency:
            record["currency"] = row.sign_currency
            row.sources["currency"] = row.sources["amount"]
        return row

    def _convert(self, row: _Row, target: str, value: str) -> None:
        record = row.record
        if target in _TEXT:
            record[target] = value
        elif target in _REFERENCES:
            row.names[target] = value
        elif target == "amount":
            record["amount"], row.sign_currency = money_with_currency(value)
        elif target == "currency":
            record["currency"] = value.upper()
        elif target in _DATES:
            record[target] = parse_date(value)
        elif target == "created_at":
            row.created_at = parse_datetime(value, self.zone)
        elif target == "closed_at":
            row.closed_at = parse_datetime(value, self.zone)
        elif target == "probability":
            record["probability"] = parse_percent(value)
        elif target == "forecast_category":
            category = forecast_category(value)
            if category is not None:
                record["forecast_category"] = category
        elif target == "tags":
            record["tags"] = split_list(value)
        elif target == "id":
            row.record_id = whole_number(value)
        elif target.startswith("cf."):
            key = target[3:]
            record.setdefault("custom", {})[key] = custom_cell(self.custom[key], value)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _earliest_creation_day(moment: datetime) -> date:
    """As the service counts it: the creation day where that day began first."""
    return (moment - timedelta(hours=12)).date()


class _Lookups:
    """Pipelines, stages, users, lost reasons, companies and contacts by the names rows use,
    each looked up once per import."""

    def __init__(self, session: Session, actor: Actor) -> None:
        self.pipelines = service.list_pipelines(session, actor, include_archived=True)
        self.pipeline_by_name = {value_key(p.name): p for p in self.pipelines}
        self.pipeline_by_id = {p.id: p for p in self.pipelines}
        default = service.default_pipeline(session, actor)
        self.default = self.pipeline_by_id.get(default.id) if default else None
        self.reasons: dict[str, list[int]] = {}
        for reason in service.list_lost_reasons(session, actor, include_inactive=True):
            self.reasons.setdefault(value_key(reason.name), []).append(reason.id)
        self.owners: dict[str, list[int]] = {}
        for user in auth_service.list_users(session):
            self.owners.setdefault(user.email, []).append(user.id)
            self.owners.setdefault(fold(user.name), []).append(user.id)
        self.companies: dict[str, int | str] = {}
        self.contacts: dict[str, int | str] = {}
        self.external_ids: dict[str, int] = {}

    def prefetch(self, session: Session, keys: set[str]) -> None:
        """The deals with these external ids (one query per batch)."""
        wanted = keys - self.external_ids.keys()
        if wanted:
            for external_id, deal_id in session.execute(
                select(Deal.external_id, Deal.id).where(Deal.external_id.in_(wanted))
            ):
                if external_id is not None:
                    self.external_ids[external_id] = deal_id

    def owner(self, value: str) -> int | str:
        matches = self.owners.get(value.lower()) or self.owners.get(fold(value)) or []
        return matches[0] if len(matches) == 1 else "no single user has this email or name"

    def company(self, session: Session, value: str) -> int | str:
        if value not in self.companies:
            ids = companies.company_ids_named(session, value)
            self.companies[value] = the_one(ids, value, "company", "name or domain")
        return self.companies[value]

    def contact(self, session: Session, value: str) -> int | str:
        if value not in self.contacts:
            ids = contacts.contact_ids_named(session, value)
            by = "email" if "@" in value else "name"
            self.contacts[value] = the_one(ids, value, "contact", by)
        return self.contacts[value]

    def stage_of(self, pipeline: PipelineRead, name: str) -> StageRead | str:
        key = value_key(name)
        for stage in pipeline.stages:
            if value_key(stage.name) == key:
                return stage
        kind = "won" if key in _WON else "lost" if key in _LOST else None
        closing = next((s for s in pipeline.stages if s.kind == kind), None)
        if closing is not None:
            return closing
        names = ", ".join(s.name for s in pipeline.stages)
        return f"the pipeline '{pipeline.name}' has no stage named '{name}' (its stages: {names})"


def first_stage(pipeline: PipelineRead) -> StageRead | None:
    """The stage a new deal enters when none is given (as the service picks it)."""
    return next((s for s in pipeline.stages if s.kind == "open"), None) or next(
        iter(pipeline.stages), None
    )


def _resolve(session: Session, lookups: _Lookups, row: _Row, existing: DealRead | None) -> None:
    """Turn the row's names into ids, and drop values that only repeat what the stage gives."""
    record, names = row.record, row.names
    pipeline: PipelineRead | None = None
    if "pipeline" in names:
        pipeline = lookups.pipeline_by_name.get(value_key(names["pipeline"]))
        if pipeline is None:
            shown = ", ".join(p.name for p in lookups.pipelines) or "none yet"
            row.problem(
                "pipeline", f"no pipeline is named '{names['pipeline']}' (pipelines: {shown})"
            )
            return
        record["pipeline_id"] = pipeline.id
    elif existing is not None:
        pipeline = lookups.pipeline_by_id.get(existing.pipeline_id)
    else:
        pipeline = lookups.default
    stage: StageRead | None = None
    if pipeline is None:
        if existing is None:
            row.problem("stage", "there is no pipeline yet; create one first")
        return
    if "stage" in names:
        found = lookups.stage_of(pipeline, names["stage"])
        if isinstance(found, str):
            row.problem("stage", found)
            return
        stage = found
        record["stage_id"] = stage.id
        record["pipeline_id"] = pipeline.id
    elif existing is not None and pipeline.id == existing.pipeline_id:
        stage = next((s for s in pipeline.stages if s.id == existing.stage_id), None)
    else:
        stage = first_stage(pipeline)
    row.stage = stage
    if "owner" in names:
        owner = lookups.owner(names["owner"])
        if isinstance(owner, str):
            row.problem("owner", owner)
        else:
            record["owner_id"] = owner
    if "company" in names:
        company = lookups.company(session, names["company"])
        if isinstance(company, str):
            row.problem("company", company)
        else:
            record["company_id"] = company
    if "contacts" in names:
        _resolve_contacts(session, lookups, row, existing)
    if "contact_roles" in names:
        _resolve_roles(session, lookups, row, existing)
    # A lost reason counts for lost deals only (the service clears it when a deal enters an
    # open or won stage; exports keep it on deals that were lost once).
    if "lost_reason" in names and stage is not None and stage.kind == "lost":
        reasons = lookups.reasons.get(value_key(names["lost_reason"]), [])
        if len(reasons) == 1:
            record["lost_reason_id"] = reasons[0]
        else:
            row.problem(
                "lost_reason",
                f"no lost reason is named '{names['lost_reason']}'; add it to the lost reasons"
                " first",
            )
    if "deal_type" in names:
        tags = record.get("tags", existing.tags if existing else [])
        record["tags"] = list(dict.fromkeys([*tags, names["deal_type"]]))
        row.sources.setdefault("tags", row.sources["deal_type"])
    if stage is not None:
        _drop_derived(record, stage, existing)
    _check_dates(row, stage, existing)


def _resolve_contacts(
    session: Session, lookups: _Lookups, row: _Row, existing: DealRead | None
) -> None:
    """The deal's contacts: those it has (with their roles), then those the row names."""
    links = [link.model_dump() for link in existing.contacts] if existing else []
    listed = {link["contact_id"] for link in links}
    for item in split_list(row.names["contacts"]):
        values = _EMAIL.findall(item) or [item]
        for value in values:
            found = lookups.contact(session, value)
            if isinstance(found, str):
                row.problem("contacts", found)
            elif found not in listed:
                links.append({"contact_id": found, "role": None})
                listed.add(found)
    row.record["contacts"] = links


def _resolve_roles(
    session: Session, lookups: _Lookups, row: _Row, existing: DealRead | None
) -> None:
    """Roles of the deal's contacts from ``email=role`` items (as exports write them): the
    contact gets the role, and is added to the deal if it was not on it."""
    links: list[dict[str, Any]] = row.record.get("contacts") or (
        [link.model_dump() for link in existing.contacts] if existing else []
    )
    for item in split_list(row.names["contact_roles"]):
        who, sep, role_name = item.rpartition("=")
        role = _ROLES.get(value_key(role_name))
        if not sep or not who.strip():
            row.problem(
                "contact_roles", f"'{item}' is not contact=role (e.g. taro@example.jp=champion)"
            )
            continue
        if role is None:
            row.problem(
                "contact_roles",
                f"'{role_name.strip()}' is not a contact role; use {', '.join(CONTACT_ROLES)}",
            )
            continue
        found = lookups.contact(session, who.strip())
        if isinstance(found, str):
            row.problem("contact_roles", found)
            continue
        link = next((link for link in links if link["contact_id"] == found), None)
        if link is None:
            links.append({"contact_id": found, "role": role})
        else:
            link["role"] = role
    row.record["contacts"] = links
    row.sources.setdefault("contacts", row.sources["contact_roles"])


def _drop_derived(record: dict[str, Any], stage: StageRead, existing: DealRead | None) -> None:
    """Leave out a probability and a forecast category that equal what the stage gives
    (HubSpot and Salesforce export them for every deal), so that they are not pinned."""
    override = existing.probability_override if existing else None
    if record.get("probability") == stage.probability:
        if override is None:
            del record["probability"]
        else:
            record["probability"] = None
        override = None
    elif "probability" in record:
        override = record["probability"]
    if "forecast_category" not in record:
        return
    if stage.kind != "open":
        del record["forecast_category"]
        return
    probability = override if override is not None else stage.probability
    if record["forecast_category"] == service.derived_forecast_category("open", probability):
        if existing is not None and existing.forecast_category_override is not None:
            record["forecast_category"] = None
        else:
            del record["forecast_category"]


def _check_dates(row: _Row, stage: StageRead | None, existing: DealRead | None) -> None:
    """The creation and close times a row may set (they are written after the service's)."""
    now = utcnow()
    if existing is not None:
        row.created_at = None  # creation dates apply to new deals only
    elif row.created_at is not None and row.created_at > now:
        row.problem("created_at", "is in the future")
        return
    closing = stage is not None and stage.kind != "open"
    if row.closed_at is not None:
        if not closing:
            row.problem(
                "closed_at",
                f"the stage '{stage.name if stage else ''}' is open, so the deal has no close time",
            )
            return
        if row.closed_at > now:
            row.problem("closed_at", "is in the future")
            return
    elif closing:
        close_day = row.record.get("expected_close_date")
        if close_day is not None and close_day <= now.date():
            row.closed_at = _midnight(close_day)
    created = row.created_at or (existing.created_at if existing else None)
    if created is not None and row.closed_at is not None and row.closed_at < created:
        row.problem(
            "closed_at" if "closed_at" in row.sources else "expected_close_date",
            "is before the deal was created",
        )


# ----------------------------------------------------------------------------- writing


def _shown(deal: DealRead) -> dict[str, Any]:
    shown = deal.model_dump(mode="json", include=_SHOWN)
    shown["contacts"] = [link["contact_id"] for link in shown["contacts"]]
    return shown


def date_deal(
    session: Session,
    actor: Actor,
    deal: DealRead,
    created_at: datetime | None,
    closed_at: datetime | None,
) -> DealRead:
    """Give a deal the creation and close times it had elsewhere: the deal, its first stage
    entry and (for a closed deal) its last one, with an audit entry; the deal as it is then."""
    dating = created_at is not None and created_at != deal.created_at
    closing = closed_at is not None and deal.status != "open" and closed_at != deal.closed_at
    if not dating and not closing:
        return deal
    row = session.get(Deal, deal.id)
    assert row is not None
    before = {"created_at": row.created_at, "closed_at": row.closed_at}
    history = list(
        session.scalars(
            select(DealStageChange)
            .where(DealStageChange.deal_id == deal.id)
            .order_by(DealStageChange.changed_at, DealStageChange.id)
        )
    )
    if dating and created_at is not None:
        row.created_at = created_at
        if history:
            history[0].changed_at = created_at
            if len(history) == 1:
                row.stage_entered_at = created_at
    if closing and closed_at is not None:
        row.closed_at = closed_at
        if history:
            history[-1].changed_at = closed_at
        row.stage_entered_at = closed_at
    row.version += 1
    row.updated_at = utcnow()
    changes = diff(before, {"created_at": row.created_at, "closed_at": row.closed_at})
    record_change(session, actor, ENTITY, deal.id, "update", changes)
    session.commit()
    return deal.model_copy(
        update={
            "created_at": row.created_at,
            "closed_at": row.closed_at,
            "stage_entered_at": row.stage_entered_at,
            "version": row.version,
            "updated_at": row.updated_at,
        }
    )


def _create(session: Session, row: _Row, actor: Actor) -> DealRead:
    record = row.record
    close_day: date | None = record.get("expected_close_date")
    created_at = row.created_at
    if close_day is None or close_day >= _earliest_creation_day(utcnow()):
        deal = service.create_deal(session, DealCreate.model_validate(record), actor)
        return date_deal(session, actor, deal, created_at, row.closed_at)
    # The service checks a close date against the day the deal was created: create the deal
    # in its pipeline's first stage, date it, then move it to its stage.
    if created_at is None:
        created_at = _midnight(close_day)
        if row.closed_at is not None:
            created_at = min(created_at, row.closed_at)
    first = {k: v for k, v in record.items() if k not in _MOVE_FIELDS}
    deal = service.create_deal(session, DealCreate.model_validate(first), actor)
    date_deal(session, actor, deal, created_at, None)
    later = {k: record[k] for k in _MOVE_FIELDS if k in record}
    deal = service.update_deal(session, deal.id, DealUpdate.model_validate(later), actor)
    return date_deal(session, actor, deal, None, row.closed_at)


def _update(session: Session, row: _Row, existing: DealRead, actor: Actor) -> DealRead:
    after = service.update_deal(session, existing.id, DealUpdate.model_validate(row.record), actor)
    return date_deal(session, actor, after, None, row.closed_at)


def _locate(row: _Row, reader: _Reader, loc: Sequence[Any]) -> tuple[int | None, str]:
    """The column a write error's field path points at, and a prefix for its reason when
    the field has no column of its own (a stage's required field that the row lacks)."""
    parts = [str(p) for p in loc]
    if not parts:
        return None, ""
    name = _FIELD_OF.get(parts[0], parts[0])
    if name == "custom" and len(parts) > 1:
        name = f"custom.{parts[1]}"
    index = row.sources.get(name)
    if index is None and name.startswith("custom."):
        index = reader.column_of.get(f"cf.{name[7:]}")
    if index is not None:
        return index, ""
    label = service.FIELD_NAMES.get(parts[0], parts[0].replace("_", " "))
    stage_column = row.sources.get("stage")
    return stage_column, f"{label} "


def _import_row(
    session: Session,
    connection: Connection,
    lookups: _Lookups,
    reader: _Reader,
    row: _Row,
    actor: Actor,
    how: tuple[ImportMode, DealMatch],
    report: ReportBuilder,
) -> None:
    mode, match_on = how

    def fail(problems: Sequence[tuple[int | None, str]]) -> None:
        report.fail_cells(row.number, reader.headers, row.cells, problems)

    if row.problems:
        fail(row.problems)
        return
    found: int | None = None
    if match_on == "external_id" and row.record.get("external_id"):
        found = lookups.external_ids.get(row.record["external_id"])
    elif match_on == "id" and row.record_id is not None and mode != "create":
        found = row.record_id if service.existing_deal_ids(session, [row.record_id]) else None
        if found is None:
            row.problem("id", f"no deal has the id {row.record_id}")
    if found is not None and mode == "create":
        row.problem(match_on, f"deal {found} already has this {match_on.replace('_', ' ')}")
    elif found is None and mode == "update" and not row.problems:
        row.problem(match_on, "no deal matches this row")
    if row.problems:
        fail(row.problems)
        return
    try:
        existing = service.get_deal(session, found, actor) if found is not None else None
    except IchigenError as exc:
        fail([(row.sources.get(match_on), exc.detail)])
        return
    _resolve(session, lookups, row, existing)
    if row.problems:
        fail(row.problems)
        return
    # The reads above ended in the session's own savepoint: release it, so that the row's
    # savepoint holds every write of the row (a deal dated or moved after its creation).
    session.commit()
    nested = connection.begin_nested()
    try:
        if existing is None:
            after = _create(session, row, actor)
        else:
            after = _update(session, row, existing, actor)
        session.commit()  # the reads after the last write
        nested.commit()
    except (ValidationError, IchigenError) as exc:
        session.rollback()
        nested.rollback()
        session.expunge_all()
        problems = []
        for error in error_fields(exc):
            index, prefix = _locate(row, reader, error.loc)
            problems.append((index, prefix + error.msg))
        fail(problems)
        return
    if existing is None:
        if after.external_id:
            lookups.external_ids[after.external_id] = after.id
        shown = {k: v for k, v in _shown(after).items() if v not in (None, "", [], {})}
        report.succeed(row.number, "created", after.id, diff({}, shown))
        return
    status = "updated" if after.version != existing.version else "unchanged"
    report.succeed(row.number, status, after.id, diff(_shown(existing), _shown(after)))


def import_deals(
    session: Session,
    data: bytes,
    actor: Actor,
    *,
    mapping: dict[str, str | None] | None = None,
    mode: ImportMode = "upsert",
    match_on: DealMatch = "external_id",
    dry_run: bool = False,
    encoding: str | None = None,
    time_zone: str | None = None,
    progress: Progress | None = None,
    max_errors: int | None = MAX_REPORTED_ERRORS,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Import deals from CSV bytes; bad rows are reported by row and column, not fatal.

    Rows are matched on ``external_id`` or ``id``; times without an offset are read in
    ``time_zone`` (UTC unless named). A file that cannot be read or mapped is a ``BadRequest``
    raised before anything is written; ``dry_run`` writes nothing and previews the changes.
    """
    require(actor, ENTITY, "write")
    if match_on not in ("external_id", "id"):
        raise BadRequest(
            "Deals are matched on external_id or id.",
            [FieldError(("match_on",), "must be external_id or id")],
        )
    zone = time_zone_named(time_zone)
    table = read_table(data, encoding)
    custom = fields_by_key(session, ENTITY)
    resolved = resolve_mapping(table.headers, ENTITY, custom.values(), mapping)
    check_header(table, resolved)
    targets = {t for t in resolved.values() if t}
    if mode != "create" and match_on not in targets:
        raise BadRequest(
            f"To {mode} deals matched on {match_on}, map a column to {match_on}.",
            [FieldError(("mapping",), f"no column is mapped to {match_on}")],
        )
    if mode != "update" and "name" not in targets:
        raise BadRequest(
            "To create deals, map a column to name.",
            [FieldError(("mapping",), "no column is mapped to name")],
        )
    reader = _Reader(table.headers, resolved, custom, zone)
    lookups = _Lookups(session, actor)
    report = ReportBuilder(ENTITY, table, resolved, dry_run=dry_run, max_errors=max_errors)

    def write_batch(rows_session: Session, connection: Connection, batch: RowBatch) -> None:
        rows = [reader.read(number, cells) for number, cells in batch]
        keys = {str(r.record["external_id"]) for r in rows if r.record.get("external_id")}
        lookups.prefetch(rows_session, keys)
        for row in rows:
            _import_row(
                rows_session,
                connection,
                lookups,
                reader,
                row,
                actor,
                (mode, match_on),
                report,
            )

    write_in_batches(
        session, table, write_batch, dry_run=dry_run, progress=progress, batch_size=batch_size
    )
    return report.report


def preview_deals_import(
    session: Session,
    data: bytes,
    actor: Actor,
    *,
    encoding: str | None = None,
    mapping: dict[str, str | None] | None = None,
) -> ImportPreview:
    """The file's encoding, delimiter, headers, suggested mapping and first rows."""
    require(actor, ENTITY, "write")
    return preview_import(data, ENTITY, session, encoding=encoding, mapping=mapping)


# ----------------------------------------------------------------------------- export


def _all_deals(
    session: Session, actor: Actor, filters: Sequence[str], q: str | None, page_size: int = 500
) -> Iterator[DealRead]:
    cursor: str | None = None
    while True:
        page = service.list_deals(
            session, actor, filters=filters, q=q, sort="id", cursor=cursor, limit=page_size
        )
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def contact_cells(session: Session, actor: Actor, ids: set[int]) -> dict[int, str]:
    """How an export names contacts: by primary email, else by name."""
    if not ids:
        return {}
    found = contacts.list_contacts(
        session, actor, filters=[f"id:in:{','.join(map(str, sorted(ids)))}"], limit=len(ids)
    ).items
    return {c.id: c.primary_email or c.full_name for c in found}


def deals_csv(
    session: Session,
    actor: Actor,
    *,
    filters: Sequence[str] = (),
    q: str | None = None,
    bom: bool = True,
    chunk_rows: int = 500,
    counted: list[int] | None = None,
) -> Iterator[str]:
    """The CSV text of every deal the filters select (those of the deal list), in chunks.

    Filters are checked before the first chunk, so a bad one raises here, not mid-stream.
    """
    require(actor, ENTITY, "read")
    custom = list(fields_by_key(session, ENTITY).values())
    deals = _all_deals(session, actor, filters, q)
    first = next(deals, None)
    return _chunks(session, actor, first, deals, custom, bom, chunk_rows, counted)


def _chunks(
    session: Session,
    actor: Actor,
    first: DealRead | None,
    rest: Iterator[DealRead],
    custom: list[CustomFieldRead],
    bom: bool,
    chunk_rows: int,
    counted: list[int] | None,
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if bom:
        buffer.write("\ufeff")
    writer.writerow([*EXPORT_COLUMNS, *(f"cf.{f.key}" for f in custom)])
    owners: dict[int, str] = {}
    reasons: dict[int, str] = {}
    pending: list[DealRead] = [first] if first is not None else []
    total = 0

    def flush() -> str:
        wanted = {d.owner_id for d in pending if d.owner_id is not None} - owners.keys()
        owners.update({u.id: u.email for u in auth_service.users_by_id(session, wanted).values()})
        reason_ids = {d.lost_reason_id for d in pending if d.lost_reason_id} - reasons.keys()
        reasons.update(service.lost_reason_names(session, reason_ids))
        people = contact_cells(
            session, actor, {link.contact_id for d in pending for link in d.contacts}
        )
        for d in pending:
            values: list[Any] = [
                d.id,
                d.external_id,
                d.name,
                d.amount,
                d.currency,
                d.pipeline_name,
                d.stage_name,
                d.status,
                owners.get(d.owner_id) if d.owner_id is not None else None,
                d.company.name if d.company else None,
                [people[link.contact_id] for link in d.contacts if link.contact_id in people],
                [
                    f"{people[link.contact_id]}={link.role}"
                    for link in d.contacts
                    if link.role and link.contact_id in people
                ],
                d.expected_close_date.isoformat() if d.expected_close_date else None,
                d.closed_at.isoformat() if d.closed_at else None,
                d.created_at.isoformat(),
                d.probability,
                d.forecast_category,
                d.next_step or None,
                d.next_step_due.isoformat() if d.next_step_due else None,
                reasons.get(d.lost_reason_id) if d.lost_reason_id else None,
                d.close_note or None,
                d.source,
                d.tags,
                d.updated_at.isoformat(),
            ]
            values += [d.custom.get(f.key) for f in custom]
            writer.writerow(csv_row(values))
        pending.clear()
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    for deal in rest:
        pending.append(deal)
        if len(pending) >= chunk_rows:
            total += len(pending)
            yield flush()
    total += len(pending)
    yield flush()
    if counted is not None:
        counted.append(total)


def export_deals_csv(
    session: Session,
    actor: Actor,
    *,
    filters: Sequence[str] = (),
    q: str | None = None,
    out: TextIO,
    bom: bool = False,
) -> int:
    """Write the deals the filters select to ``out`` as CSV; returns how many rows."""
    counted: list[int] = []
    for chunk in deals_csv(session, actor, filters=filters, q=q, bom=bom, counted=counted):
        out.write(chunk)
    return counted[0]


__all__ = [
    "EXPORT_COLUMNS",
    "contact_cells",
    "date_deal",
    "deals_csv",
    "export_deals_csv",
    "first_stage",
    "forecast_category",
    "import_deals",
    "preview_deals_import",
]
