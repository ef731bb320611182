"""Pipelines, their stages and lost reasons through the service; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, audit_count
from tests.integration.deals.conftest import Sales, deal

from ichigen.core.audit import Actor, record_history
from ichigen.core.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.crm.deals import service
from ichigen.crm.deals.schemas import (
    LostReasonCreate,
    LostReasonUpdate,
    PipelineCreate,
    PipelineUpdate,
    StageCreate,
    StageIn,
    StageUpdate,
)


def _names(pipeline_id: int, session: Session, by: Actor) -> list[str]:
    return [s.name for s in service.get_pipeline(session, pipeline_id, by).stages]


def test_a_new_pipeline_gets_the_standard_stages_and_the_first_is_default(
    session: Session, admin: Actor
) -> None:
    first = service.create_pipeline(session, PipelineCreate(name="New business"), admin)
    assert [(s.name, s.probability, s.kind) for s in first.stages] == [
        ("Qualified", 10, "open"),
        ("Meeting", 25, "open"),
        ("Proposal", 50, "open"),
        ("Negotiation", 80, "open"),
        ("Won", 100, "won"),
        ("Lost", 0, "lost"),
    ]
    assert first.stages[2].required_fields == ["amount"]
    assert first.is_default
    second = service.create_pipeline(
        session,
        PipelineCreate(
            name="Renewals",
            stages=[
                StageIn(name="Due", probability=60),
                StageIn(name="Renewed", probability=100, kind="won"),
                StageIn(name="Churned", probability=0, kind="lost"),
            ],
        ),
        admin,
    )
    assert not second.is_default
    assert service.default_pipeline(session, admin).id == first.id  # type: ignore[union-attr]
    service.update_pipeline(session, second.id, PipelineUpdate(is_default=True), admin)
    listed = service.list_pipelines(session, admin)
    assert [(p.name, p.is_default) for p in listed] == [("New business", False), ("Renewals", True)]
    assert audit_count(session, "pipelines") == 3


@pytest.mark.parametrize(
    ("stages", "locs"),
    [
        (
            [("A", 10, "open"), ("B", 100, "won"), ("C", 50, "open")],
            {("stages",)},
        ),
        (
            [("A", 10, "open"), ("a", 20, "open"), ("W", 100, "won"), ("L", 0, "lost")],
            {("stages", 1, "name")},
        ),
        (
            [("A", 10, "open"), ("W", 90, "won"), ("L", 5, "lost")],
            {("stages", 1, "probability"), ("stages", 2, "probability")},
        ),
    ],
)
def test_a_pipeline_needs_open_won_and_lost_stages_with_unique_names(
    session: Session,
    admin: Actor,
    stages: list[tuple[str, int, str]],
    locs: set[tuple[object, ...]],
) -> None:
    with pytest.raises(ValidationFailed) as info:
        service.create_pipeline(
            session,
            PipelineCreate(
                name="Bad",
                stages=[StageIn(name=n, probability=p, kind=k) for n, p, k in stages],  # type: ignore[arg-type]
            ),
            admin,
        )
    assert {e.loc for e in info.value.errors} == locs
    assert service.list_pipelines(session, admin) == []


def test_pipeline_names_are_unique_and_versions_guard_edits(
    session: Session, admin: Actor, sales: Sales
) -> None:
    with pytest.raises(Conflict):
        service.create_pipeline(session, PipelineCreate(name="Sales"), admin)
    service.update_pipeline(session, sales.pipeline.id, PipelineUpdate(name="Direct"), admin)
    with pytest.raises(PreconditionFailed):
        service.update_pipeline(
            session, sales.pipeline.id, PipelineUpdate(name="Again"), admin, if_version=1
        )
    assert service.get_pipeline(session, sales.pipeline.id, admin).name == "Direct"


def test_stages_are_added_edited_reordered_and_removed(
    session: Session, admin: Actor, sales: Sales
) -> None:
    pid = sales.pipeline.id
    added = service.add_stage(
        session,
        pid,
        StageCreate(name="Contract", probability=90, required_fields=["amount"]),
        admin,
    )
    assert [s.name for s in added.stages][3:6] == ["Negotiation", "Contract", "Won"]
    assert [s.position for s in added.stages] == list(range(7))
    contract = next(s.id for s in added.stages if s.name == "Contract")
    service.update_stage(
        session,
        pid,
        contract,
        StageUpdate(probability=95, required_fields=["amount", "amount", "expected_close_date"]),
        admin,
    )
    stage = next(s for s in service.get_pipeline(session, pid, admin).stages if s.id == contract)
    assert (stage.probability, stage.required_fields) == (95, ["amount", "expected_close_date"])
    service.move_stage(session, pid, contract, -1, admin)
    assert _names(pid, session, admin)[3:5] == ["Contract", "Negotiation"]
    with pytest.raises(ValidationFailed):
        service.reorder_stages(session, pid, [contract], admin)
    service.delete_stage(session, pid, contract, admin)
    assert "Contract" not in _names(pid, session, admin)
    with pytest.raises(ValidationFailed) as info:
        service.delete_stage(session, pid, sales.stage("Won"), admin)
    assert "won" in info.value.errors[0].msg
    with pytest.raises(Conflict):
        service.update_stage(
            session, pid, sales.stage("Meeting"), StageUpdate(name="qualified"), admin
        )
    history = record_history(session, "pipelines", pid)
    assert [h.action for h in history][-1] == "create" and len(history) == 5


def test_replacing_stages_keeps_ids_and_swaps_names(
    session: Session, admin: Actor, sales: Sales
) -> None:
    pid = sales.pipeline.id
    stages = service.get_pipeline(session, pid, admin).stages
    wanted = [StageIn(id=s.id, name=s.name, probability=s.probability, kind=s.kind) for s in stages]
    wanted[0].name, wanted[1].name = wanted[1].name, wanted[0].name
    wanted.insert(2, StageIn(name="Demo", probability=30))
    updated = service.update_pipeline(session, pid, PipelineUpdate(stages=wanted), admin)
    assert [s.name for s in updated.stages] == [
        "Meeting",
        "Qualified",
        "Demo",
        "Proposal",
        "Negotiation",
        "Won",
        "Lost",
    ]
    assert updated.stages[0].id == stages[0].id


def test_stages_with_deals_keep_their_kind_and_cannot_go(
    session: Session, admin: Actor, sales: Sales
) -> None:
    pid = sales.pipeline.id
    moved = deal(session, admin, stage_id=sales.stage("Meeting"))
    with pytest.raises(Conflict):
        service.delete_stage(session, pid, sales.stage("Meeting"), admin)
    with pytest.raises(Conflict):
        service.update_stage(session, pid, sales.stage("Meeting"), StageUpdate(kind="won"), admin)
    service.move_deal(session, moved.id, sales.stage("Qualified"), admin)
    with pytest.raises(Conflict) as info:
        service.delete_stage(session, pid, sales.stage("Meeting"), admin)
    assert "history" in info.value.detail
    with pytest.raises(Conflict):
        service.delete_pipeline(session, pid, admin)
    with pytest.raises(ValidationFailed):
        service.update_pipeline(session, pid, PipelineUpdate(archived=True), admin)


def test_archived_pipelines_take_no_new_deals(session: Session, admin: Actor, sales: Sales) -> None:
    other = service.create_pipeline(
        session, PipelineCreate(name="Partners", is_default=True), admin
    )
    service.update_pipeline(session, sales.pipeline.id, PipelineUpdate(archived=True), admin)
    assert [p.name for p in service.list_pipelines(session, admin)] == ["Partners"]
    assert len(service.list_pipelines(session, admin, include_archived=True)) == 2
    with pytest.raises(ValidationFailed) as info:
        deal(session, admin, pipeline_id=sales.pipeline.id)
    assert info.value.errors[0].loc == ("pipeline_id",)
    assert deal(session, admin).pipeline_id == other.id


def test_only_admins_and_managers_change_pipelines(session: Session, sales: Sales) -> None:
    rep = actor(session, "rep@example.com", "sales")
    manager = actor(session, "boss@example.com", "manager")
    with pytest.raises(PermissionDenied):
        service.create_pipeline(session, PipelineCreate(name="Mine"), rep)
    with pytest.raises(PermissionDenied):
        service.create_lost_reason(session, LostReasonCreate(name="Timing"), rep)
    assert service.list_pipelines(session, rep)[0].name == "Sales"
    service.create_pipeline(session, PipelineCreate(name="Managed"), manager)


def test_lost_reasons(session: Session, admin: Actor, sales: Sales) -> None:
    timing = service.create_lost_reason(session, LostReasonCreate(name="Timing", position=1), admin)
    with pytest.raises(Conflict):
        service.create_lost_reason(session, LostReasonCreate(name="Timing"), admin)
    assert [r.name for r in service.list_lost_reasons(session, admin)] == ["Price", "Timing"]
    service.update_lost_reason(session, timing.id, LostReasonUpdate(active=False), admin)
    assert [r.name for r in service.list_lost_reasons(session, admin)] == ["Price"]
    lost = deal(session, admin, stage_id=sales.stage("Lost"), lost_reason_id=sales.lost_reason_id)
    with pytest.raises(Conflict):
        service.delete_lost_reason(session, sales.lost_reason_id, admin)
    service.delete_lost_reason(session, timing.id, admin)
    with pytest.raises(NotFound):
        service.update_lost_reason(session, timing.id, LostReasonUpdate(active=True), admin)
    assert lost.lost_reason_id == sales.lost_reason_id
