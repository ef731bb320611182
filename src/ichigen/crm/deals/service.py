"""Deals: pipelines and their stages, lost reasons, deals, moves and stage history, the board.

Every deal write (create, update, move, contacts) goes through ``_save_deal``: it checks the
input against the pipeline's rules (a stage's required fields, a lost reason to lose, the
currency's scale, an active owner, a close date after creation), writes the row, its
contacts, a stage-history row when the stage changes, the board's running totals and the
audit entry, in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from babel.numbers import get_currency_precision, list_currencies
from sqlalchemy import Row, Select, delete, func, insert, select, update
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import require, require_owner_access
from ichigen.core.audit import Actor, diff, record_change
from ichigen.core.bulk import add_to_counters
from ichigen.core.clock import utcnow
from ichigen.core.custom_fields import (
    CustomFieldRead,
    fields_by_key,
    present_custom_values,
    validate_custom_values,
)
from ichigen.core.db import session_settings
from ichigen.core.errors import (
    BadRequest,
    Conflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.core.query import (
    apply_sort_and_cursor,
    custom_condition,
    decode_cursor,
    encode_cursor,
    field_condition,
    parse_filters,
    parse_sort,
)
from ichigen.core.schemas import Page
from ichigen.core.text import fold
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts import service as contacts
from ichigen.crm.deals import forecasts, queries
from ichigen.crm.deals.models import (
    Deal,
    DealContact,
    DealStageChange,
    DealStageTotal,
    LostReason,
    Pipeline,
    Stage,
)
from ichigen.crm.deals.schemas import (
    Board,
    BoardCard,
    BoardColumn,
    DealContactDetail,
    DealContactIn,
    DealContactRead,
    DealCreate,
    DealFields,
    DealMove,
    DealRead,
    DealUpdate,
    LostReasonCreate,
    LostReasonRead,
    LostReasonUpdate,
    MoneyTotal,
    PipelineCreate,
    PipelineRead,
    PipelineUpdate,
    StageChangeRead,
    StageCreate,
    StageFields,
    StageIn,
    StageRead,
    StageUpdate,
)

ENTITY = "deals"
PIPELINES = "pipelines"
LOST_REASONS = "lost_reasons"

#: The stages a pipeline gets when it is created without any.
DEFAULT_STAGES: tuple[StageIn, ...] = (
    StageIn(name="Qualified", probability=10, rotting_days=30),
    StageIn(name="Meeting", probability=25, rotting_days=21),
    StageIn(name="Proposal", probability=50, required_fields=["amount"], rotting_days=21),
    StageIn(
        name="Negotiation",
        probability=80,
        required_fields=["amount", "expected_close_date"],
        rotting_days=14,
    ),
    StageIn(name="Won", probability=100, kind="won", required_fields=["amount"]),
    StageIn(name="Lost", probability=0, kind="lost", required_fields=["lost_reason_id"]),
)
DEFAULT_PIPELINE_NAME = "Sales pipeline"

#: What people read for each field a stage can require (also in error messages).
FIELD_NAMES: dict[str, str] = {
    "amount": "amount",
    "expected_close_date": "expected close date",
    "company_id": "company",
    "contacts": "at least one contact",
    "owner_id": "owner",
    "next_step": "next step",
    "close_note": "close note",
    "lost_reason_id": "lost reason",
}


# ----------------------------------------------------------------------------- money


@lru_cache(maxsize=1)
def known_currencies() -> frozenset[str]:
    """ISO 4217 codes the service accepts (CLDR's list, as Babel ships it)."""
    return frozenset(list_currencies())


@lru_cache(maxsize=512)
def currency_scale(currency: str) -> int:
    """Decimal places of a currency's amounts: JPY 0, USD 2, KWD 3."""
    return int(get_currency_precision(currency))


@lru_cache(maxsize=512)
def _quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-currency_scale(currency))


def present_amount(amount: Decimal | None, currency: str) -> Decimal | None:
    """An amount with exactly its currency's decimal places (1000 JPY, 12.50 USD)."""
    if amount is None:
        return None
    return amount.quantize(_quantum(currency)) if currency in known_currencies() else amount


def minor_units(amount: Decimal | None, currency: str) -> int:
    """An amount in the currency's minor units (yen, cents), for exact running totals."""
    if amount is None:
        return 0
    return int((amount * (10 ** currency_scale(currency))).to_integral_value())


def from_minor_units(minor: int, currency: str) -> Decimal:
    return (Decimal(minor).scaleb(-currency_scale(currency))).quantize(_quantum(currency))


def derived_forecast_category(status: str, probability: int) -> str:
    """The forecast category of a deal nobody categorised: won deals are committed, lost
    ones omitted, and open ones by probability, with the thresholds the forecast's SQL uses
    (``forecasts.COMMIT_FROM``, ``forecasts.BEST_CASE_FROM``)."""
    if status == "lost":
        return "omitted"
    if status == "won" or probability >= forecasts.COMMIT_FROM:
        return "commit"
    if probability >= forecasts.BEST_CASE_FROM:
        return "best_case"
    return "pipeline"


# ----------------------------------------------------------------------------- pipelines


def _stage_read(row: Stage | Row[Any]) -> StageRead:
    return StageRead(
        id=row.id,
        pipeline_id=row.pipeline_id,
        name=row.name,
        position=row.position,
        probability=row.probability,
        kind=row.kind,
        required_fields=list(row.required_fields or []),
        rotting_days=row.rotting_days,
        version=row.version,
    )


def _stage_rows(session: Session, pipeline_ids: Iterable[int]) -> dict[int, list[Row[Any]]]:
    found: dict[int, list[Row[Any]]] = {}
    ids = list(set(pipeline_ids))
    if ids:
        for row in session.execute(queries.STAGES_OF, {"ids": ids}):
            found.setdefault(row.pipeline_id, []).append(row)
    return found


