"""Deals through the service: money, stages, required fields, closing and reopening, owners,
contacts with roles, close dates, history and audit; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.integration.core.factories import (
    actor,
    audit_count,
    company,
    contact,
    field,
    row_count,
    team,
    user,
)
from tests.integration.deals.conftest import Sales, deal

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserUpdate
from ichigen.core.audit import Actor, record_history
from ichigen.core.clock import FixedClock, SystemClock, set_clock
from ichigen.core.errors import (
    Conflict,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.crm.deals import service
from ichigen.crm.deals.models import DealStageChange
from ichigen.crm.deals.schemas import (
    DealContactIn,
    DealCreate,
    DealUpdate,
    PipelineCreate,
    StageIn,
)


def _errors(session: Session, by: Actor, **fields: Any) -> dict[tuple[Any, ...], str]:
    with pytest.raises(ValidationFailed) as info:
        deal(session, by, **fields)
    return {e.loc: e.msg for e in info.value.errors}


@pytest.fixture
def clock() -> Any:
    fixed = FixedClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    set_clock(fixed)
    yield fixed
    set_clock(SystemClock())


def test_a_deal_starts_in_the_default_pipelines_first_stage_owned_by_its_creator(
    session: Session, sales: Sales
) -> None:
    rep = actor(session, "rep@example.com", "sales")
    created = deal(session, rep, "サクラ精工 更新", amount=Decimal("1200000"))
    assert (created.pipeline_id, created.stage_name, created.status) == (
        sales.pipeline.id,
        "Qualified",
        "open",
    )
    assert created.owner_id == rep.user_id
    assert (created.amount, created.currency) == (Decimal("1200000"), "JPY")
    assert (created.probability, created.forecast_category) == (10, "pipeline")
    history = service.stage_history(session, created.id, rep)
    assert [(h.from_stage_id, h.to_stage_name, h.changed_by) for h in history] == [
        (None, "Qualified", rep.user_id)
    ]
    assert record_history(session, "deals", created.id)[0].action == "create"


@pytest.mark.parametrize(
    ("amount", "currency", "loc"),
    [
        ("1000.5", "JPY", "amount"),
        ("10.005", "USD", "amount"),
        ("10.0001", "KWD", "amount"),
        ("100", "ABC", "currency"),
    ],
)
def test_amounts_keep_their_currencys_scale(
    session: Session, admin: Actor, sales: Sales, amount: str, currency: str, loc: str
) -> None:
    errors = _errors(session, admin, amount=Decimal(amount), currency=currency)
    assert set(errors) == {(loc,)}
    assert row_count(session, service.Deal) == 0


def test_amounts_read_back_exactly_in_their_scale(
    session: Session, admin: Actor, sales: Sales
) -> None:
    usd = deal(session, admin, amount=Decimal("1234.50"), currency="usd")
    yen = deal(session, admin, amount=Decimal("1500000.00"))
    dinar = deal(session, admin, amount=Decimal("12.345"), currency="KWD")
    assert [str(d.amount) for d in (usd, yen, dinar)] == ["1234.50", "1500000", "12.345"]
    assert service.get_deal(session, usd.id, admin).currency == "USD"
    with pytest.raises(ValidationFailed) as info:
        service.update_deal(session, usd.id, DealUpdate(currency="JPY"), admin)
    assert info.value.errors[0].loc == ("currency",)


def test_pipeline_and_stage_must_exist_and_agree(
    session: Session, admin: Actor, sales: Sales
) -> None:
    other = service.create_pipeline(
        session,
        PipelineCreate(
            name="Other",
            stages=[
                StageIn(name="Open", probability=50),
                StageIn(name="Yes", probability=100, kind="won"),
                StageIn(name="No", probability=0, kind="lost"),
            ],
        ),
        admin,
    )
    assert set(_errors(session, admin, pipeline_id=999)) == {("pipeline_id",)}
    assert set(_errors(session, admin, stage_id=999)) == {("stage_id",)}
    assert set(
        _errors(session, admin, pipeline_id=sales.pipeline.id, stage_id=other.stages[0].id)
    ) == {("stage_id",)}
    made = deal(session, admin, stage_id=other.stages[0].id)
    assert made.pipeline_id == other.id
    with pytest.raises(ValidationFailed) as info:
        service.move_deal(session, made.id, sales.stage("Meeting"), admin)
    assert info.value.errors[0].loc == ("stage_id",)
    moved = service.update_deal(session, made.id, DealUpdate(pipeline_id=sales.pipeline.id), admin)
    assert (moved.pipeline_id, moved.stage_name) == (sales.pipeline.id, "Qualified")


def test_a_stages_required_fields_are_checked_on_entry_and_nothing_changes(
    session: Session, admin: Actor, sales: Sales
) -> None:
    made = deal(session, admin)
    before = audit_count(session, "deals")
    with pytest.raises(ValidationFailed) as info:
        service.move_deal(session, made.id, sales.stage("Negotiation"), admin)
    assert {(e.loc, e.type) for e in info.value.errors} == {
        (("amount",), "missing"),
        (("expected_close_date",), "missing"),
    }
    assert "amount, expected close date" in info.value.detail
    again = service.get_deal(session, made.id, admin)
    assert (again.stage_id, again.version) == (made.stage_id, made.version)
    assert audit_count(session, "deals") == before
    assert len(service.stage_history(session, made.id, admin)) == 1
    moved = service.move_deal(
        session,
        made.id,
        sales.stage("Negotiation"),
        admin,
        fields=DealUpdate(amount=Decimal("500000"), expected_close_date=date(2099, 1, 31)),
    )
    assert (moved.stage_name, moved.amount, moved.probability) == ("Negotiation", 500000, 80)
    assert moved.forecast_category == "best_case"
    # Entering the stage directly on create is held to the same rules.
    assert set(_errors(session, admin, stage_id=sales.stage("Proposal"))) == {("amount",)}


def test_winning_losing_and_reopening(session: Session, admin: Actor, sales: Sales) -> None:
    made = deal(session, admin, amount=Decimal("100"))
    with pytest.raises(ValidationFailed) as info:
        service.move_deal(session, made.id, sales.stage("Lost"), admin)
    assert [e.loc for e in info.value.errors] == [("lost_reason_id",)]
    lost = service.move_deal(
        session,
        made.id,
        sales.stage("Lost"),
        admin,
        fields=DealUpdate(lost_reason_id=sales.lost_reason_id, close_note="Too dear"),
    )
    assert (lost.status, lost.lost_reason_id, lost.forecast_category) == (
        "lost",
        sales.lost_reason_id,
        "omitted",
    )
    assert lost.closed_at is not None
    reopened = service.move_deal(session, made.id, sales.stage("Meeting"), admin)
    assert (reopened.status, reopened.closed_at, reopened.lost_reason_id) == ("open", None, None)
    assert reopened.close_note == "Too dear"
    won = service.move_deal(session, made.id, sales.stage("Won"), admin)
    assert (won.status, won.probability, won.forecast_category) == ("won", 100, "commit")
    assert won.closed_at is not None
    assert [h.to_stage_name for h in service.stage_history(session, made.id, admin)] == [
        "Qualified",
        "Lost",
        "Meeting",
        "Won",
    ]
    assert set(_errors(session, admin, lost_reason_id=999)) == {("lost_reason_id",)}


def test_probability_and_forecast_category_overrides(
    session: Session, admin: Actor, sales: Sales
) -> None:
    made = deal(session, admin, probability=70, forecast_category="best_case")
    assert (made.probability, made.probability_override, made.forecast_category) == (
        70,
        70,
        "best_case",
    )
    cleared = service.update_deal(
        session, made.id, DealUpdate(probability=None, forecast_category=None), admin
    )
    assert (cleared.probability, cleared.forecast_category) == (10, "pipeline")
    assert service.derived_forecast_category("open", 55) == "best_case"
    # The deal's shown category follows the forecast's thresholds (one rule, both places).
    assert [service.derived_forecast_category("open", p) for p in (49, 50, 89, 90)] == [
        "pipeline",
        "best_case",
        "best_case",
        "commit",
    ]
    eighty = service.update_deal(session, made.id, DealUpdate(probability=85), admin)
    assert eighty.forecast_category == "best_case"


def test_owner_must_be_an_active_user(session: Session, admin: Actor, sales: Sales) -> None:
    gone = user(session, "gone@example.com")
    auth_service.update_user(session, gone.id, UserUpdate(is_active=False), admin)
    assert _errors(session, admin, owner_id=gone.id) == {
        ("owner_id",): "the owner is an inactive user"
    }
    assert set(_errors(session, admin, owner_id=99999)) == {("owner_id",)}
    nobody = deal(session, admin, owner_id=None)
    assert nobody.owner_id is None


def test_a_close_date_before_creation_is_refused(
    session: Session, admin: Actor, sales: Sales, clock: FixedClock
) -> None:
    assert set(_errors(session, admin, expected_close_date=date(2026, 2, 27))) == {
        ("expected_close_date",)
    }
    # The day of creation anywhere in the world is fine.
    made = deal(session, admin, expected_close_date=date(2026, 3, 1))
    clock.at += timedelta(days=30)
    with pytest.raises(ValidationFailed):
        service.update_deal(
            session, made.id, DealUpdate(expected_close_date=date(2026, 2, 1)), admin
        )
    later = service.update_deal(
        session, made.id, DealUpdate(expected_close_date=date(2026, 3, 20)), admin
    )
    assert later.expected_close_date == date(2026, 3, 20)


def test_time_in_each_stage(
    session: Session, admin: Actor, sales: Sales, clock: FixedClock
) -> None:
    made = deal(session, admin)
    clock.at += timedelta(days=2)
    service.move_deal(session, made.id, sales.stage("Meeting"), admin)
    clock.at += timedelta(hours=5)
    history = service.stage_history(session, made.id, admin)
    assert [(h.to_stage_name, h.seconds_in_stage) for h in history] == [
        ("Qualified", 2 * 86400),
        ("Meeting", 5 * 3600),
    ]
    assert history[0].left_at == history[1].changed_at and history[1].left_at is None
    assert history[1].from_stage_name == "Qualified"
    rows = session.scalars(select(DealStageChange).where(DealStageChange.deal_id == made.id))
    assert len(list(rows)) == 2


def test_contacts_with_roles(session: Session, admin: Actor, sales: Sales) -> None:
    taro = contact(session, last_name="山田", first_name="太郎", email="taro@example.jp")
    hana = contact(session, last_name="鈴木", first_name="花子", email="hana@example.jp")
    made = deal(
        session,
        admin,
        contacts=[DealContactIn(contact_id=taro.id, role="decision_maker")],
    )
    assert [(c.contact_id, c.role) for c in made.contacts] == [(taro.id, "decision_maker")]
    service.add_deal_contact(
        session, made.id, DealContactIn(contact_id=hana.id, role="champion"), admin
    )
    details = service.deal_contacts(session, made.id, admin)
    assert [(d.name, d.role, d.email) for d in details] == [
        ("山田 太郎", "decision_maker", "taro@example.jp"),
        ("鈴木 花子", "champion", "hana@example.jp"),
    ]
    service.remove_deal_contact(session, made.id, taro.id, admin)
    assert [c.contact_id for c in service.get_deal(session, made.id, admin).contacts] == [hana.id]
    assert [d.id for d in service.deals_of_contact(session, hana.id, admin)] == [made.id]
    with pytest.raises(NotFound):
        service.remove_deal_contact(session, made.id, taro.id, admin)
    errors = _errors(
        session,
        admin,
        contacts=[
            DealContactIn(contact_id=hana.id),
            DealContactIn(contact_id=hana.id),
            DealContactIn(contact_id=99999),
        ],
    )
    assert set(errors) == {("contacts", 1, "contact_id"), ("contacts", 2, "contact_id")}
    changes = record_history(session, "deals", made.id)[0].changes
    assert changes["contacts"][1] == [{"contact_id": hana.id, "role": "champion"}]


def test_company_custom_fields_tags_and_external_ids(
    session: Session, admin: Actor, sales: Sales
) -> None:
    acme = company(session, "Acme")
    field(session, "region_code", "select", entity="deals", options=["east", "west"])
    made = deal(
        session,
        admin,
        company_id=acme.id,
        tags=["a", "a", "b"],
        external_id="hs-1",
        custom={"region_code": "east"},
    )
    assert (made.company.name if made.company else None, made.tags) == ("Acme", ["a", "b"])
    assert made.custom == {"region_code": "east"}
    assert set(_errors(session, admin, company_id=99999)) == {("company_id",)}
    assert set(_errors(session, admin, custom={"region_code": "north"})) == {
        ("custom", "region_code")
    }
    with pytest.raises(Conflict):
        deal(session, admin, external_id="hs-1")
    assert [d.id for d in service.deals_of_company(session, acme.id, admin).items] == [made.id]
    found = service.list_deals(session, admin, filters=["cf.region_code:eq:east"])
    assert [d.id for d in found.items] == [made.id]


def test_versions_guard_against_lost_updates(session: Session, admin: Actor, sales: Sales) -> None:
    made = deal(session, admin)
    service.update_deal(session, made.id, DealUpdate(next_step="Call"), admin, if_version=1)
    with pytest.raises(PreconditionFailed):
        service.update_deal(session, made.id, DealUpdate(next_step="Mail"), admin, if_version=1)
    with pytest.raises(PreconditionFailed):
        service.move_deal(session, made.id, sales.stage("Meeting"), admin, if_version=1)
    unchanged = service.update_deal(session, made.id, DealUpdate(next_step="Call"), admin)
    assert unchanged.version == 2


def test_sales_reps_change_only_their_teams_deals(
    session: Session, admin: Actor, sales: Sales
) -> None:
    east = team(session, "East")
    rep = actor(session, "rep@example.com", "sales", east)
    mate = actor(session, "mate@example.com", "sales", east)
    stranger = actor(session, "far@example.com", "sales")
    viewer = actor(session, "look@example.com", "viewer")
    mine = deal(session, rep)
    service.update_deal(session, mine.id, DealUpdate(next_step="Demo"), mate)
    with pytest.raises(PermissionDenied):
        service.move_deal(session, mine.id, sales.stage("Meeting"), stranger)
    with pytest.raises(PermissionDenied):
        deal(session, viewer)
    assert service.get_deal(session, mine.id, viewer).next_step == "Demo"
    with pytest.raises(PermissionDenied):
        service.delete_deal(session, mine.id, stranger)
    service.delete_deal(session, mine.id, rep)
    with pytest.raises(NotFound):
        service.get_deal(session, mine.id, admin)
    assert record_history(session, "deals", mine.id)[0].action == "delete"


def test_deals_needing_a_next_step(session: Session, admin: Actor, sales: Sales) -> None:
    rep = actor(session, "rep@example.com", "sales")
    today = date.today()
    empty = deal(session, rep, "empty", expected_close_date=today + timedelta(days=9))
    overdue = deal(
        session,
        rep,
        "overdue",
        next_step="Call",
        next_step_due=today - timedelta(days=1),
        expected_close_date=today + timedelta(days=3),
    )
    deal(session, rep, "fine", next_step="Call", next_step_due=today)
    no_date = deal(session, rep, "no date")
    closed = deal(session, rep, "won", amount=Decimal(1))
    service.move_deal(session, closed.id, sales.stage("Won"), rep)
    deal(session, admin, "someone else's")
    found = service.deals_needing_next_step(session, rep.user_id or 0, today)
    assert [d.id for d in found] == [overdue.id, empty.id, no_date.id]
    assert [d.id for d in service.deals_needing_next_step(session, rep.user_id or 0, today, 1)] == [
        overdue.id
    ]


def test_list_filters_sorts_searches_and_pages(
    session: Session, admin: Actor, sales: Sales
) -> None:
    names = ["Alpha", "alpine", "Beta", "ガンマ", "Delta"]
    made = [
        deal(
            session,
            admin,
            n,
            amount=Decimal(100 * (i + 1)),
            expected_close_date=date(2099, 1, i + 1),
        )
        for i, n in enumerate(names)
    ]
    service.move_deal(session, made[2].id, sales.stage("Meeting"), admin)
    assert [d.name for d in service.list_deals(session, admin, q="alp").items] == [
        "alpine",
        "Alpha",
    ]
    assert [d.name for d in service.list_deals(session, admin, q="がん").items] == ["ガンマ"]
    meeting = service.list_deals(session, admin, filters=[f"stage_id:eq:{sales.stage('Meeting')}"])
    assert [d.name for d in meeting.items] == ["Beta"]
    ranged = service.list_deals(
        session,
        admin,
        filters=["expected_close_date:gte:2099-01-02", "expected_close_date:lte:2099-01-04"],
        sort="-amount",
    )
    assert [d.name for d in ranged.items] == ["ガンマ", "Beta", "alpine"]
    first = service.list_deals(session, admin, sort="name", limit=2)
    second = service.list_deals(session, admin, sort="name", limit=2, cursor=first.next_cursor)
    assert [d.name for d in first.items + second.items] == ["Alpha", "alpine", "Beta", "Delta"]
    with pytest.raises(Exception, match="unknown field"):
        service.list_deals(session, admin, filters=["colour:eq:red"])


def test_custom_field_required_on_create(session: Session, admin: Actor, sales: Sales) -> None:
    field(session, "segment", "text", entity="deals", required=True)
    assert set(_errors(session, admin)) == {("custom", "segment")}
    made = service.create_deal(
        session, DealCreate(name="With segment", custom={"segment": "SMB"}), admin
    )
    assert made.custom == {"segment": "SMB"}
