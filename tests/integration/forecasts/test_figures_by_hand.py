"""Forecast, win rate, deal size, sales cycle, stage conversion and activity on the small
fixed data set of ``dataset.py``, against figures worked out by hand; SQLite and PostgreSQL.

Every expected number is a literal with its arithmetic beside it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor
from tests.integration.forecasts.dataset import SalesData, build

from ichigen.core.audit import Actor
from ichigen.core.clock import FixedClock, SystemClock, set_clock
from ichigen.crm.deals import forecasts
from ichigen.crm.deals import service as deals
from ichigen.crm.deals.forecasts import ForecastRow, MissingRate, SalesFigures
from ichigen.crm.deals.schemas import PipelineCreate


@pytest.fixture
def data(session: Session, admin: Actor) -> SalesData:
    return build(session, admin)


def _rows(rows: list[ForecastRow]) -> dict[str, ForecastRow]:
    return {row.name or row.key: row for row in rows}


def test_forecast_per_rep_in_yen(session: Session, admin: Actor, data: SalesData) -> None:
    scope = forecasts.report_scope(session, "2026-Q4")
    result = forecasts.forecast(session, admin, scope)
    assert (result.period, result.start, result.end, result.currency) == (
        "2026-Q4",
        date(2026, 10, 1),
        date(2026, 12, 31),
        "JPY",
    )
    rows = _rows(result.rows)
    assert list(rows) == ["Aiko", "Ben", "Chie"]

    aiko = rows["Aiko"]
    assert aiko.won == Decimal("750000")  # D3: 5,000 USD × 150 (rate of 11-05)
    assert aiko.won_count == 1  # D4 was lost: not counted
    assert aiko.commit == Decimal("1400000")  # D2: 10,000 USD × 140 (rate of 10-20), 90 %
    assert aiko.best_case == Decimal("1000000")  # D1: 60 %
    assert aiko.pipeline == Decimal("0")
    assert aiko.omitted == Decimal("999000")  # D14
    assert aiko.open_count == 2  # D1, D2 (D14 omitted)
    # 750,000 + 1,000,000 × 60 % + 1,400,000 × 90 % = 750,000 + 600,000 + 1,260,000
    assert aiko.weighted == Decimal("2610000")
    assert aiko.quota == Decimal("3000000")
    assert aiko.attainment == Decimal("25.0")  # 750,000 / 3,000,000

    ben = rows["Ben"]
    assert ben.won == Decimal("1200000")  # D8, won 12-31 23:30 UTC, inside the quarter
    assert ben.commit == Decimal("800000")  # D6: 30 % stage, category set to commit
    assert ben.best_case == Decimal("480000")  # D5: 3,000 EUR × 160, probability 70 % (set)
    assert ben.open_count == 2  # D7 closes 2027-01-01, next quarter
    # 1,200,000 + 480,000 × 70 % + 800,000 × 30 % = 1,200,000 + 336,000 + 240,000
    assert ben.weighted == Decimal("1776000")
    # October 500,000 JPY + November 10,000 USD × 150 (rate of 11-01) = 2,000,000
    assert ben.quota == Decimal("2000000")
    assert ben.attainment == Decimal("60.0")  # 1,200,000 / 2,000,000

    chie = rows["Chie"]
    assert chie.won == Decimal("160000")  # D11: 1,000 EUR × 160; D9 won 2027-01-01 00:10
    assert chie.pipeline == Decimal("400000")  # D10: 60 % stage set to 20 %: pipeline
    assert chie.weighted == Decimal("240000")  # 160,000 + 400,000 × 20 %
    assert chie.quota is None and chie.attainment is None

    total = result.total
    assert total.won == Decimal("2110000")  # 750,000 + 1,200,000 + 160,000
    assert total.won_count == 3
    assert total.commit == Decimal("2200000")  # 1,400,000 + 800,000
    assert total.best_case == Decimal("1480000")  # 1,000,000 + 480,000
    assert total.pipeline == Decimal("400000")
    assert total.weighted == Decimal("4626000")  # 2,610,000 + 1,776,000 + 240,000
    assert total.quota == Decimal("5000000")  # 3,000,000 + 2,000,000
    assert total.attainment == Decimal("42.2")  # 2,110,000 / 5,000,000 = 42.2 %


def test_forecast_per_team(session: Session, admin: Actor, data: SalesData) -> None:
    scope = forecasts.report_scope(session, "2026-Q4", group="team")
    rows = _rows(forecasts.forecast(session, admin, scope).rows)
    assert list(rows) == ["East", "West"]
    east = rows["East"]
    assert east.won == Decimal("1950000")  # 750,000 + 1,200,000
    assert east.weighted == Decimal("4386000")  # 2,610,000 + 1,776,000
    assert east.quota == Decimal("6000000")  # the team's own quota, not its reps' 5,000,000
    assert east.attainment == Decimal("32.5")  # 1,950,000 / 6,000,000
    assert (rows["West"].won, rows["West"].quota) == (Decimal("160000"), None)


def test_forecast_in_dollars_uses_cross_rates_of_each_day(
    session: Session, admin: Actor, data: SalesData
) -> None:
    scope = forecasts.report_scope(session, "2026-Q4", currency="usd")
    chie = _rows(forecasts.forecast(session, admin, scope).rows)["Chie"]
    # D11: 1,000 EUR on 10-10 = 1,000 × 160 / 140 USD = 1,142.857… → 1,142.86
    assert chie.won == Decimal("1142.86")
    # + D10: 400,000 JPY on 11-30 = 400,000 / 150 = 2,666.666… USD × 20 % = 533.333…
    # = 1,676.190… → 1,676.19
    assert chie.weighted == Decimal("1676.19")
    assert chie.pipeline == Decimal("2666.67")


def test_a_month_and_a_pipeline_narrow_the_forecast(
    session: Session, admin: Actor, data: SalesData
) -> None:
    november = forecasts.forecast(session, admin, forecasts.report_scope(session, "2026-11"))
    rows = _rows(november.rows)
    # November: D3 won 11-05 (750,000); open D1 (11-15), D10 (11-30), D14 (11-01, omitted)
    assert rows["Aiko"].won == Decimal("750000")
    assert rows["Aiko"].weighted == Decimal("1350000")  # 750,000 + 1,000,000 × 60 %
    assert rows["Aiko"].quota is None  # only a quarter quota: a month shows none
    assert rows["Ben"].quota == Decimal("1500000")  # November: 10,000 USD × 150
    assert rows["Ben"].won == 0 and rows["Ben"].open_count == 0
    other = forecasts.report_scope(session, "2026-Q4", pipeline_id=_other_pipeline(session, admin))
    assert forecasts.forecast(session, admin, other).total.weighted == 0


def _other_pipeline(session: Session, admin: Actor) -> int:
    return deals.create_pipeline(session, PipelineCreate(name="Partners"), admin).id


def test_win_rate_deal_size_and_cycle(session: Session, admin: Actor, data: SalesData) -> None:
    scope = forecasts.report_scope(
        session, forecasts.date_range(date(2026, 10, 1), date(2026, 12, 31))
    )
    result = forecasts.sales_metrics(session, admin, scope)
    rows: dict[str, SalesFigures] = {row.name: row for row in result.rows}

    aiko = rows["Aiko"]  # won D3 (750,000), lost D4 (2,000,000)
    assert (aiko.won_count, aiko.lost_count) == (1, 1)
    assert aiko.win_rate == Decimal("50.0")  # 1 / 2
    assert aiko.win_rate_by_amount == Decimal("27.3")  # 750,000 / 2,750,000 = 27.27 %
    assert aiko.cycle_median_days == Decimal("56.0")  # 09-10 → 11-05: 20 + 31 + 5
    assert aiko.activities == {"call": 2, "email": 1}  # the call of 09-30 is in Q3

    ben = rows["Ben"]  # won D8; D13 was lost on 09-30, before the period
    assert (ben.won_count, ben.lost_count, ben.win_rate) == (1, 0, Decimal("100.0"))
    assert ben.cycle_median_days == Decimal("30.0")  # 12-01 → 12-31
    assert ben.activities == {"meeting": 1}

    chie = rows["Chie"]  # won D11 (160,000), lost D12 (300,000); D9 won in 2027
    assert chie.win_rate == Decimal("50.0")
    assert chie.win_rate_by_amount == Decimal("34.8")  # 160,000 / 460,000 = 34.78 %
    assert chie.average_won == Decimal("160000")

    total = result.total
    assert (total.won_count, total.lost_count) == (3, 2)
    assert total.win_rate == Decimal("60.0")  # 3 / 5
    assert total.won_amount == Decimal("2110000")
    assert total.lost_amount == Decimal("2300000")  # 2,000,000 + 300,000
    assert total.win_rate_by_amount == Decimal("47.8")  # 2,110,000 / 4,410,000 = 47.85 %
    assert total.average_won == Decimal("703333")  # 2,110,000 / 3 = 703,333.33
    assert total.cycle_median_days == Decimal("30.0")  # 9, 30, 56
    assert total.cycle_mean_days == Decimal("31.7")  # (9 + 30 + 56) / 3 = 31.67


def test_stage_conversion_from_the_stage_history(
    session: Session, admin: Actor, data: SalesData
) -> None:
    scope = forecasts.report_scope(session, "2026-Q4", pipeline_id=data.pipeline_id)
    found = {c.stage_name: c for c in forecasts.stage_conversion(session, scope)}
    assert list(found) == ["Lead", "Qualified", "Proposal", "Negotiation"]
    # Lead, entered in Q4 by D4, D5, D11 (D13 entered 09-01); only D11 moved on, to Won
    assert (found["Lead"].entered, found["Lead"].advanced, found["Lead"].won) == (3, 1, 1)
    assert found["Lead"].advance_rate == Decimal("33.3")
    # Qualified: D6, D12 (lost later): none advanced
    assert (found["Qualified"].entered, found["Qualified"].advanced) == (2, 0)
    assert found["Qualified"].advance_rate == Decimal("0.0")
    # Proposal: D1, D7, D9, D10, D14 (D3 entered 09-10); D9 won on 2027-01-01
    assert (found["Proposal"].entered, found["Proposal"].won) == (5, 1)
    assert found["Proposal"].win_rate == Decimal("20.0")
    # Negotiation: D2, D8; D8 won
    assert (found["Negotiation"].entered, found["Negotiation"].advanced) == (2, 1)


def test_dashboard_charts(session: Session, admin: Actor, data: SalesData) -> None:
    set_clock(FixedClock(datetime(2026, 11, 22, 9, 0, tzinfo=UTC)))
    try:
        charts = forecasts.dashboard_charts(
            session,
            admin,
            forecasts.report_scope(session, "2026-Q4", pipeline_id=data.pipeline_id),
        )
    finally:
        set_clock(SystemClock())
    assert charts.pipeline_by_stage.on == date(2026, 11, 22)
    stages = {s.name: (s.count, s.amount) for s in charts.pipeline_by_stage.stages}
    # Open deals on 11-22, at that day's rates (USD 150, EUR 160): Lead D5 3,000 EUR = 480,000;
    # Qualified D6; Proposal D1, D7, D10, D14 = 1,000,000 + 500,000 + 400,000 + 999,000;
    # Negotiation D2 10,000 USD = 1,500,000
    assert stages == {
        "Lead": (1, Decimal("480000")),
        "Qualified": (1, Decimal("800000")),
        "Proposal": (4, Decimal("2899000")),
        "Negotiation": (1, Decimal("1500000")),
    }
    bars = {b.name: (b.won, b.weighted, b.quota) for b in charts.forecast_vs_quota}
    assert bars["Ben"] == (Decimal("1200000"), Decimal("1776000"), Decimal("2000000"))
    assert [m.month for m in charts.win_rate_trend][0::11] == ["2026-01", "2026-12"]
    by_month = {m.month: m for m in charts.win_rate_trend}
    assert (by_month["2026-09"].won_count, by_month["2026-09"].lost_count) == (0, 1)  # D13
    assert by_month["2026-11"].win_rate == Decimal("50.0")  # D3 won, D4 lost
    assert by_month["2026-12"].win_rate_by_amount == Decimal("80.0")  # 1.2M / (1.2M + 0.3M)
    assert charts.activity_kinds == ["call", "email", "meeting"]
    assert {a.name: a.counts for a in charts.activity_per_rep} == {
        "Aiko": {"call": 2, "email": 1, "meeting": 0},
        "Ben": {"call": 0, "email": 0, "meeting": 1},
    }


def test_a_missing_rate_names_the_currency_and_day(
    session: Session, admin: Actor, data: SalesData
) -> None:
    # D3 was created on 09-10; in GBP nothing converts at all.
    with pytest.raises(MissingRate) as missing:
        forecasts.forecast(
            session, admin, forecasts.report_scope(session, "2026-Q4", currency="GBP")
        )
    assert missing.value.currency == "GBP" and missing.value.status == 422


def test_quotas_show_only_to_those_who_may_read_them(
    session: Session, admin: Actor, data: SalesData
) -> None:
    viewer = actor(session, "viewer@example.com", "viewer")
    result = forecasts.forecast(session, viewer, forecasts.report_scope(session, "2026-Q4"))
    assert result.total.won == Decimal("2110000") and result.total.quota is None
