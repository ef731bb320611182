"""The pipeline board: counts and totals per stage and currency, kept by every write and
rebuilt from the deals alike; first cards by board position; stalled deals; on both engines."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, company
from tests.integration.deals.conftest import Sales, deal

from ichigen.core.audit import Actor
from ichigen.core.clock import FixedClock, SystemClock, set_clock
from ichigen.crm.deals import forecasts, service
from ichigen.crm.deals.schemas import Board, DealUpdate, StageUpdate


def _summary(board: Board) -> dict[str, tuple[int, dict[str, str]]]:
    return {
        c.stage.name: (c.count, {t.currency: str(t.amount) for t in c.totals})
        for c in board.columns
        if c.count
    }


def _expected(session: Session, by: Actor, owner_id: int | None = None) -> dict[str, Any]:
    """The board's figures computed from the deal list itself."""
    filters = [f"owner_id:eq:{owner_id}"] if owner_id else []
    counts: dict[str, int] = defaultdict(int)
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for item in service.list_deals(session, by, filters=filters, limit=500).items:
        counts[item.stage_name] += 1
        if item.amount is not None:
            sums[item.stage_name][item.currency] += item.amount
        else:
            sums[item.stage_name][item.currency] += 0
    return {
        name: (
            counts[name],
            {cur: str(service.present_amount(v, cur)) for cur, v in sums[name].items()},
        )
        for name in counts
    }


def test_totals_follow_every_write_and_match_a_rebuild(
    session: Session, admin: Actor, sales: Sales
) -> None:
    rep = actor(session, "rep@example.com", "sales")
    rnd = random.Random(7)
    made = []
    for index in range(30):
        currency = rnd.choice(["JPY", "USD"])
        amount = (
            None
            if index % 7 == 0
            else Decimal(rnd.randint(1, 10**6)) / (100 if currency == "USD" else 1)
        )
        made.append(
            deal(
                session,
                admin if index % 2 else rep,
                f"D{index}",
                amount=amount,
                currency=currency,
                owner_id=None if index % 5 == 0 else (admin.user_id if index % 2 else rep.user_id),
            )
        )
    open_stages = ["Qualified", "Meeting", "Proposal", "Negotiation"]
    for item in made[:20]:
        target = rnd.choice(open_stages)
        fields = DealUpdate(amount=Decimal(5), expected_close_date=datetime.now(UTC).date())
        service.move_deal(session, item.id, sales.stage(target), admin, fields=fields)
    service.update_deal(
        session, made[21].id, DealUpdate(currency="USD", amount=Decimal("9.99")), admin
    )
    service.update_deal(session, made[22].id, DealUpdate(owner_id=rep.user_id), admin)
    service.delete_deal(session, made[23].id, admin)
    service.move_deal(
        session,
        made[24].id,
        sales.stage("Lost"),
        admin,
        fields=DealUpdate(lost_reason_id=sales.lost_reason_id),
    )
    board = service.kanban(session, sales.pipeline.id, admin)
    assert _summary(board) == _expected(session, admin)
    mine = service.kanban(session, sales.pipeline.id, admin, owner_id=rep.user_id)
    assert _summary(mine) == _expected(session, admin, rep.user_id)
    assert all(card.owner_id == rep.user_id for c in mine.columns for card in c.deals)
    service.rebuild_stage_totals(session)
    assert _summary(service.kanban(session, sales.pipeline.id, admin)) == _summary(board)


def test_cards_come_in_board_order_and_stop_at_the_limit(
    session: Session, admin: Actor, sales: Sales
) -> None:
    acme = company(session, "Acme")
    made = [deal(session, admin, f"D{i}", company_id=acme.id) for i in range(5)]
    board = service.kanban(session, sales.pipeline.id, admin, per_stage=3)
    first = board.columns[0]
    # Newest on top; the column says there is more.
    assert [c.name for c in first.deals] == ["D4", "D3", "D2"]
    assert (first.count, first.has_more) == (5, True)
    assert first.deals[0].company_name == "Acme" and first.deals[0].owner_name
    # A card dropped between two others lands there.
    d2, d1 = first.deals[2], service.kanban(session, sales.pipeline.id, admin).columns[0].deals[3]
    service.move_deal(
        session,
        made[0].id,
        sales.stage("Qualified"),
        admin,
        board_position=(d2.board_position + d1.board_position) / 2,
    )
    order = [c.name for c in service.kanban(session, sales.pipeline.id, admin).columns[0].deals]
    assert order == ["D4", "D3", "D2", "D0", "D1"]
    assert board.columns[1].deals == [] and board.columns[1].count == 0


def test_stalled_cards(session: Session, admin: Actor, sales: Sales) -> None:
    clock = FixedClock(datetime(2026, 5, 1, tzinfo=UTC))
    set_clock(clock)
    try:
        deal(session, admin, "Old")
        clock.at += timedelta(days=31)
        deal(session, admin, "Fresh")
        service.update_stage(
            session,
            sales.pipeline.id,
            sales.stage("Qualified"),
            StageUpdate(rotting_days=30),
            admin,
        )
        cards = service.kanban(session, sales.pipeline.id, admin).columns[0].deals
        assert [(c.name, c.stalled) for c in cards] == [("Fresh", False), ("Old", True)]
    finally:
        set_clock(SystemClock())


def test_an_unknown_pipeline_has_no_board(session: Session, admin: Actor) -> None:
    with pytest.raises(Exception, match="does not exist"):
        service.kanban(session, 12345, admin)


def test_columns_in_several_currencies_are_also_shown_in_the_base_currency(
    session: Session, admin: Actor, sales: Sales
) -> None:
    deal(session, admin, "Yen", amount=Decimal(1000))
    deal(session, admin, "Dollars", amount=Decimal("10.50"), currency="USD")
    deal(session, admin, "Euros", stage_id=sales.stage("Meeting"), currency="EUR")
    column, meeting = service.kanban(session, sales.pipeline.id, admin).columns[:2]
    assert column.converted is None  # no USD rate yet
    assert meeting.converted is not None and str(meeting.converted.amount) == "0"
    forecasts.set_rate(session, "USD", date(2020, 1, 1), Decimal("150"), admin)
    column = service.kanban(session, sales.pipeline.id, admin).columns[0]
    assert column.converted is not None
    assert (column.converted.currency, str(column.converted.amount)) == ("JPY", "2575")
