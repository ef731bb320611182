"""Quotas per user or team and month or quarter: rules, audit and permissions, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, audit_count, row_count, team, user

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserUpdate
from ichigen.core.audit import Actor, record_history
from ichigen.core.errors import Conflict, PermissionDenied, PreconditionFailed, ValidationFailed
from ichigen.crm.deals import forecasts
from ichigen.crm.deals.forecasts import QuotaCreate, QuotaUpdate
from ichigen.crm.deals.models import Quota


def _quota(**fields: Any) -> QuotaCreate:
    values: dict[str, Any] = {
        "period_kind": "quarter",
        "period_start": date(2026, 10, 1),
        "amount": Decimal("10000000"),
        "currency": "JPY",
    }
    values.update(fields)
    return QuotaCreate.model_validate(values)


def test_a_quota_is_created_changed_and_deleted_with_audit(session: Session, admin: Actor) -> None:
    rep = user(session, "rep@example.com")
    created = forecasts.create_quota(session, _quota(user_id=rep.id), admin)
    assert (created.period, created.amount, created.version) == ("2026-Q4", Decimal(10000000), 1)
    changed = forecasts.update_quota(
        session, created.id, QuotaUpdate(amount=Decimal("12000000")), admin, if_version=1
    )
    assert changed.amount == Decimal(12000000) and changed.version == 2
    with pytest.raises(PreconditionFailed):
        forecasts.update_quota(
            session, created.id, QuotaUpdate(amount=Decimal(1)), admin, if_version=1
        )
    forecasts.delete_quota(session, created.id, admin, if_version=2)
    assert row_count(session, Quota) == 0
    history = record_history(session, "quotas", created.id)
    assert [h.action for h in history] == ["delete", "update", "create"]
    assert history[1].changes == {"amount": ["10000000", "12000000"]}


def test_one_quota_per_holder_and_period_and_set_replaces(session: Session, admin: Actor) -> None:
    rep = user(session, "rep@example.com")
    forecasts.create_quota(session, _quota(user_id=rep.id), admin)
    with pytest.raises(Conflict):
        forecasts.create_quota(session, _quota(user_id=rep.id, amount=Decimal(5)), admin)
    replaced = forecasts.set_quota(
        session, _quota(user_id=rep.id, amount=Decimal("50.25"), currency="USD"), admin
    )
    assert (replaced.amount, replaced.currency, replaced.version) == (Decimal("50.25"), "USD", 2)
    month = forecasts.set_quota(
        session, _quota(user_id=rep.id, period_kind="month", period_start=date(2026, 10, 1)), admin
    )
    sales = team(session, "Tokyo")
    of_team = forecasts.create_quota(session, _quota(team_id=sales), admin)
    assert month.period == "2026-10" and of_team.team_id == sales
    assert row_count(session, Quota) == 3
    listed = forecasts.list_quotas(session, admin, period=forecasts.parse_period("2026-Q4"))
    assert len(listed.items) == 3
    assert [q.id for q in forecasts.list_quotas(session, admin, team_id=sales).items] == [
        of_team.id
    ]


@pytest.mark.parametrize(
    ("fields", "locs"),
    [
        ({"period_start": date(2026, 11, 1)}, [("period_start",)]),
        ({"period_kind": "month", "period_start": date(2026, 11, 2)}, [("period_start",)]),
        ({"amount": Decimal("10.5")}, [("amount",)]),
        ({"currency": "USD", "amount": Decimal("10.555")}, [("amount",)]),
        ({"currency": "QQQ"}, [("currency",)]),
        ({"user_id": None}, [("user_id",)]),
        ({"team_id": 999}, [("team_id",)]),
        ({"user_id": 999}, [("user_id",)]),
    ],
)
def test_bad_quotas_are_422_naming_the_field(
    session: Session, admin: Actor, fields: dict[str, Any], locs: list[tuple[str]]
) -> None:
    rep = user(session, "rep@example.com")
    values = {"user_id": rep.id, **fields}
    if "team_id" in fields:
        values.pop("user_id")
    with pytest.raises(ValidationFailed) as info:
        forecasts.create_quota(session, _quota(**values), admin)
    assert [e.loc for e in info.value.errors] == locs
    assert row_count(session, Quota) == 0
    assert audit_count(session, "quotas") == 0


def test_an_inactive_user_gets_no_quota(session: Session, admin: Actor) -> None:
    rep = user(session, "rep@example.com")
    auth_service.update_user(session, rep.id, UserUpdate(is_active=False), admin)
    with pytest.raises(ValidationFailed) as info:
        forecasts.create_quota(session, _quota(user_id=rep.id), admin)
    assert info.value.errors[0].msg == "the user is inactive"


def test_reps_read_quotas_and_managers_set_them(session: Session, admin: Actor) -> None:
    rep_user = user(session, "rep@example.com")
    rep = auth_service.actor_for(rep_user)
    with pytest.raises(PermissionDenied):
        forecasts.create_quota(session, _quota(user_id=rep_user.id), rep)
    manager = actor(session, "boss@example.com", "manager")
    made = forecasts.create_quota(session, _quota(user_id=rep_user.id), manager)
    assert forecasts.get_quota(session, made.id, rep).id == made.id
    viewer = actor(session, "viewer@example.com", "viewer")
    with pytest.raises(PermissionDenied):
        forecasts.list_quotas(session, viewer)
