"""``ichigen pipelines …`` and ``ichigen deals …``."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.table import Table
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.cli.context import (
    AsOption,
    FilterOption,
    QueryOption,
    acting_user,
    console,
    db_session,
    err_console,
)
from ichigen.core.audit import Actor
from ichigen.core.errors import FieldError, NotFound, ValidationFailed
from ichigen.core.text import fold
from ichigen.crm.deals import service
from ichigen.crm.deals.schemas import (
    REQUIRED_FIELDS,
    DealCreate,
    DealUpdate,
    PipelineCreate,
    PipelineRead,
    StageCreate,
    StageIn,
)

pipelines = typer.Typer(help="Sales pipelines and their stages.", no_args_is_help=True)
deals = typer.Typer(help="Deals: list, create, move between stages.", no_args_is_help=True)

PipelineOption = Annotated[
    str | None, typer.Option("--pipeline", help="Pipeline id or name (default: the default one).")
]
AmountOption = Annotated[str | None, typer.Option(help="Amount, e.g. 1200000 or 1250.50.")]
CurrencyOption = Annotated[str | None, typer.Option(help="ISO 4217 code (default: JPY or set).")]
CloseDateOption = Annotated[
    str | None, typer.Option("--close-date", help="Expected close date, YYYY-MM-DD.")
]


M = TypeVar("M", bound=BaseModel)


def checked(model: type[M], values: dict[str, Any]) -> M:
    """The model of these values, or a ``ValidationFailed`` naming each bad one."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ValidationFailed(
            "Some values are not valid.",
            [FieldError(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()],
        ) from None


def find_pipeline(session: Session, actor: Actor, ref: str | None) -> PipelineRead:
    """A pipeline by id or name; the default pipeline when ``ref`` is empty."""
    if ref is None:
        found = service.default_pipeline(session, actor)
        if found is None:
            raise NotFound("There is no pipeline yet; create one with 'ichigen pipelines create'.")
        return found
    if ref.isdigit():
        return service.get_pipeline(session, int(ref), actor)
    for pipeline in service.list_pipelines(session, actor, include_archived=True):
        if fold(pipeline.name) == fold(ref):
            return pipeline
    raise NotFound(f"No pipeline is called {ref!r}.")


def find_stage(pipeline: PipelineRead, ref: str) -> int:
    """A stage of the pipeline by id or name."""
    for stage in pipeline.stages:
        if str(stage.id) == ref or fold(stage.name) == fold(ref):
            return stage.id
    names = ", ".join(s.name for s in pipeline.stages)
    raise NotFound(f"The pipeline {pipeline.name!r} has no stage {ref!r}; its stages: {names}.")


def _user_id(session: Session, email: str | None, option: str) -> int | None:
    if email is None:
        return None
    user = auth_service.find_user_by_email(session, email)
    if user is None:
        raise typer.BadParameter(f"no user with email {email}", param_hint=option)
    return user.id


def _amount(raw: str | None) -> Decimal | None:
    if raw is None:
        return None
    try:
        return Decimal(raw.replace(",", ""))
    except InvalidOperation:
        raise typer.BadParameter(f"{raw!r} is not an amount", param_hint="--amount") from None


def _date(raw: str | None, option: str) -> date | None:
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise typer.BadParameter(f"{raw!r} is not YYYY-MM-DD", param_hint=option) from None


def parse_stage(text: str, index: int) -> StageIn:
    """``Name:probability[:kind[:field,field]]``, e.g. ``Proposal:50:open:amount``."""
    parts = text.split(":")
    if len(parts) < 2 or not parts[1].strip().isdigit():
        raise ValidationFailed(
            f"--stage {text!r} is not Name:probability[:kind[:required,fields]].",
            [FieldError(("stages", index), "expected Name:probability[:kind[:fields]]")],
        )
    values: dict[str, Any] = {"name": parts[0], "probability": int(parts[1])}
    if len(parts) > 2 and parts[2].strip():
        values["kind"] = parts[2].strip()
    if len(parts) > 3 and parts[3].strip():
        values["required_fields"] = [f.strip() for f in parts[3].split(",") if f.strip()]
    return checked(StageIn, values)


