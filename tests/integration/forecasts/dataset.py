"""A small fixed sales data set whose forecast and win-rate figures are worked out by hand in
``test_figures_by_hand.py``; built through the services, with the clock set for each step.

Base currency JPY. Rates: USD 140 from 2026-09-01 and 150 from 2026-11-01; EUR 160 from
2026-10-01. Pipeline "Direct": Lead 10 %, Qualified 30 %, Proposal 60 %, Negotiation 90 %,
Won, Lost. Teams: East (Aiko, Ben) and West (Chie).

| deal | owner | amount | stage / outcome | dates (2026 unless said) | notes |
| --- | --- | --- | --- | --- | --- |
| D1 | Aiko | 1,000,000 JPY | Proposal 60 % | created 10-05, close 11-15 | best case |
| D2 | Aiko | 10,000 USD | Negotiation 90 % | created 10-06, close 10-20 | commit, USD 140 |
| D3 | Aiko | 5,000 USD | won 11-05 | created 09-10 | USD 150 on 11-05, 56 days |
| D4 | Aiko | 2,000,000 JPY | lost 11-20 | created 10-01 | lost: never in the forecast |
| D5 | Ben | 3,000 EUR | Lead 10 %, set to 70 % | created 10-07, close 12-31 | best case |
| D6 | Ben | 800,000 JPY | Qualified 30 %, set commit | created 10-01, close 10-01 | commit |
| D7 | Ben | 500,000 JPY | Proposal | created 10-02, close 2027-01-01 | next quarter |
| D8 | Ben | 1,200,000 JPY | won 12-31 23:30 UTC | created 12-01 | 30 days |
| D9 | Chie | 2,000 USD | won 2027-01-01 00:10 UTC | created 12-01 | next quarter |
| D10 | Chie | 400,000 JPY | Proposal 60 %, override 20 % | created 10-03, close 11-30 | pipeline |
| D11 | Chie | 1,000 EUR | won 10-10 | created 10-01 | EUR 160, 9 days |
| D12 | Chie | 300,000 JPY | lost 12-15 | created 10-01 | |
| D13 | Ben | 100,000 JPY | lost 09-30 23:59 UTC | created 09-01 | previous quarter |
| D14 | Aiko | 999,000 JPY | Proposal, category omitted | created 10-04, close 11-01 | omitted |

Quotas for 2026-Q4: Aiko 3,000,000 JPY for the quarter; Ben 500,000 JPY for October and
10,000 USD for November (none for December); team East 6,000,000 JPY; Chie and West none.
Activities in Q4: Aiko two calls and an email, Ben a meeting; Aiko's call of 09-30 is in Q3.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session
from tests.integration.core.factories import team, user

from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor
from ichigen.core.clock import FixedClock, SystemClock, set_clock
from ichigen.crm.activities import service as activities
from ichigen.crm.activities.schemas import ActivityCreate
from ichigen.crm.deals import forecasts
from ichigen.crm.deals import service as deals
from ichigen.crm.deals.forecasts import QuotaCreate
from ichigen.crm.deals.schemas import (
    DealCreate,
    DealFields,
    LostReasonCreate,
    PipelineCreate,
    StageIn,
)


@dataclass
class SalesData:
    aiko: UserRead
    ben: UserRead
    chie: UserRead
    east: int
    west: int
    pipeline_id: int
    deals: dict[str, int]


def _at(clock: FixedClock, when: datetime) -> None:
    clock.at = when


def build(session: Session, admin: Actor) -> SalesData:
    """The data set of the module docstring."""
    clock = FixedClock(datetime(2026, 9, 1, 9, 0, tzinfo=UTC))
    set_clock(clock)
    try:
        return _build(session, admin, clock)
    finally:
        set_clock(SystemClock())


def _build(session: Session, admin: Actor, clock: FixedClock) -> SalesData:
    east, west = team(session, "East"), team(session, "West")
    aiko = user(session, "aiko@example.com", "sales", east)
    ben = user(session, "ben@example.com", "sales", east)
    chie = user(session, "chie@example.com", "sales", west)
    pipeline = deals.create_pipeline(
        session,
        PipelineCreate(
            name="Direct",
            stages=[
                StageIn(name="Lead", probability=10),
                StageIn(name="Qualified", probability=30),
                StageIn(name="Proposal", probability=60),
                StageIn(name="Negotiation", probability=90),
                StageIn(name="Won", probability=100, kind="won"),
                StageIn(name="Lost", probability=0, kind="lost"),
            ],
        ),
        admin,
    )
    stage = {s.name: s.id for s in pipeline.stages}
    reason = deals.create_lost_reason(session, LostReasonCreate(name="Price"), admin).id

    forecasts.set_rate(session, "USD", date(2026, 9, 1), Decimal("140"), admin)
    forecasts.set_rate(session, "USD", date(2026, 11, 1), Decimal("150"), admin)
    forecasts.set_rate(session, "EUR", date(2026, 10, 1), Decimal("160"), admin)

    made: dict[str, int] = {}

    def deal(
        key: str, owner: UserRead, created: datetime, stage_name: str, amount: str, **fields: Any
    ) -> None:
        _at(clock, created)
        currency = fields.pop("currency", "JPY")
        made[key] = deals.create_deal(
            session,
            DealCreate(
                name=key,
                owner_id=owner.id,
                pipeline_id=pipeline.id,
                stage_id=stage[stage_name],
                amount=Decimal(amount),
                currency=currency,
                **fields,
            ),
            admin,
        ).id

    def close(key: str, when: datetime, stage_name: str) -> None:
        _at(clock, when)
        extra = DealFields(lost_reason_id=reason) if stage_name == "Lost" else None
        deals.move_deal(session, made[key], stage[stage_name], admin, fields=extra)

    def day(month: int, dom: int, year: int = 2026, hour: int = 9, minute: int = 0) -> datetime:
        return datetime(year, month, dom, hour, minute, tzinfo=UTC)

    deal("D1", aiko, day(10, 5), "Proposal", "1000000", expected_close_date=date(2026, 11, 15))
    deal(
        "D2",
        aiko,
        day(10, 6),
        "Negotiation",
        "10000",
        currency="USD",
        expected_close_date=date(2026, 10, 20),
    )
    deal("D3", aiko, day(9, 10), "Proposal", "5000", currency="USD")
    close("D3", day(11, 5, hour=10), "Won")
    deal("D4", aiko, day(10, 1), "Lead", "2000000")
    close("D4", day(11, 20), "Lost")
    deal(
        "D5",
        ben,
        day(10, 7),
        "Lead",
        "3000",
        currency="EUR",
        probability=70,
        expected_close_date=date(2026, 12, 31),
    )
    deal(
        "D6",
        ben,
        day(10, 1),
        "Qualified",
        "800000",
        forecast_category="commit",
        expected_close_date=date(2026, 10, 1),
    )
    deal("D7", ben, day(10, 2), "Proposal", "500000", expected_close_date=date(2027, 1, 1))
    deal("D8", ben, day(12, 1), "Negotiation", "1200000")
    close("D8", day(12, 31, hour=23, minute=30), "Won")
    deal("D9", chie, day(12, 1), "Proposal", "2000", currency="USD")
    close("D9", day(1, 1, year=2027, hour=0, minute=10), "Won")
    deal(
        "D10",
        chie,
        day(10, 3),
        "Proposal",
        "400000",
        probability=20,
        expected_close_date=date(2026, 11, 30),
    )
    deal("D11", chie, day(10, 1), "Lead", "1000", currency="EUR")
    close("D11", day(10, 10), "Won")
    deal("D12", chie, day(10, 1), "Qualified", "300000")
    close("D12", day(12, 15), "Lost")
    deal("D13", ben, day(9, 1), "Lead", "100000")
    close("D13", day(9, 30, hour=23, minute=59), "Lost")
    deal(
        "D14",
        aiko,
        day(10, 4),
        "Proposal",
        "999000",
        forecast_category="omitted",
        expected_close_date=date(2026, 11, 1),
    )

    for holder, kind, start, amount, currency in (
        ({"user_id": aiko.id}, "quarter", date(2026, 10, 1), "3000000", "JPY"),
        ({"user_id": ben.id}, "month", date(2026, 10, 1), "500000", "JPY"),
        ({"user_id": ben.id}, "month", date(2026, 11, 1), "10000", "USD"),
        ({"team_id": east}, "quarter", date(2026, 10, 1), "6000000", "JPY"),
    ):
        forecasts.create_quota(
            session,
            QuotaCreate.model_validate(
                {
                    **holder,
                    "period_kind": kind,
                    "period_start": start,
                    "amount": amount,
                    "currency": currency,
                }
            ),
            admin,
        )

    for owner, kind, when in (
        (aiko, "call", day(10, 2)),
        (aiko, "call", day(12, 31, hour=23, minute=59)),
        (aiko, "email", day(11, 2)),
        (aiko, "call", day(9, 30, hour=23, minute=59)),
        (ben, "meeting", day(11, 3)),
    ):
        activities.log_activity(
            session,
            ActivityCreate.model_validate(
                {
                    "kind": kind,
                    "occurred_at": when,
                    "owner_id": owner.id,
                    "links": [{"type": "deal", "id": made["D1"]}],
                }
            ),
            admin,
        )
    return SalesData(aiko, ben, chie, east, west, pipeline.id, made)