def _pipeline_read(row: Pipeline | Row[Any], stages: Sequence[Stage | Row[Any]]) -> PipelineRead:
    return PipelineRead(
        id=row.id,
        name=row.name,
        position=row.position,
        is_default=row.is_default,
        archived=row.archived,
        stages=[_stage_read(s) for s in stages],
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _pipeline_row(session: Session, pipeline_id: int) -> Pipeline:
    row = session.get(Pipeline, pipeline_id)
    if row is None:
        raise NotFound(f"Pipeline {pipeline_id} does not exist.")
    return row


def _stages_of(session: Session, pipeline_id: int) -> list[Stage]:
    return list(
        session.scalars(
            select(Stage).where(Stage.pipeline_id == pipeline_id).order_by(Stage.position, Stage.id)
        )
    )


def _pipeline_snapshot(row: Pipeline, stages: Sequence[Stage]) -> dict[str, Any]:
    return {
        "name": row.name,
        "position": row.position,
        "is_default": row.is_default,
        "archived": row.archived,
        "stages": [
            {
                "id": s.id,
                "name": s.name,
                "probability": s.probability,
                "kind": s.kind,
                "required_fields": list(s.required_fields or []),
                "rotting_days": s.rotting_days,
            }
            for s in stages
        ],
    }


def _check_stage_set(
    stages: Sequence[StageIn | Stage], loc: tuple[str | int, ...] = ("stages",)
) -> list[FieldError]:
    """A pipeline needs an open, a won and a lost stage; names unique; won 100 %, lost 0 %."""
    errors: list[FieldError] = []
    seen: dict[str, int] = {}
    for index, stage in enumerate(stages):
        key = fold(stage.name)
        if key in seen:
            errors.append(FieldError((*loc, index, "name"), "another stage has this name"))
        seen[key] = index
        if stage.kind == "won" and stage.probability != 100:
            errors.append(FieldError((*loc, index, "probability"), "a won stage is 100 %"))
        if stage.kind == "lost" and stage.probability != 0:
            errors.append(FieldError((*loc, index, "probability"), "a lost stage is 0 %"))
    kinds = {stage.kind for stage in stages}
    for kind in ("open", "won", "lost"):
        if kind not in kinds:
            errors.append(FieldError(loc, f"a pipeline needs at least one {kind} stage"))
    return errors


def _check_pipeline_name(session: Session, name: str, own_id: int | None) -> None:
    other = session.scalar(select(Pipeline.id).where(Pipeline.name == name))
    if other is not None and other != own_id:
        raise Conflict(
            f"A pipeline named {name!r} already exists.", [FieldError(("name",), "already in use")]
        )


def _make_default(session: Session, pipeline_id: int) -> None:
    session.execute(
        update(Pipeline)
        .where(Pipeline.id != pipeline_id, Pipeline.is_default.is_(True))
        .values(is_default=False)
    )


def list_pipelines(
    session: Session, actor: Actor, *, include_archived: bool = False
) -> list[PipelineRead]:
    """Pipelines in display order (the default first among equals), each with its stages."""
    require(actor, PIPELINES, "read")
    stmt = select(*queries.PIPELINES.c).order_by(
        queries.PIPELINES.c.position, queries.PIPELINES.c.id
    )
    if not include_archived:
        stmt = stmt.where(queries.PIPELINES.c.archived.is_(False))
    rows = list(session.execute(stmt))
    stages = _stage_rows(session, [r.id for r in rows])
    return [_pipeline_read(r, stages.get(r.id, [])) for r in rows]


def get_pipeline(session: Session, pipeline_id: int, actor: Actor) -> PipelineRead:
    """One pipeline with its stages in order."""
    require(actor, PIPELINES, "read")
    rows = session.execute(queries.PIPELINE_AND_STAGES, {"pipeline_id": pipeline_id}).all()
    if not rows:
        raise NotFound(f"Pipeline {pipeline_id} does not exist.")
    first = rows[0]
    return PipelineRead(
        id=first.id,
        name=first.name,
        position=first.position,
        is_default=first.is_default,
        archived=first.archived,
        stages=[
            StageRead(
                id=r.stage_id,
                pipeline_id=r.stage_pipeline_id,
                name=r.stage_name,
                position=r.stage_position,
                probability=r.stage_probability,
                kind=r.stage_kind,
                required_fields=list(r.stage_required_fields or []),
                rotting_days=r.stage_rotting_days,
                version=r.stage_version,
            )
            for r in rows
        ],
        version=first.version,
        created_at=first.created_at,
        updated_at=first.updated_at,
    )


def default_pipeline(session: Session, actor: Actor) -> PipelineRead | None:
    """The pipeline new deals go to: the one marked default, else the first one in use."""
    require(actor, PIPELINES, "read")
    pipeline_id = _default_pipeline_id(session)
    return get_pipeline(session, pipeline_id, actor) if pipeline_id is not None else None


def _default_pipeline_id(session: Session) -> int | None:
    return session.scalar(
        select(Pipeline.id)
        .where(Pipeline.archived.is_(False))
        .order_by(Pipeline.is_default.desc(), Pipeline.position, Pipeline.id)
        .limit(1)
    )


def _new_stage(pipeline_id: int, data: StageFields, position: int, now: datetime) -> Stage:
    return Stage(
        pipeline_id=pipeline_id,
        name=data.name,
        position=position,
        probability=data.probability,
        kind=data.kind,
        required_fields=list(dict.fromkeys(data.required_fields)),
        rotting_days=data.rotting_days,
        version=1,
        created_at=now,
        updated_at=now,
    )


def create_pipeline(session: Session, data: PipelineCreate, actor: Actor) -> PipelineRead:
    """Create a pipeline with its stages (the standard six when none are given); the first
    pipeline, or one created as default, becomes the default."""
    require(actor, PIPELINES, "write")
    stages_in = list(data.stages) if data.stages is not None else list(DEFAULT_STAGES)
    errors = _check_stage_set(stages_in)
    errors += [
        FieldError(("stages", i, "id"), "a new pipeline's stages have no ids")
        for i, s in enumerate(stages_in)
        if s.id is not None
    ]
    if errors:
        raise ValidationFailed("The pipeline's stages are not valid.", errors)
    _check_pipeline_name(session, data.name, None)
    now = utcnow()
    first = session.scalar(select(func.count()).select_from(Pipeline)) == 0
    row = Pipeline(
        name=data.name,
        position=data.position,
        is_default=data.is_default or first,
        archived=False,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    if row.is_default:
        _make_default(session, row.id)
    stages = [_new_stage(row.id, s, i, now) for i, s in enumerate(stages_in)]
    session.add_all(stages)
    session.flush()
    record_change(
        session, actor, PIPELINES, row.id, "create", diff({}, _pipeline_snapshot(row, stages))
    )
    session.commit()
    return _pipeline_read(row, stages)


def ensure_default_pipeline(session: Session, actor: Actor) -> PipelineRead:
    """The default pipeline, creating the standard one first when there is no pipeline."""
    pipeline_id = _default_pipeline_id(session)
    if pipeline_id is not None:
        return get_pipeline(session, pipeline_id, actor)
    return create_pipeline(session, PipelineCreate(name=DEFAULT_PIPELINE_NAME), actor)


def _has_deals(
    session: Session, *, pipeline_id: int | None = None, stage_id: int | None = None
) -> bool:
    stmt = select(Deal.id)
    if pipeline_id is not None:
        stmt = stmt.where(Deal.pipeline_id == pipeline_id)
    if stage_id is not None:
        stmt = stmt.where(Deal.stage_id == stage_id)
    return session.scalar(stmt.limit(1)) is not None


def _stage_in_history(session: Session, stage_id: int) -> bool:
    found = session.scalar(
        select(DealStageChange.id).where(DealStageChange.to_stage_id == stage_id).limit(1)
    )
    return found is not None


def _check_stage_removable(session: Session, stage: Stage, loc: tuple[str | int, ...]) -> None:
    if _has_deals(session, stage_id=stage.id):
        raise Conflict(
            f"The stage '{stage.name}' still has deals; move them to another stage first.",
            [FieldError(loc, "the stage has deals")],
        )
    if _stage_in_history(session, stage.id):
        raise Conflict(
            f"Deals have been in the stage '{stage.name}', and their history refers to it; "
            "rename the stage instead.",
            [FieldError(loc, "the stage is in deals' history")],
        )


def _check_kind_change(
    session: Session, stage: Stage, kind: str, loc: tuple[str | int, ...]
) -> None:
    if stage.kind != kind and _has_deals(session, stage_id=stage.id):
        raise Conflict(
            f"The stage '{stage.name}' has deals, so it stays {stage.kind}; move them first.",
            [FieldError(loc, "cannot change the kind of a stage with deals")],
        )


def _finish_pipeline_write(
    session: Session, actor: Actor, row: Pipeline, before: dict[str, Any]
) -> PipelineRead:
    session.flush()
    stages = _stages_of(session, row.id)
    errors = _check_stage_set(stages)
    if errors:
        session.rollback()
        raise ValidationFailed("The pipeline's stages are not valid.", errors)
    after = _pipeline_snapshot(row, stages)
    delta = diff(before, after)
    if delta:
        row.version += 1
        row.updated_at = utcnow()
        record_change(session, actor, PIPELINES, row.id, "update", delta)
    session.commit()
    return _pipeline_read(row, stages)


def _check_version(row: Pipeline | Stage | Deal, if_version: int | None, what: str) -> None:
    if if_version is not None and if_version != row.version:
        raise PreconditionFailed(
            f"{what} was changed by someone else (now version {row.version}); "
            "reload it and try again."
        )


def update_pipeline(
    session: Session,
    pipeline_id: int,
    data: PipelineUpdate,
    actor: Actor,
    *,
    if_version: int | None = None,
) -> PipelineRead:
    """Rename, reorder, archive or make default; ``stages`` replaces the stage list (stages
    left out are removed, which only stages without deals or history may be)."""
    require(actor, PIPELINES, "write")
    row = _pipeline_row(session, pipeline_id)
    _check_version(row, if_version, f"Pipeline {pipeline_id}")
    stages = _stages_of(session, row.id)
    before = _pipeline_snapshot(row, stages)
    given = data.model_dump(exclude_unset=True)
    for name in ("name", "is_default", "archived", "position"):
        if name in given and given[name] is None:
            raise ValidationFailed(
                f"{name} cannot be null.", [FieldError((name,), "cannot be null")]
            )
    if "name" in given:
        _check_pipeline_name(session, given["name"], row.id)
        row.name = given["name"]
    if "position" in given:
        row.position = given["position"]
    if given.get("archived") is True and (given.get("is_default") or row.is_default):
        raise ValidationFailed(
            "The default pipeline cannot be archived; make another one the default first.",
            [FieldError(("archived",), "the default pipeline cannot be archived")],
        )
    if "archived" in given:
        row.archived = given["archived"]
    if given.get("is_default") is True:
        row.is_default = True
        _make_default(session, row.id)
    elif given.get("is_default") is False and row.is_default:
        raise ValidationFailed(
            "Make another pipeline the default instead.",
            [FieldError(("is_default",), "one pipeline is always the default")],
        )
    if data.stages is not None:
        _replace_stages(session, row, stages, data.stages)
    return _finish_pipeline_write(session, actor, row, before)


def _replace_stages(
    session: Session, row: Pipeline, current: list[Stage], wanted: list[StageIn]
) -> None:
    errors = _check_stage_set(wanted)
    by_id = {s.id: s for s in current}
    kept: set[int] = set()
    for index, item in enumerate(wanted):
        if item.id is not None and item.id not in by_id:
            errors.append(FieldError(("stages", index, "id"), "not a stage of this pipeline"))
        elif item.id is not None and item.id in kept:
            errors.append(FieldError(("stages", index, "id"), "listed twice"))
        elif item.id is not None:
            kept.add(item.id)
    if errors:
        raise ValidationFailed("The pipeline's stages are not valid.", errors)
    for stage in current:
        if stage.id not in kept:
            _check_stage_removable(session, stage, ("stages",))
    for index, item in enumerate(wanted):
        if item.id is not None:
            _check_kind_change(session, by_id[item.id], item.kind, ("stages", index, "kind"))
    now = utcnow()
    for stage in current:
        if stage.id not in kept:
            session.delete(stage)
    session.flush()
    # Names are unique per pipeline: renamed stages pass through a name of their own first,
    # so that swapping two names never meets the unique constraint half-way.
    for item in wanted:
        if item.id is not None and by_id[item.id].name != item.name:
            by_id[item.id].name = f"~{item.id}~"
    session.flush()
    for index, item in enumerate(wanted):
        if item.id is None:
            continue
        stage = by_id[item.id]
        values = {
            "name": item.name,
            "position": index,
            "probability": item.probability,
            "kind": item.kind,
            "required_fields": list(dict.fromkeys(item.required_fields)),
            "rotting_days": item.rotting_days,
        }
        if any(getattr(stage, k) != v for k, v in values.items()):
            for key, value in values.items():
                setattr(stage, key, value)
            stage.version += 1
            stage.updated_at = now
    session.flush()
    for index, item in enumerate(wanted):
        if item.id is None:
            session.add(_new_stage(row.id, item, index, now))


def delete_pipeline(
    session: Session, pipeline_id: int, actor: Actor, *, if_version: int | None = None
) -> None:
    """Delete a pipeline without deals (archive one that has them)."""
    require(actor, PIPELINES, "write")
    row = _pipeline_row(session, pipeline_id)
    _check_version(row, if_version, f"Pipeline {pipeline_id}")
    stages = _stages_of(session, row.id)
    in_history = session.scalar(
        select(DealStageChange.id)
        .where(
            (DealStageChange.pipeline_id == pipeline_id)
            | DealStageChange.to_stage_id.in_([s.id for s in stages])
        )
        .limit(1)
    )
    if _has_deals(session, pipeline_id=pipeline_id) or in_history is not None:
        raise Conflict(
            f"The pipeline '{row.name}' has or had deals; archive it instead.",
            [FieldError(("pipeline_id",), "the pipeline has deals")],
        )
    record_change(
        session, actor, PIPELINES, row.id, "delete", diff(_pipeline_snapshot(row, stages), {})
    )
    was_default = row.is_default
    session.delete(row)
    session.flush()
    if was_default:
        successor = _default_pipeline_id(session)
        if successor is not None:
            session.execute(
                update(Pipeline).where(Pipeline.id == successor).values(is_default=True)
            )
    session.commit()


def add_stage(session: Session, pipeline_id: int, data: StageCreate, actor: Actor) -> PipelineRead:
    """Add a stage at ``position``, or after the last open stage (before won and lost)."""
    require(actor, PIPELINES, "write")
    row = _pipeline_row(session, pipeline_id)
    stages = _stages_of(session, row.id)
    before = _pipeline_snapshot(row, stages)
    if any(fold(s.name) == fold(data.name) for s in stages):
        raise Conflict(
            f"The pipeline already has a stage named {data.name!r}.",
            [FieldError(("name",), "another stage has this name")],
        )
    if data.kind == "won" and data.probability != 100:
        raise ValidationFailed(
            "A won stage is 100 %.", [FieldError(("probability",), "a won stage is 100 %")]
        )
    if data.kind == "lost" and data.probability != 0:
        raise ValidationFailed(
            "A lost stage is 0 %.", [FieldError(("probability",), "a lost stage is 0 %")]
        )
    if data.position is not None:
        position = min(data.position, len(stages))
    else:
        opens = [i for i, s in enumerate(stages) if s.kind == "open"]
        position = (opens[-1] + 1) if opens and data.kind == "open" else len(stages)
    now = utcnow()
    ordered: list[Stage | None] = [*stages]
    ordered.insert(position, None)
    new = _new_stage(row.id, data, position, now)
    session.add(new)
    for index, stage in enumerate(ordered):
        if stage is not None and stage.position != index:
            stage.position = index
    return _finish_pipeline_write(session, actor, row, before)


def _stage_of(session: Session, pipeline_id: int, stage_id: int) -> Stage:
    stage = session.get(Stage, stage_id)
    if stage is None or stage.pipeline_id != pipeline_id:
        raise NotFound(f"Pipeline {pipeline_id} has no stage {stage_id}.")
    return stage


def update_stage(
    session: Session,
    pipeline_id: int,
    stage_id: int,
    data: StageUpdate,
    actor: Actor,
    *,
    if_version: int | None = None,
) -> PipelineRead:
    """Change a stage's name, probability, kind (if it has no deals), required fields or
    rotting days."""
    require(actor, PIPELINES, "write")
    row = _pipeline_row(session, pipeline_id)
    stage = _stage_of(session, pipeline_id, stage_id)
    if if_version is not None and stage.version != if_version:
        raise PreconditionFailed(
            f"Stage {stage_id} was changed by someone else (now version {stage.version}); "
            "reload it and try again."
        )
    stages = _stages_of(session, row.id)
    before = _pipeline_snapshot(row, stages)
    given = data.model_dump(exclude_unset=True)
    for name in ("name", "probability", "kind", "required_fields"):
        if name in given and given[name] is None:
            raise ValidationFailed(
                f"{name} cannot be null.", [FieldError((name,), "cannot be null")]
            )
    if "name" in given and any(
        fold(s.name) == fold(given["name"]) and s.id != stage.id for s in stages
    ):
        raise Conflict(
            f"The pipeline already has a stage named {given['name']!r}.",
            [FieldError(("name",), "another stage has this name")],
        )
    if "kind" in given:
        _check_kind_change(session, stage, given["kind"], ("kind",))
    changed = False
    for name, value in given.items():
        if name == "required_fields":
            value = list(dict.fromkeys(value))
        if getattr(stage, name) != value:
            setattr(stage, name, value)
            changed = True
    if changed:
        stage.version += 1
        stage.updated_at = utcnow()
    return _finish_pipeline_write(session, actor, row, before)


def delete_stage(session: Session, pipeline_id: int, stage_id: int, actor: Actor) -> PipelineRead:
    """Remove a stage that has no deals and no history; the others close up."""
    require(actor, PIPELINES, "write")
    row = _pipeline_row(session, pipeline_id)
    stage = _stage_of(session, pipeline_id, stage_id)
    stages = _stages_of(session, row.id)
    before = _pipeline_snapshot(row, stages)
    _check_stage_removable(session, stage, ("stage_id",))
    remaining = [s for s in stages if s.id != stage.id]
    errors = _check_stage_set(remaining)
    if errors:
        raise ValidationFailed(
            f"Without '{stage.name}' the pipeline would lack a stage it needs.", errors
        )
    session.delete(stage)
    for index, other in enumerate(remaining):
        if other.position != index:
            other.position = index
    return _finish_pipeline_write(session, actor, row, before)


def reorder_stages(
    session: Session, pipeline_id: int, stage_ids: Sequence[int], actor: Actor
) -> PipelineRead:
    """Put the pipeline's stages in this order (every stage, each once)."""
    require(actor, PIPELINES, "write")
    row = _pipeline_row(session, pipeline_id)
    stages = _stages_of(session, row.id)
    if sorted(stage_ids) != sorted(s.id for s in stages):
        raise ValidationFailed(
            "List every stage of the pipeline once.",
            [FieldError(("stage_ids",), "must hold each stage of the pipeline once")],
        )
    before = _pipeline_snapshot(row, stages)
    by_id = {s.id: s for s in stages}
    for index, stage_id in enumerate(stage_ids):
        if by_id[stage_id].position != index:
            by_id[stage_id].position = index
    return _finish_pipeline_write(session, actor, row, before)


def move_stage(
    session: Session, pipeline_id: int, stage_id: int, offset: int, actor: Actor
) -> PipelineRead:
    """Move a stage up (``-1``) or down (``1``) the order."""
    stages = [s.id for s in _stages_of(session, pipeline_id)]
    if stage_id not in stages:
        raise NotFound(f"Pipeline {pipeline_id} has no stage {stage_id}.")
    index = stages.index(stage_id)
    target = max(0, min(len(stages) - 1, index + offset))
    stages.insert(target, stages.pop(index))
    return reorder_stages(session, pipeline_id, stages, actor)


# ----------------------------------------------------------------------------- lost reasons


def _reason_read(row: LostReason) -> LostReasonRead:
    return LostReasonRead(id=row.id, name=row.name, position=row.position, active=row.active)


def list_lost_reasons(
    session: Session, actor: Actor, *, include_inactive: bool = False
) -> list[LostReasonRead]:
    """Lost reasons in display order."""
    require(actor, PIPELINES, "read")
    stmt = select(LostReason).order_by(LostReason.position, LostReason.name, LostReason.id)
    if not include_inactive:
        stmt = stmt.where(LostReason.active.is_(True))
    return [_reason_read(r) for r in session.scalars(stmt)]


def _check_reason_name(session: Session, name: str, own_id: int | None) -> None:
    other = session.scalar(select(LostReason.id).where(LostReason.name == name))
    if other is not None and other != own_id:
        raise Conflict(
            f"A lost reason {name!r} already exists.", [FieldError(("name",), "already in use")]
        )


def create_lost_reason(session: Session, data: LostReasonCreate, actor: Actor) -> LostReasonRead:
    """Add a reason deals can be lost for."""
    require(actor, PIPELINES, "write")
    _check_reason_name(session, data.name, None)
    row = LostReason(name=data.name, position=data.position, active=True, created_at=utcnow())
    session.add(row)
    session.flush()
    record_change(
        session,
        actor,
        LOST_REASONS,
        row.id,
        "create",
        diff({}, {"name": row.name, "position": row.position, "active": True}),
    )
    session.commit()
    return _reason_read(row)


def update_lost_reason(
    session: Session, reason_id: int, data: LostReasonUpdate, actor: Actor
) -> LostReasonRead:
    """Rename, reorder, or (de)activate a lost reason; inactive ones stay on old deals."""
    require(actor, PIPELINES, "write")
    row = session.get(LostReason, reason_id)
    if row is None:
        raise NotFound(f"Lost reason {reason_id} does not exist.")
    before = {"name": row.name, "position": row.position, "active": row.active}
    given = {k: v for k, v in data.model_dump(exclude_unset=True).items() if v is not None}
    if "name" in given:
        _check_reason_name(session, given["name"], row.id)
    for name, value in given.items():
        setattr(row, name, value)
    delta = diff(before, {"name": row.name, "position": row.position, "active": row.active})
    if delta:
        record_change(session, actor, LOST_REASONS, row.id, "update", delta)
    session.commit()
    return _reason_read(row)


def delete_lost_reason(session: Session, reason_id: int, actor: Actor) -> None:
    """Delete a lost reason no deal was lost for (deactivate the others)."""
    require(actor, PIPELINES, "write")
    row = session.get(LostReason, reason_id)
    if row is None:
        raise NotFound(f"Lost reason {reason_id} does not exist.")
    used = session.scalar(select(Deal.id).where(Deal.lost_reason_id == reason_id).limit(1))
    if used is not None:
        raise Conflict(
            f"Deals were lost for '{row.name}'; deactivate it instead.",
            [FieldError(("active",), "the reason is in use")],
        )
    record_change(
        session,
        actor,
        LOST_REASONS,
        row.id,
        "delete",
        diff({"name": row.name, "position": row.position, "active": row.active}, {}),
    )
    session.delete(row)
    session.commit()


def lost_reason_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """Lost reasons' names by id (inactive ones too), for showing deals."""
    wanted = set(ids)
    if not wanted:
        return {}
    rows = session.execute(select(LostReason.id, LostReason.name).where(LostReason.id.in_(wanted)))
    return {reason_id: name for reason_id, name in rows}


# ----------------------------------------------------------------------------- reading deals


def _stage_names(session: Session, stage_ids: Iterable[int]) -> dict[int, Any]:
    ids = list(set(stage_ids))
    if not ids:
        return {}
    return {r.id: r for r in session.execute(queries.STAGE_NAMES, {"ids": ids})}


def _contacts_of(session: Session, deal_ids: Iterable[int]) -> dict[int, list[DealContactRead]]:
    found: dict[int, list[DealContactRead]] = {}
    ids = list(set(deal_ids))
    if ids:
        for deal_id, contact_id, role in session.execute(queries.CONTACTS_OF, {"ids": ids}):
            found.setdefault(deal_id, []).append(DealContactRead(contact_id=contact_id, role=role))
    return found


def _read_many(
    session: Session, rows: Sequence[Row[Any]], custom_defs: dict[str, CustomFieldRead]
) -> list[DealRead]:
    """Deals as the API shows them, from ``deals`` table rows."""
    stored = [r._mapping for r in rows]
    stages = _stage_names(session, {m["stage_id"] for m in stored})
    deal_contacts = _contacts_of(session, {m["id"] for m in stored})
    refs = companies.company_refs(
        session, {m["company_id"] for m in stored if m["company_id"] is not None}
    )
    out = []
    for m in stored:
        stage = stages[m["stage_id"]]
        probability = (
            m["probability_override"]
            if m["probability_override"] is not None
            else stage.probability
        )
        category = m["forecast_category"]
        if category is None or m["status"] != "open":
            category = derived_forecast_category(m["status"], probability)
        out.append(
            DealRead(
                id=m["id"],
                external_id=m["external_id"],
                name=m["name"],
                amount=present_amount(m["amount"], m["currency"]),
                currency=m["currency"],
                pipeline_id=m["pipeline_id"],
                pipeline_name=stage.pipeline_name,
                stage_id=m["stage_id"],
                stage_name=stage.name,
                status=m["status"],
                board_position=m["board_position"],
                owner_id=m["owner_id"],
                company_id=m["company_id"],
                company=refs.get(m["company_id"]) if m["company_id"] is not None else None,
                contacts=deal_contacts.get(m["id"], []),
                expected_close_date=m["expected_close_date"],
                closed_at=m["closed_at"],
                lost_reason_id=m["lost_reason_id"],
                close_note=m["close_note"],
                probability=probability,
                probability_override=m["probability_override"],
                forecast_category=category,
                forecast_category_override=m["forecast_category"],
                next_step=m["next_step"],
                next_step_due=m["next_step_due"],
                stage_entered_at=m["stage_entered_at"],
                source=m["source"],
                tags=list(m["tags"] or []),
                custom=present_custom_values(custom_defs, m["custom"] or {}),
                version=m["version"],
                created_at=m["created_at"],
                updated_at=m["updated_at"],
            )
        )
    return out


def get_deal(session: Session, deal_id: int, actor: Actor) -> DealRead:
    """One deal with its stage, company and contacts (with their roles)."""
    require(actor, ENTITY, "read")
    row = session.execute(queries.DEAL_BY_ID, {"deal_id": deal_id}).first()
    if row is None:
        raise NotFound(f"Deal {deal_id} does not exist.")
    return _read_many(session, [row], fields_by_key(session, ENTITY))[0]


def existing_deal_ids(session: Session, ids: Iterable[int]) -> set[int]:
    """Which of these deal ids exist."""
    wanted = set(ids)
    if not wanted:
        return set()
    return set(session.scalars(select(Deal.id).where(Deal.id.in_(wanted))))


def deal_ids_of_company(session: Session, company_id: int) -> list[int]:
    """The ids of a company's deals (for the company's timeline)."""
    return list(session.scalars(select(Deal.id).where(Deal.company_id == company_id)))


def deal_ids_of_contact(session: Session, contact_id: int) -> list[int]:
    """The ids of the deals a contact takes part in (for the contact's timeline)."""
    return list(
        session.scalars(select(DealContact.deal_id).where(DealContact.contact_id == contact_id))
    )


def deal_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """Deal names by id, for showing links to deals."""
    wanted = set(ids)
    if not wanted:
        return {}
    rows = session.execute(select(Deal.id, Deal.name).where(Deal.id.in_(wanted)))
    return {deal_id: name for deal_id, name in rows}


def deal_custom_fields(session: Session) -> list[CustomFieldRead]:
    return list(fields_by_key(session, ENTITY).values())


def deal_contacts(session: Session, deal_id: int, actor: Actor) -> list[DealContactDetail]:
    """A deal's contacts with their roles, names and emails."""
    deal = get_deal(session, deal_id, actor)
    return _contact_details(session, deal.contacts, actor)


def _contact_details(
    session: Session, links: Sequence[DealContactRead], actor: Actor
) -> list[DealContactDetail]:
    if not links:
        return []
    ids = ",".join(str(link.contact_id) for link in links)
    found = {
        c.id: c
        for c in contacts.list_contacts(
            session, actor, filters=[f"id:in:{ids}"], limit=len(links)
        ).items
    }
    details = []
    for link in links:
        contact = found.get(link.contact_id)
        if contact is None:
            continue
        details.append(
            DealContactDetail(
                contact_id=link.contact_id,
                role=link.role,
                name=contact.full_name,
                email=contact.primary_email,
                job_title=contact.job_title,
            )
        )
    return details


# ----------------------------------------------------------------------------- writing deals

#: Fields kept in the audit log (and compared to find what a write changed).
_AUDITED = (
    "external_id",
    "name",
    "amount",
    "currency",
    "pipeline_id",
    "stage_id",
    "status",
    "board_position",
    "owner_id",
    "company_id",
    "expected_close_date",
    "closed_at",
    "lost_reason_id",
    "close_note",
    "probability_override",
    "forecast_category",
    "next_step",
    "next_step_due",
    "source",
    "tags",
    "custom",
)
#: Fields a caller sets as they are (``probability`` lands in ``probability_override``).
_PLAIN = (
    "external_id",
    "name",
    "amount",
    "currency",
    "owner_id",
    "company_id",
    "expected_close_date",
    "lost_reason_id",
    "close_note",
    "forecast_category",
    "next_step",
    "next_step_due",
    "source",
    "tags",
)
_NOT_NULL = {"close_note": "", "next_step": "", "tags": []}


def _snapshot(row: Deal, links: Sequence[DealContactRead]) -> dict[str, Any]:
    snap = {name: getattr(row, name) for name in _AUDITED}
    snap["tags"] = list(row.tags or [])
    snap["custom"] = dict(row.custom or {})
    snap["contacts"] = [link.model_dump() for link in links]
    return snap


def _earliest_creation_day(created_at: datetime) -> date:
    """The day a deal was created on, in the time zone where that day began first (so a close
    date of "today" is never refused for a user west or east of UTC)."""
    return (created_at - timedelta(hours=12)).date()


def _is_empty(values: dict[str, Any], field: str) -> bool:
    value = values.get(field)
    return value is None or value == "" or value == []


@dataclass
class _Target:
    """Where a write puts the deal: its pipeline and stage."""

    pipeline: Pipeline
    stage: Stage
    entering: bool


def _first_stage(session: Session, pipeline_id: int) -> Stage | None:
    return session.scalar(
        select(Stage)
        .where(Stage.pipeline_id == pipeline_id)
        .order_by((Stage.kind != "open"), Stage.position, Stage.id)
        .limit(1)
    )


def _target(
    session: Session, row: Deal | None, given: dict[str, Any], errors: list[FieldError]
) -> _Target | None:
    """The pipeline and stage a write asks for, checked against each other."""
    pipeline_id = given.get("pipeline_id")
    stage_id = given.get("stage_id")
    for name in ("pipeline_id", "stage_id"):
        if name in given and given[name] is None and row is not None:
            errors.append(FieldError((name,), "cannot be empty"))
            return None
    pipeline: Pipeline | None = None
    if pipeline_id is not None:
        pipeline = session.get(Pipeline, pipeline_id)
        if pipeline is None:
            errors.append(FieldError(("pipeline_id",), "no such pipeline"))
            return None
    stage: Stage | None = None
    if stage_id is not None:
        stage = session.get(Stage, stage_id)
        if stage is None:
            errors.append(FieldError(("stage_id",), "no such stage"))
            return None
        if pipeline is not None and stage.pipeline_id != pipeline.id:
            errors.append(
                FieldError(("stage_id",), f"is a stage of another pipeline than {pipeline.name!r}")
            )
            return None
        if pipeline is None and row is not None and stage.pipeline_id != row.pipeline_id:
            errors.append(
                FieldError(
                    ("stage_id",),
                    "is a stage of another pipeline; give pipeline_id too to move the deal there",
                )
            )
            return None
        pipeline = session.get(Pipeline, stage.pipeline_id)
    elif pipeline is not None and (row is None or pipeline.id != row.pipeline_id):
        stage = _first_stage(session, pipeline.id)
    elif row is None:
        default_id = _default_pipeline_id(session)
        if default_id is None:
            errors.append(
                FieldError(("pipeline_id",), "there is no pipeline yet; create one first")
            )
            return None
        pipeline = session.get(Pipeline, default_id)
        assert pipeline is not None
        stage = _first_stage(session, default_id)
    else:
        pipeline = session.get(Pipeline, row.pipeline_id)
        stage = session.get(Stage, row.stage_id)
    assert pipeline is not None and stage is not None
    entering = row is None or stage.id != row.stage_id
    if entering and pipeline.archived:
        errors.append(FieldError(("pipeline_id",), "the pipeline is archived"))
        return None
    return _Target(pipeline, stage, entering)


def _owner_team(session: Session, owner_id: int | None) -> int | None:
    if owner_id is None:
        return None
    owner = auth_service.users_by_id(session, {owner_id}).get(owner_id)
    return owner.team_id if owner else None


def _check_references(
    session: Session,
    actor: Actor,
    before: dict[str, Any],
    after: dict[str, Any],
    errors: list[FieldError],
) -> None:
    """Owner, company, contacts and lost reason must exist (and be active) when they change."""
    owner_id = after.get("owner_id")
    if owner_id is not None and owner_id != before.get("owner_id"):
        owner = auth_service.users_by_id(session, {owner_id}).get(owner_id)
        if owner is None:
            errors.append(FieldError(("owner_id",), "no such user"))
        elif not owner.is_active:
            errors.append(FieldError(("owner_id",), "the owner is an inactive user"))
    company_id = after.get("company_id")
    if (
        company_id is not None
        and company_id != before.get("company_id")
        and company_id not in companies.existing_company_ids(session, [company_id])
    ):
        errors.append(FieldError(("company_id",), "no such company"))
    links = after["contacts"]
    if links != before.get("contacts"):
        wanted = [link["contact_id"] for link in links]
        found = contacts.existing_contact_ids(session, wanted) if wanted else set()
        seen: set[int] = set()
        for index, contact_id in enumerate(wanted):
            if contact_id in seen:
                errors.append(FieldError(("contacts", index, "contact_id"), "listed twice"))
            elif contact_id not in found:
                errors.append(FieldError(("contacts", index, "contact_id"), "no such contact"))
            seen.add(contact_id)
    reason_id = after.get("lost_reason_id")
    if reason_id is not None and reason_id != before.get("lost_reason_id"):
        reason = session.get(LostReason, reason_id)
        if reason is None:
            errors.append(FieldError(("lost_reason_id",), "no such lost reason"))
        elif not reason.active:
            errors.append(FieldError(("lost_reason_id",), "the lost reason is no longer in use"))


def _check_money(given: dict[str, Any], after: dict[str, Any], errors: list[FieldError]) -> None:
    currency = after["currency"]
    if currency not in known_currencies():
        errors.append(FieldError(("currency",), f"{currency} is not an ISO 4217 currency"))
        return
    amount = after.get("amount")
    if amount is not None:
        scale = currency_scale(currency)
        if amount != amount.quantize(_quantum(currency)):
            where = "amount" if "amount" in given or "currency" not in given else "currency"
            errors.append(
                FieldError(
                    (where,),
                    f"{currency} amounts have "
                    + ("no decimal places" if scale == 0 else f"at most {scale} decimal places"),
                    "currency_scale",
                )
            )
        else:
            after["amount"] = amount.quantize(_quantum(currency))


def _stage_rules(target: _Target, after: dict[str, Any], errors: list[FieldError]) -> list[str]:
    """The fields the target stage requires that are still empty (only when entering it)."""
    if not target.entering:
        return []
    required = list(target.stage.required_fields or [])
    if target.stage.kind == "lost" and "lost_reason_id" not in required:
        required.append("lost_reason_id")
    missing = [name for name in required if _is_empty(after, name)]
    for name in missing:
        errors.append(
            FieldError((name,), f"is required to enter the stage '{target.stage.name}'", "missing")
        )
    return missing


def _save_deal(
    session: Session,
    actor: Actor,
    deal_id: int | None,
    data: DealFields,
    *,
    board_position: float | None = None,
    if_version: int | None = None,
) -> int:
    """Create (``deal_id`` None) or change a deal; the one path of every deal write."""
    require(actor, ENTITY, "write")
    settings = session_settings(session)
    now = utcnow()
    given = data.model_dump(exclude_unset=True)
    given.pop("board_position", None)
    row: Deal | None = None
    before: dict[str, Any] = {}
    if deal_id is not None:
        # Locked on PostgreSQL, so that two moves of one deal keep the board totals right.
        row = session.get(Deal, deal_id, with_for_update=True)
        if row is None:
            raise NotFound(f"Deal {deal_id} does not exist.")
        require_owner_access(actor, ENTITY, row.owner_id, _owner_team(session, row.owner_id))
        _check_version(row, if_version, f"Deal {deal_id}")
        before = _snapshot(row, _contacts_of(session, [row.id]).get(row.id, []))
        after = dict(before)
    else:
        after = {name: None for name in _AUDITED}
        after.update(
            currency=settings.base_currency,
            owner_id=actor.user_id,
            close_note="",
            next_step="",
            tags=[],
            custom={},
            contacts=[],
            probability_override=None,
        )

    errors: list[FieldError] = []
    for name in _PLAIN:
        if name in given:
            value = given[name]
            if name == "tags" and value:
                value = list(dict.fromkeys(value))
            after[name] = _NOT_NULL.get(name) if value is None and name in _NOT_NULL else value
    if "name" in given and not after.get("name"):
        errors.append(FieldError(("name",), "cannot be empty"))
    if "currency" in given and given["currency"] is None:
        errors.append(FieldError(("currency",), "cannot be empty"))
        after["currency"] = before.get("currency") or settings.base_currency
    if "probability" in given:
        after["probability_override"] = given["probability"]
    if "contacts" in given:
        after["contacts"] = [
            {"contact_id": link["contact_id"], "role": link.get("role")}
            for link in given["contacts"] or []
        ]
    if after.get("external_id") and after["external_id"] != before.get("external_id"):
        other = session.scalar(select(Deal.id).where(Deal.external_id == after["external_id"]))
        if other is not None:
            raise Conflict(
                f"Deal {other} already has external id {after['external_id']!r}.",
                [FieldError(("external_id",), "already in use")],
            )

    target = _target(session, row, given, errors)
    _check_money(given, after, errors)
    _check_references(session, actor, before, after, errors)
    close = after.get("expected_close_date")
    if (
        close is not None
        and close != before.get("expected_close_date")
        and close < _earliest_creation_day(row.created_at if row else now)
    ):
        errors.append(
            FieldError(("expected_close_date",), "is before the day the deal was created")
        )
    custom_defs = fields_by_key(session, ENTITY)
    custom, custom_errors = validate_custom_values(
        custom_defs,
        given.get("custom"),
        row.custom if row else None,
        settings.default_phone_region,
        creating=row is None,
    )
    errors += custom_errors
    after["custom"] = custom
    missing = _stage_rules(target, after, errors) if target else []
    if errors:
        if missing and target and len(missing) == len(errors):
            names = ", ".join(FIELD_NAMES.get(m, m) for m in missing)
            raise ValidationFailed(
                f"The stage '{target.stage.name}' needs these fields first: {names}.", errors
            )
        raise ValidationFailed("The deal has invalid fields.", errors)
    assert target is not None

    # Where the deal now stands.
    stage = target.stage
    after["pipeline_id"] = target.pipeline.id
    after["stage_id"] = stage.id
    after["status"] = stage.kind
    if target.entering:
        if stage.kind == "open":
            after["closed_at"] = None
            after["lost_reason_id"] = None
        else:
            after["closed_at"] = now
            if stage.kind == "won":
                after["lost_reason_id"] = None
        after["board_position"] = board_position if board_position is not None else -now.timestamp()
    elif board_position is not None:
        after["board_position"] = board_position

    links = after.pop("contacts")
    columns = {name: after[name] for name in _AUDITED}
    columns["name_folded"] = fold(after["name"])[:300]
    if row is None:
        row = Deal(
            **columns,
            stage_entered_at=now,
            version=1,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
    after["contacts"] = links
    after_snapshot = dict(after)
    delta = diff(before, after_snapshot)
    if deal_id is not None:
        if not delta:
            session.rollback()
            return deal_id
        for name, value in columns.items():
            if getattr(row, name) != value:
                setattr(row, name, value)
        if target.entering:
            row.stage_entered_at = now
        row.version += 1
        row.updated_at = now
    if "contacts" in delta or (deal_id is None and links):
        if deal_id is not None:
            session.execute(delete(DealContact).where(DealContact.deal_id == row.id))
        if links:
            session.execute(
                insert(DealContact),
                [{"deal_id": row.id, **link} for link in links],
            )
    if target.entering:
        session.add(
            DealStageChange(
                deal_id=row.id,
                pipeline_id=target.pipeline.id,
                from_stage_id=before.get("stage_id"),
                to_stage_id=stage.id,
                changed_by=actor.user_id,
                changed_at=now,
            )
        )
    _adjust_totals(session, before if deal_id is not None else None, after)
    record_change(session, actor, ENTITY, row.id, "create" if deal_id is None else "update", delta)
    session.commit()
    return row.id


def create_deal(session: Session, data: DealCreate, actor: Actor) -> DealRead:
    """Create a deal in a stage (the default pipeline's first stage unless given), owned by
    the caller unless ``owner_id`` says otherwise; its first stage starts its history."""
    deal_id = _save_deal(session, actor, None, data)
    return get_deal(session, deal_id, actor)


def update_deal(
    session: Session,
    deal_id: int,
    data: DealUpdate,
    actor: Actor,
    *,
    if_version: int | None = None,
) -> DealRead:
    """Change the fields that are set; a new ``stage_id`` is a move (see ``move_deal``)."""
    _save_deal(session, actor, deal_id, data, if_version=if_version)
    return get_deal(session, deal_id, actor)


def move_deal(
    session: Session,
    deal_id: int,
    stage_id: int,
    actor: Actor,
    board_position: float | None = None,
    if_version: int | None = None,
    *,
    fields: DealFields | None = None,
) -> DealRead:
    """Move a deal to a stage (and a place in its board column), recording who moved it when.

    The stage's required fields must be set, from the deal or from ``fields`` given with the
    move; otherwise a 422 lists each missing field and nothing changes. Entering a won or lost
    stage closes the deal (a lost one needs a lost reason); entering an open one reopens it.
    """
    values = fields.model_dump(exclude_unset=True) if fields is not None else {}
    values.pop("board_position", None)
    values["stage_id"] = stage_id
    move = DealMove.model_validate(values)
    _save_deal(session, actor, deal_id, move, board_position=board_position, if_version=if_version)
    return get_deal(session, deal_id, actor)


def delete_deal(
    session: Session, deal_id: int, actor: Actor, *, if_version: int | None = None
) -> None:
    """Delete a deal with its contacts' roles and stage history."""
    row = session.get(Deal, deal_id, with_for_update=True)
    if row is None:
        raise NotFound(f"Deal {deal_id} does not exist.")
    require_owner_access(actor, ENTITY, row.owner_id, _owner_team(session, row.owner_id))
    _check_version(row, if_version, f"Deal {deal_id}")
    before = _snapshot(row, _contacts_of(session, [row.id]).get(row.id, []))
    _adjust_totals(session, before, None)
    record_change(session, actor, ENTITY, row.id, "delete", diff(before, {}))
    session.delete(row)
    session.commit()


def set_deal_contacts(
    session: Session,
    deal_id: int,
    links: Sequence[DealContactIn],
    actor: Actor,
    *,
    if_version: int | None = None,
) -> list[DealContactDetail]:
    """Replace a deal's contacts and their roles."""
    update_deal(
        session,
        deal_id,
        DealUpdate.model_validate({"contacts": [link.model_dump() for link in links]}),
        actor,
        if_version=if_version,
    )
    return deal_contacts(session, deal_id, actor)


def add_deal_contact(
    session: Session, deal_id: int, link: DealContactIn, actor: Actor
) -> list[DealContactDetail]:
    """Add a contact to a deal, or change the role of one already on it."""
    current = get_deal(session, deal_id, actor).contacts
    links = [c for c in current if c.contact_id != link.contact_id]
    links.append(DealContactRead(contact_id=link.contact_id, role=link.role))
    return set_deal_contacts(
        session,
        deal_id,
        [DealContactIn(contact_id=c.contact_id, role=c.role) for c in links],
        actor,
    )


def remove_deal_contact(
    session: Session, deal_id: int, contact_id: int, actor: Actor
) -> list[DealContactDetail]:
    """Take a contact off a deal."""
    current = get_deal(session, deal_id, actor).contacts
    if all(c.contact_id != contact_id for c in current):
        raise NotFound(f"Contact {contact_id} is not on deal {deal_id}.")
    return set_deal_contacts(
        session,
        deal_id,
        [
            DealContactIn(contact_id=c.contact_id, role=c.role)
            for c in current
            if c.contact_id != contact_id
        ],
        actor,
    )


# ----------------------------------------------------------------------------- board totals


def _totals_key(values: dict[str, Any]) -> tuple[int, int, str]:
    return (values["stage_id"], values.get("owner_id") or 0, values["currency"])


def _adjust_totals(
    session: Session, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> None:
    """Move a deal's count and amount from its old (stage, owner, currency) to its new one."""
    deltas: dict[tuple[int, int, str], list[int]] = {}
    for values, sign in ((before, -1), (after, 1)):
        if not values:
            continue
        key = _totals_key(values)
        entry = deltas.setdefault(key, [0, 0])
        entry[0] += sign
        entry[1] += sign * minor_units(values.get("amount"), values["currency"])
    rows = [
        {"stage_id": k[0], "owner_key": k[1], "currency": k[2], "deal_count": c, "amount_minor": m}
        for k, (c, m) in sorted(deltas.items())
        if c or m
    ]
    add_to_counters(session, queries.TOTALS, ("stage_id", "owner_key", "currency"), rows)


def rebuild_stage_totals(session: Session) -> None:
    """Recompute the board's running totals from the deals (after a load that wrote deals
    without this service); commits."""
    session.execute(delete(DealStageTotal))
    sums = session.execute(
        select(
            Deal.stage_id,
            Deal.owner_id,
            Deal.currency,
            func.count(),
            func.sum(Deal.amount),
        ).group_by(Deal.stage_id, Deal.owner_id, Deal.currency)
    ).all()
    rows = [
        {
            "stage_id": stage_id,
            "owner_key": owner_id or 0,
            "currency": currency,
            "deal_count": count,
            "amount_minor": (
                minor_units(Decimal(str(total)), currency)
                if total is not None and currency in known_currencies()
                else 0
            ),
        }
        for stage_id, owner_id, currency, count, total in sums
    ]
    if rows:
        session.execute(insert(DealStageTotal), rows)
    session.commit()


# ----------------------------------------------------------------------------- history


def stage_history(session: Session, deal_id: int, actor: Actor) -> list[StageChangeRead]:
    """Every stage a deal entered, oldest first, with who moved it and how long it stayed."""
    require(actor, ENTITY, "read")
    if session.scalar(select(Deal.id).where(Deal.id == deal_id)) is None:
        raise NotFound(f"Deal {deal_id} does not exist.")
    changes = list(
        session.scalars(
            select(DealStageChange)
            .where(DealStageChange.deal_id == deal_id)
            .order_by(DealStageChange.changed_at, DealStageChange.id)
        )
    )
    stage_ids = {c.to_stage_id for c in changes} | {
        c.from_stage_id for c in changes if c.from_stage_id is not None
    }
    names = (
        {
            stage_id: name
            for stage_id, name in session.execute(
                select(Stage.id, Stage.name).where(Stage.id.in_(stage_ids))
            )
        }
        if stage_ids
        else {}
    )
    users = auth_service.users_by_id(session, {c.changed_by for c in changes if c.changed_by})
    now = utcnow()
    history = []
    for index, change in enumerate(changes):
        left = changes[index + 1].changed_at if index + 1 < len(changes) else None
        user = users.get(change.changed_by) if change.changed_by else None
        history.append(
            StageChangeRead(
                id=change.id,
                deal_id=change.deal_id,
                pipeline_id=change.pipeline_id,
                from_stage_id=change.from_stage_id,
                from_stage_name=names.get(change.from_stage_id) if change.from_stage_id else None,
                to_stage_id=change.to_stage_id,
                to_stage_name=names.get(change.to_stage_id, ""),
                changed_by=change.changed_by,
                changed_by_name=user.name if user else None,
                changed_at=change.changed_at,
                left_at=left,
                seconds_in_stage=max(0, int(((left or now) - change.changed_at).total_seconds())),
            )
        )
    return history


# ----------------------------------------------------------------------------- lists


def _list_statement(
    session: Session, filters: Sequence[str], q: str | None, custom_defs: dict[str, CustomFieldRead]
) -> tuple[Select[Any], dict[str, Any]]:
    settings = session_settings(session)
    dialect = session.get_bind().dialect.name
    fields = queries.list_fields(custom_defs, dialect)
    stmt: Select[Any] = select(*queries.DEALS.c)
    for index, flt in enumerate(parse_filters(filters)):
        loc: tuple[str | int, ...] = ("query", "filter", index)
        if flt.field.startswith("cf.") and flt.field[3:] in custom_defs:
            stmt = stmt.where(
                custom_condition(
                    ENTITY,
                    custom_defs[flt.field[3:]],
                    dialect,
                    flt.op,
                    flt.value,
                    loc,
                    settings.default_phone_region,
                )
            )
        elif flt.field in fields:
            stmt = stmt.where(field_condition(flt.field, fields[flt.field], flt.op, flt.value, loc))
        else:
            raise BadRequest(
                f"Cannot filter on unknown field '{flt.field}'.", [FieldError(loc, "unknown field")]
            )
    if q and q.strip():
        stmt = stmt.where(queries.name_starts_with(q.strip()[:200]))
    return stmt, fields


def list_deals(
    session: Session,
    actor: Actor,
    *,
    filters: Sequence[str] = (),
    sort: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    q: str | None = None,
) -> Page[DealRead]:
    """A page of deals: filtered (``field:op:value``), searched by name prefix, sorted,
    continued by cursor."""
    require(actor, ENTITY, "read")
    settings = session_settings(session)
    custom_defs = fields_by_key(session, ENTITY)
    stmt, fields = _list_statement(session, filters, q, custom_defs)
    order = parse_sort(sort, fields, "-id")
    after = decode_cursor(settings.secret_key, order, cursor) if cursor else None
    stmt = apply_sort_and_cursor(stmt, order, queries.DEALS.c.id, after).limit(limit + 1)
    rows = list(session.execute(stmt).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        value = (
            last.id
            if order.name == "id"
            else session.scalar(select(order.spec.expr).where(Deal.id == last.id))
        )
        next_cursor = encode_cursor(settings.secret_key, order, value, last.id)
    return Page[DealRead](items=_read_many(session, rows, custom_defs), next_cursor=next_cursor)


def deals_needing_next_step(
    session: Session, owner_id: int, today: date, limit: int = 20
) -> list[DealRead]:
    """Open deals of an owner whose next step is empty or overdue (due before ``today``),
    soonest expected close first (those without a close date last)."""
    needs = (Deal.next_step == "") | (Deal.next_step_due < today)
    base = select(*queries.DEALS.c).where(Deal.owner_id == owner_id, Deal.status == "open", needs)
    rows = list(
        session.execute(
            base.where(Deal.expected_close_date.is_not(None))
            .order_by(Deal.expected_close_date, Deal.id)
            .limit(limit)
        )
    )
    if len(rows) < limit:
        rows += session.execute(
            base.where(Deal.expected_close_date.is_(None))
            .order_by(Deal.id)
            .limit(limit - len(rows))
        ).all()
    return _read_many(session, rows, fields_by_key(session, ENTITY))


def deals_of_company(
    session: Session, company_id: int, actor: Actor, limit: int = 20
) -> Page[DealRead]:
    """A company's deals, newest first."""
    return list_deals(
        session, actor, filters=[f"company_id:eq:{company_id}"], sort="-id", limit=limit
    )


def deals_of_contact(
    session: Session, contact_id: int, actor: Actor, limit: int = 20
) -> list[DealRead]:
    """The deals a contact takes part in, newest first."""
    require(actor, ENTITY, "read")
    rows = session.execute(
        select(*queries.DEALS.c)
        .join(DealContact, DealContact.deal_id == Deal.id)
        .where(DealContact.contact_id == contact_id)
        .order_by(Deal.id.desc())
        .limit(limit)
    ).all()
    return _read_many(session, rows, fields_by_key(session, ENTITY))


# ----------------------------------------------------------------------------- the board


def _converted_totals(
    session: Session, totals: dict[int, list[MoneyTotal]]
) -> dict[int, MoneyTotal]:
    """Each column's total in the base currency at today's rates, where every rate is known."""
    base = session_settings(session).base_currency
    currencies = {t.currency for column in totals.values() for t in column}
    if not currencies:
        return {}
    if all(t.currency == base or not t.amount for column in totals.values() for t in column):
        return {
            stage_id: MoneyTotal(
                currency=base,
                amount=sum((t.amount for t in column if t.amount), Decimal(0)).quantize(
                    _quantum(base)
                ),
            )
            for stage_id, column in totals.items()
        }
    today = utcnow().date()
    book = forecasts.RateBook.load(session, currencies | {base}, today, since=today)
    converted: dict[int, MoneyTotal] = {}
    for stage_id, column in totals.items():
        try:
            amount = sum(
                (book.convert(t.amount, t.currency, base, today) for t in column if t.amount),
                Decimal(0),
            )
        except forecasts.MissingRate:
            continue
        converted[stage_id] = MoneyTotal(currency=base, amount=forecasts.round_money(amount, base))
    return converted


def kanban(
    session: Session,
    pipeline_id: int,
    actor: Actor,
    per_stage: int = 50,
    owner_id: int | None = None,
) -> Board:
    """A pipeline's board: for each stage its deal count, totals per currency, and its first
    deals by board position (one owner's only, if given). A few indexed reads per stage."""
    require(actor, ENTITY, "read")
    pipeline = get_pipeline(session, pipeline_id, actor)
    stage_ids = [s.id for s in pipeline.stages]
    totals: dict[int, list[MoneyTotal]] = {}
    counts: dict[int, int] = {}
    if stage_ids:
        for stage_id, currency, deals, minor in session.execute(
            queries.stage_totals(owner_id), {"ids": stage_ids}
        ):
            counts[stage_id] = counts.get(stage_id, 0) + int(deals or 0)
            if deals and currency in known_currencies():
                totals.setdefault(stage_id, []).append(
                    MoneyTotal(
                        currency=currency, amount=from_minor_units(int(minor or 0), currency)
                    )
                )
    # Cards as plain tuples in ``queries.CARD_COLUMNS`` order: a board has hundreds.
    cards: dict[int, list[tuple[Any, ...]]] = {stage_id: [] for stage_id in stage_ids}
    if stage_ids:
        params: dict[str, Any] = {f"stage_{i}": stage_id for i, stage_id in enumerate(stage_ids)}
        params["limit"] = per_stage + 1
        if owner_id is not None:
            params["owner_id"] = owner_id
        statement = queries.board_cards(len(stage_ids), owner_id is not None)
        for row in session.execute(statement, params).all():
            cards[row[1]].append(tuple(row))
        for rows in cards.values():
            rows.sort(key=lambda r: (r[10], r[0]))
    converted = _converted_totals(session, totals)
    shown = [row for rows in cards.values() for row in rows[:per_stage]]
    company_names = companies.company_names(session, {r[5] for r in shown if r[5]})
    owners = {
        user.id: user.name
        for user in auth_service.users_by_id(session, {r[6] for r in shown if r[6]}).values()
    }
    now = utcnow()
    columns = []
    for stage in pipeline.stages:
        rows = cards[stage.id]
        rotting = (
            timedelta(days=stage.rotting_days)
            if stage.rotting_days and stage.kind == "open"
            else None
        )
        deals = []
        for (
            deal_id,
            _stage_id,
            name,
            amount,
            currency,
            company_id,
            deal_owner,
            close_date,
            next_step,
            entered,
            position,
            version,
        ) in rows[:per_stage]:
            deals.append(
                BoardCard(
                    id=deal_id,
                    name=name,
                    amount=present_amount(amount, currency),
                    currency=currency,
                    company_id=company_id,
                    company_name=company_names.get(company_id) if company_id else None,
                    owner_id=deal_owner,
                    owner_name=owners.get(deal_owner) if deal_owner else None,
                    expected_close_date=close_date,
                    next_step=next_step,
                    stage_entered_at=entered,
                    stalled=rotting is not None and now - entered > rotting,
                    board_position=position,
                    version=version,
                )
            )
        columns.append(
            BoardColumn(
                stage=stage,
                count=counts.get(stage.id, 0),
                totals=sorted(totals.get(stage.id, []), key=lambda t: t.currency),
                converted=converted.get(stage.id),
                has_more=len(rows) > per_stage,
                deals=deals,
            )
        )
    return Board(pipeline=pipeline, owner_id=owner_id, columns=columns)


def reassign_contact(
    session: Session, from_id: int, to_id: int
) -> tuple[list[int], list[tuple[int, str | None]]]:
    """Give contact ``from_id``'s parts in deals to contact ``to_id`` (merging contacts).

    Returns the ids of the ``deal_contacts`` rows moved, and the ``(deal_id, role)`` of the
    rows dropped because ``to_id`` already takes part in that deal (it keeps its own role).
    The caller commits; :func:`undo_reassign_contact` puts them back.
    """
    rows = session.execute(
        select(DealContact.id, DealContact.deal_id, DealContact.role).where(
            DealContact.contact_id == from_id
        )
    ).all()
    if not rows:
        return [], []
    already = set(
        session.scalars(
            select(DealContact.deal_id).where(
                DealContact.contact_id == to_id,
                DealContact.deal_id.in_({r.deal_id for r in rows}),
            )
        )
    )
    moved = sorted(r.id for r in rows if r.deal_id not in already)
    dropped = sorted((r.deal_id, r.role) for r in rows if r.deal_id in already)
    if dropped:
        session.execute(
            delete(DealContact).where(
                DealContact.contact_id == from_id,
                DealContact.deal_id.in_([deal_id for deal_id, _ in dropped]),
            )
        )
    if moved:
        session.execute(
            update(DealContact).where(DealContact.id.in_(moved)).values(contact_id=to_id)
        )
    return moved, dropped


def undo_reassign_contact(
    session: Session,
    moved: Sequence[int],
    dropped: Sequence[tuple[int, str | None]],
    survivor_id: int,
    merged_id: int,
) -> list[int]:
    """Undo :func:`reassign_contact` from ``merged_id`` to ``survivor_id``: the moved rows
    that still belong to the survivor go back, and the dropped parts are added again (for
    deals that still exist and do not have the merged contact yet). Returns the moved-back ids.
    """
    back = list(
        session.scalars(
            select(DealContact.id).where(
                DealContact.id.in_(list(moved)), DealContact.contact_id == survivor_id
            )
        )
    )
    if back:
        session.execute(
            update(DealContact).where(DealContact.id.in_(back)).values(contact_id=merged_id)
        )
    wanted = {deal_id: role for deal_id, role in dropped}
    if wanted:
        live = set(session.scalars(select(Deal.id).where(Deal.id.in_(wanted))))
        has = set(
            session.scalars(
                select(DealContact.deal_id).where(
                    DealContact.contact_id == merged_id, DealContact.deal_id.in_(wanted)
                )
            )
        )
        rows = [
            {"deal_id": deal_id, "contact_id": merged_id, "role": role}
            for deal_id, role in wanted.items()
            if deal_id in live and deal_id not in has
        ]
        if rows:
            session.execute(insert(DealContact), rows)
    return sorted(back)