def _stage_table(pipeline: PipelineRead) -> Table:
    table = Table("id", "stage", "probability", "kind", "requires", "stalls after")
    for stage in pipeline.stages:
        table.add_row(
            str(stage.id),
            stage.name,
            f"{stage.probability} %",
            stage.kind,
            ", ".join(stage.required_fields) or "-",
            f"{stage.rotting_days} days" if stage.rotting_days else "-",
        )
    return table


@pipelines.command("list")
def list_pipelines(
    archived: Annotated[bool, typer.Option("--archived", help="Archived ones too.")] = False,
) -> None:
    """List pipelines with their stages."""
    with db_session() as session:
        found = service.list_pipelines(session, Actor.system("cli"), include_archived=archived)
    if not found:
        err_console.print("no pipelines yet; create one with 'ichigen pipelines create NAME'")
    for pipeline in found:
        flags = [
            f for f, on in (("default", pipeline.is_default), ("archived", pipeline.archived)) if on
        ]
        console.print(
            f"[bold]{pipeline.name}[/bold] (id {pipeline.id})"
            + (f" — {', '.join(flags)}" if flags else "")
        )
        console.print(_stage_table(pipeline))


@pipelines.command("create")
def create_pipeline(
    name: str,
    stage: Annotated[
        list[str] | None,
        typer.Option(
            "--stage",
            help="Name:probability[:kind[:required,fields]], repeatable, in order "
            "(default: Qualified, Meeting, Proposal, Negotiation, Won, Lost).",
        ),
    ] = None,
    default: Annotated[bool, typer.Option("--default", help="Make it the default.")] = False,
    as_user: AsOption = None,
) -> None:
    """Create a pipeline; it needs an open, a won (100) and a lost (0) stage."""
    with db_session() as session:
        actor = acting_user(session, as_user)
        stages = [parse_stage(text, i) for i, text in enumerate(stage or [])] or None
        created = service.create_pipeline(
            session,
            checked(PipelineCreate, {"name": name, "is_default": default, "stages": stages}),
            actor,
        )
    err_console.print(f"created pipeline {created.id} {created.name!r}")
    console.print(_stage_table(created))


@pipelines.command("add-stage")
def add_stage(
    pipeline: Annotated[str, typer.Argument(help="Pipeline id or name.")],
    name: str,
    probability: Annotated[int, typer.Option(help="Win probability in percent.")],
    kind: Annotated[str, typer.Option(help="open, won or lost.")] = "open",
    requires: Annotated[
        list[str] | None,
        typer.Option(
            help=f"A field to fill before entering, repeatable: {', '.join(REQUIRED_FIELDS)}."
        ),
    ] = None,
    position: Annotated[
        int | None, typer.Option(help="Place, 0 first (default: after the last open stage).")
    ] = None,
    rotting_days: Annotated[
        int | None, typer.Option(help="Days after which a deal here shows as stalled.")
    ] = None,
    as_user: AsOption = None,
) -> None:
    """Add a stage to a pipeline."""
    with db_session() as session:
        actor = acting_user(session, as_user)
        target = find_pipeline(session, actor, pipeline)
        data = checked(
            StageCreate,
            {
                "name": name,
                "probability": probability,
                "kind": kind,
                "required_fields": requires or [],
                "position": position,
                "rotting_days": rotting_days,
            },
        )
        updated = service.add_stage(session, target.id, data, actor)
    console.print(_stage_table(updated))


def _deal_table(items: list[Any], owners: dict[int, str]) -> Table:
    table = Table("id", "deal", "stage", "amount", "owner", "close date", "company")
    for item in items:
        table.add_row(
            str(item.id),
            item.name,
            f"{item.stage_name} ({item.status})" if item.status != "open" else item.stage_name,
            f"{item.amount:,} {item.currency}" if item.amount is not None else "-",
            owners.get(item.owner_id, "-") if item.owner_id else "-",
            item.expected_close_date.isoformat() if item.expected_close_date else "-",
            item.company.name if item.company else "-",
        )
    return table


