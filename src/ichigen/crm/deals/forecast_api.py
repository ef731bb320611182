"""JSON API for exchange rates, quotas, the forecast and sales figures."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from ichigen.auth.permissions import require
from ichigen.core.errors import FieldError, ValidationFailed
from ichigen.core.schemas import Page, RecordId
from ichigen.crm.deals import forecasts
from ichigen.crm.deals.forecasts import (
    Conversion,
    DashboardCharts,
    ExchangeRateRead,
    ExchangeRateSet,
    ForecastRead,
    QuotaCreate,
    QuotaRead,
    QuotaUpdate,
    ReportScope,
    SalesMetricsRead,
)
from ichigen.web.deps import ApiActor, DbSession, IfMatch, etag

router = APIRouter(tags=["forecasting"])

QUERY = ("query",)
PeriodQuery = Annotated[
    str,
    Query(
        max_length=20,
        description="A year (`2026`), a quarter (`2026-Q4`) or a month (`2026-11`).",
        examples=["2026-Q4"],
    ),
]
GroupQuery = Annotated[
    Literal["rep", "team"], Query(description="One row per rep, or per team of reps.")
]
CurrencyQuery = Annotated[
    str | None,
    Query(
        max_length=3,
        description="ISO 4217 code the figures are shown in; the base currency when omitted.",
        examples=["JPY"],
    ),
]
PipelineQuery = Annotated[RecordId | None, Query(description="Only the deals of this pipeline.")]
Cursor = Annotated[str | None, Query(max_length=2000)]


# ----------------------------------------------------------------------------- exchange rates


@router.get("/exchange-rates", response_model=Page[ExchangeRateRead])
def list_exchange_rates(
    session: DbSession,
    actor: ApiActor,
    currency: CurrencyQuery = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[ExchangeRateRead]:
    """Rates to the base currency, newest day first."""
    return forecasts.list_rates(session, actor, currency=currency, cursor=cursor, limit=limit)


@router.post("/exchange-rates", response_model=ExchangeRateRead)
def set_exchange_rate(
    data: ExchangeRateSet, session: DbSession, actor: ApiActor
) -> ExchangeRateRead:
    """Set what one unit of `currency` is worth in the base currency from `rate_date` on; a
    rate set before for that day is replaced."""
    return forecasts.set_rate(session, data.currency, data.rate_date, data.rate, actor)


@router.get("/exchange-rates/convert", response_model=Conversion)
def convert_amount(
    session: DbSession,
    actor: ApiActor,
    amount: Annotated[Decimal, Query(ge=0, lt=Decimal(10) ** 16, allow_inf_nan=False)],
    currency: Annotated[str, Query(min_length=3, max_length=3)],
    to: Annotated[str, Query(min_length=3, max_length=3)],
    on: date,
) -> Conversion:
    """An amount in another currency at the latest rates on or before `on`."""
    require(actor, forecasts.RATES_PERMISSION, "read")
    source = forecasts.currency_code(currency, (*QUERY, "currency"))
    target = forecasts.currency_code(to, (*QUERY, "to"))
    return Conversion(
        amount=amount,
        currency=source,
        to_currency=target,
        on=on,
        converted=forecasts.convert(session, amount, source, target, on),
    )


@router.get("/exchange-rates/{rate_id}", response_model=ExchangeRateRead)
def get_exchange_rate(rate_id: RecordId, session: DbSession, actor: ApiActor) -> ExchangeRateRead:
    return forecasts.get_rate(session, rate_id, actor)


@router.delete("/exchange-rates/{rate_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_exchange_rate(rate_id: RecordId, session: DbSession, actor: ApiActor) -> None:
    """Remove a rate; its days convert at the rate before it again."""
    forecasts.delete_rate(session, rate_id, actor)


# ----------------------------------------------------------------------------- quotas


@router.get("/quotas", response_model=Page[QuotaRead])
def list_quotas(
    session: DbSession,
    actor: ApiActor,
    period: Annotated[
        str | None,
        Query(max_length=20, description="Quotas starting within this year, quarter or month."),
    ] = None,
    user_id: Annotated[RecordId | None, Query()] = None,
    team_id: Annotated[RecordId | None, Query()] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[QuotaRead]:
    """Quotas, latest period first."""
    return forecasts.list_quotas(
        session,
        actor,
        period=forecasts.parse_period(period, (*QUERY, "period")) if period else None,
        user_id=user_id,
        team_id=team_id,
        cursor=cursor,
        limit=limit,
    )


@router.post("/quotas", response_model=QuotaRead, status_code=status.HTTP_201_CREATED)
def create_quota(
    data: QuotaCreate, session: DbSession, actor: ApiActor, response: Response
) -> QuotaRead:
    """A quota for a user or a team over a month or a quarter (`period_start` is its first
    day); one per holder and period."""
    quota = forecasts.create_quota(session, data, actor)
    response.headers["Location"] = f"/api/v1/quotas/{quota.id}"
    response.headers["ETag"] = etag(quota.version)
    return quota


@router.get("/quotas/{quota_id}", response_model=QuotaRead)
def get_quota(
    quota_id: RecordId, session: DbSession, actor: ApiActor, response: Response
) -> QuotaRead:
    quota = forecasts.get_quota(session, quota_id, actor)
    response.headers["ETag"] = etag(quota.version)
    return quota


@router.patch("/quotas/{quota_id}", response_model=QuotaRead)
def update_quota(
    quota_id: RecordId,
    data: QuotaUpdate,
    session: DbSession,
    actor: ApiActor,
    version: IfMatch,
    response: Response,
) -> QuotaRead:
    quota = forecasts.update_quota(session, quota_id, data, actor, if_version=version)
    response.headers["ETag"] = etag(quota.version)
    return quota


@router.delete("/quotas/{quota_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_quota(quota_id: RecordId, session: DbSession, actor: ApiActor, version: IfMatch) -> None:
    forecasts.delete_quota(session, quota_id, actor, if_version=version)


# ----------------------------------------------------------------------------- reports


def _scope(
    session: DbSession,
    period: str | forecasts.Period,
    group: str,
    currency: str | None,
    pipeline_id: int | None,
) -> ReportScope:
    return forecasts.report_scope(
        session, period, group=group, currency=currency, pipeline_id=pipeline_id, where=QUERY
    )


@router.get("/forecast", response_model=ForecastRead)
def get_forecast(
    session: DbSession,
    actor: ApiActor,
    period: PeriodQuery,
    group: GroupQuery = "rep",
    currency: CurrencyQuery = None,
    pipeline_id: PipelineQuery = None,
) -> ForecastRead:
    """Won, commit, best case, pipeline and the weighted forecast of a period per rep or team,
    converted to one currency, with each quota and its attainment."""
    scope = _scope(session, period, group, currency, pipeline_id)
    return forecasts.forecast(session, actor, scope)


@router.get("/sales-metrics", response_model=SalesMetricsRead)
def get_sales_metrics(
    session: DbSession,
    actor: ApiActor,
    start: Annotated[
        date | None, Query(alias="from", description="First day (with `to`, instead of `period`).")
    ] = None,
    end: Annotated[date | None, Query(alias="to", description="Last day, included.")] = None,
    period: Annotated[str | None, Query(max_length=20, examples=["2026-Q4"])] = None,
    group: GroupQuery = "rep",
    currency: CurrencyQuery = None,
    pipeline_id: PipelineQuery = None,
) -> SalesMetricsRead:
    """Win rate, average won deal, sales-cycle length, activity per rep or team, and stage
    conversion over `from`..`to` (or a `period`)."""
    chosen: str | forecasts.Period
    if period is not None:
        chosen = period
    else:
        missing = [name for name, value in (("from", start), ("to", end)) if value is None]
        if missing:
            raise ValidationFailed(
                "Give a period, or the first and last day with from and to.",
                [FieldError((*QUERY, name), "required without period") for name in missing],
            )
        assert start is not None and end is not None
        chosen = forecasts.date_range(start, end, QUERY)
    scope = _scope(session, chosen, group, currency, pipeline_id)
    return forecasts.sales_metrics(session, actor, scope)


@router.get("/dashboard/charts", response_model=DashboardCharts)
def get_dashboard_charts(
    session: DbSession,
    actor: ApiActor,
    period: PeriodQuery,
    group: GroupQuery = "rep",
    currency: CurrencyQuery = None,
    pipeline_id: PipelineQuery = None,
) -> DashboardCharts:
    """What the dashboard's charts draw: pipeline by stage, forecast against quota, the
    win-rate trend of the twelve months up to the period's end, and activity per rep."""
    scope = _scope(session, period, group, currency, pipeline_id)
    return forecasts.dashboard_charts(session, actor, scope)