@deals.command("list")
def list_deals(
    pipeline: PipelineOption = None,
    stage: Annotated[str | None, typer.Option(help="Stage id or name (of --pipeline).")] = None,
    owner: Annotated[str | None, typer.Option(help="Owner's email.")] = None,
    status: Annotated[str | None, typer.Option(help="open, won or lost.")] = None,
    filter: FilterOption = None,
    query: QueryOption = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_user: AsOption = None,
) -> None:
    """List deals, newest first."""
    with db_session() as session:
        actor = acting_user(session, as_user)
        filters = list(filter or [])
        if pipeline is not None or stage is not None:
            target = find_pipeline(session, actor, pipeline)
            filters.append(f"pipeline_id:eq:{target.id}")
            if stage is not None:
                filters.append(f"stage_id:eq:{find_stage(target, stage)}")
        owner_id = _user_id(session, owner, "--owner")
        if owner_id is not None:
            filters.append(f"owner_id:eq:{owner_id}")
        if status:
            filters.append(f"status:eq:{status}")
        page = service.list_deals(session, actor, filters=filters, q=query, limit=limit)
        owners = {
            u.id: u.name
            for u in auth_service.users_by_id(
                session, {d.owner_id for d in page.items if d.owner_id}
            ).values()
        }
    console.print(_deal_table(page.items, owners))
    if page.next_cursor:
        err_console.print(f"showing the first {limit}; narrow the filters or raise --limit")


@deals.command("create")
def create_deal(
    name: str,
    amount: AmountOption = None,
    currency: CurrencyOption = None,
    pipeline: PipelineOption = None,
    stage: Annotated[str | None, typer.Option(help="Stage id or name.")] = None,
    owner: Annotated[str | None, typer.Option(help="Owner's email (default: --as).")] = None,
    company_id: Annotated[int | None, typer.Option("--company-id", help="Company id.")] = None,
    close_date: CloseDateOption = None,
    next_step: Annotated[str | None, typer.Option("--next-step")] = None,
    as_user: AsOption = None,
) -> None:
    """Create a deal (in the first stage of the default pipeline unless told otherwise)."""
    with db_session() as session:
        actor = acting_user(session, as_user)
        values: dict[str, Any] = {"name": name}
        if pipeline is not None or stage is not None:
            target = find_pipeline(session, actor, pipeline)
            values["pipeline_id"] = target.id
            if stage is not None:
                values["stage_id"] = find_stage(target, stage)
        for key, value in (
            ("amount", _amount(amount)),
            ("currency", currency),
            ("owner_id", _user_id(session, owner, "--owner")),
            ("company_id", company_id),
            ("expected_close_date", _date(close_date, "--close-date")),
            ("next_step", next_step),
        ):
            if value is not None:
                values[key] = value
        created = service.create_deal(session, checked(DealCreate, values), actor)
    console.print(f"created deal {created.id} {created.name!r} in {created.stage_name}")


@deals.command("move")
def move_deal(
    deal_id: Annotated[int, typer.Argument(help="The deal's id.")],
    stage: Annotated[str, typer.Argument(help="Stage id or name.")],
    pipeline: Annotated[
        str | None, typer.Option("--pipeline", help="Move to a stage of another pipeline.")
    ] = None,
    amount: AmountOption = None,
    currency: CurrencyOption = None,
    close_date: CloseDateOption = None,
    lost_reason: Annotated[
        str | None, typer.Option("--lost-reason", help="Lost reason id or name.")
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Close note.")] = None,
    as_user: AsOption = None,
) -> None:
    """Move a deal to a stage, filling the fields the stage requires."""
    with db_session() as session:
        actor = acting_user(session, as_user)
        deal = service.get_deal(session, deal_id, actor)
        target = find_pipeline(session, actor, pipeline or str(deal.pipeline_id))
        fields: dict[str, Any] = {}
        if pipeline is not None:
            fields["pipeline_id"] = target.id
        for key, value in (
            ("amount", _amount(amount)),
            ("currency", currency),
            ("expected_close_date", _date(close_date, "--close-date")),
            ("close_note", note),
        ):
            if value is not None:
                fields[key] = value
        if lost_reason is not None:
            reasons = service.list_lost_reasons(session, actor)
            match = [
                r.id
                for r in reasons
                if str(r.id) == lost_reason or fold(r.name) == fold(lost_reason)
            ]
            if not match:
                names = ", ".join(r.name for r in reasons) or "none yet"
                raise typer.BadParameter(
                    f"no lost reason {lost_reason!r} ({names})", param_hint="--lost-reason"
                )
            fields["lost_reason_id"] = match[0]
        moved = service.move_deal(
            session,
            deal_id,
            find_stage(target, stage),
            actor,
            fields=checked(DealUpdate, fields),
        )
    console.print(f"deal {moved.id} {moved.name!r} is now in {moved.stage_name} ({moved.status})")
