"""``ichigen rates …``, ``ichigen quotas …`` and ``ichigen forecast``."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.orm import Session

from ichigen.auth import service as auth_service
from ichigen.cli.context import AsOption, acting_user, console, db_session
from ichigen.core.audit import Actor
from ichigen.crm.deals import forecasts
from ichigen.crm.deals.forecasts import QuotaCreate, ReportRowBase

rates = typer.Typer(
    help="Exchange rates by date, for totals in one currency.", no_args_is_help=True
)
quotas = typer.Typer(help="Sales quotas per user or team and period.", no_args_is_help=True)
forecast = typer.Typer(help="Forecast and sales figures for a period.", no_args_is_help=True)


class Group(StrEnum):
    rep = "rep"
    team = "team"


def _day(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"not a date like 2026-11-01: {value}", param_hint=option
        ) from None


def _money(value: Decimal | None) -> str:
    return "—" if value is None else f"{value:,}"


def _percent(value: Decimal | None) -> str:
    return "—" if value is None else f"{value} %"


def _label(row: ReportRowBase) -> str:
    names = {"no_team": "(no team)", "unassigned": "(no owner)", "total": "Total"}
    return names.get(row.kind, row.name)


# ----------------------------------------------------------------------------- rates


@rates.command("set")
def set_rate(
    currency: Annotated[str, typer.Argument(help="ISO 4217 code, e.g. USD.")],
    rate_date: Annotated[str, typer.Argument(metavar="DATE", help="First day it applies.")],
    rate: Annotated[str, typer.Argument(help="Units of the base currency per unit.")],
    as_user: AsOption = None,
) -> None:
    """Set what one unit of CURRENCY is worth in the base currency from DATE on."""
    day = _day(rate_date, "DATE")
    with db_session() as session:
        saved = forecasts.set_rate(
            session,
            currency,
            day,
            forecasts.parse_amount(rate, ("rate",)),
            acting_user(session, as_user),
        )
    console.print(f"1 {saved.currency} = {saved.rate} {saved.base_currency} from {saved.rate_date}")


@rates.command("list")
def list_rates(
    currency: Annotated[str | None, typer.Option(help="Only this currency.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 50,
) -> None:
    """The stored rates, newest day first."""
    with db_session() as session:
        page = forecasts.list_rates(session, Actor.system("cli"), currency=currency, limit=limit)
    table = Table("id", "currency", "from", "rate", title="Exchange rates")
    for item in page.items:
        table.add_row(
            str(item.id),
            item.currency,
            item.rate_date.isoformat(),
            f"{item.rate} {item.base_currency}",
        )
    console.print(table)


@rates.command("delete")
def delete_rate(
    rate_id: Annotated[int, typer.Argument(metavar="ID", min=1)], as_user: AsOption = None
) -> None:
    """Remove a stored rate."""
    with db_session() as session:
        forecasts.delete_rate(session, rate_id, acting_user(session, as_user))
    console.print(f"deleted exchange rate {rate_id}")


# ----------------------------------------------------------------------------- quotas


def _team_id(session: Session, name: str) -> int:
    for team in auth_service.list_teams(session):
        if team.name.casefold() == name.strip().casefold():
            return team.id
    raise typer.BadParameter(f"no team named {name}", param_hint="--team")


@quotas.command("set")
def set_quota(
    amount: Annotated[str, typer.Option(help="The target, e.g. 10000000.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 code of the amount.")],
    user: Annotated[str | None, typer.Option("--user", help="Email of the rep.")] = None,
    team: Annotated[str | None, typer.Option("--team", help="Name of the team.")] = None,
    quarter: Annotated[str | None, typer.Option(help="A quarter, e.g. 2026-Q4.")] = None,
    month: Annotated[str | None, typer.Option(help="A month, e.g. 2026-11.")] = None,
    as_user: AsOption = None,
) -> None:
    """Set a rep's or a team's quota for a quarter or a month (replacing one set before)."""
    if (user is None) == (team is None):
        raise typer.BadParameter("give --user or --team", param_hint="--user / --team")
    if (quarter is None) == (month is None):
        raise typer.BadParameter("give --quarter or --month", param_hint="--quarter / --month")
    kind = "quarter" if quarter else "month"
    text = quarter or month or ""
    period = forecasts.parse_period(text, (f"--{kind}",))
    if period.kind != kind:
        raise typer.BadParameter(f"not a {kind}: {text}", param_hint=f"--{kind}")
    with db_session() as session:
        holder: dict[str, int] = {}
        if user is not None:
            found = auth_service.find_user_by_email(session, user)
            if found is None:
                raise typer.BadParameter(f"no user with email {user}", param_hint="--user")
            holder["user_id"] = found.id
        else:
            holder["team_id"] = _team_id(session, team or "")
        saved = forecasts.set_quota(
            session,
            QuotaCreate.model_validate(
                {
                    **holder,
                    "period_kind": kind,
                    "period_start": period.start,
                    "amount": forecasts.parse_amount(amount),
                    "currency": currency,
                }
            ),
            acting_user(session, as_user),
        )
    console.print(
        f"quota {saved.id}: {saved.amount:,} {saved.currency} for {user or team} in {saved.period}"
    )


@quotas.command("list")
def list_quotas(
    period: Annotated[
        str | None, typer.Option(help="Quotas starting within a year, quarter or month.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
) -> None:
    """Quotas, latest period first."""
    with db_session() as session:
        page = forecasts.list_quotas(
            session,
            Actor.system("cli"),
            period=forecasts.parse_period(period, ("--period",)) if period else None,
            limit=limit,
        )
        users = auth_service.users_by_id(session, {q.user_id for q in page.items if q.user_id})
        teams = {t.id: t.name for t in auth_service.list_teams(session)}
    table = Table("id", "period", "for", "amount", title="Quotas")
    for item in page.items:
        holder = (
            users[item.user_id].email
            if item.user_id in users
            else f"team {teams.get(item.team_id or 0, item.team_id)}"
        )
        table.add_row(str(item.id), item.period, holder, f"{item.amount:,} {item.currency}")
    console.print(table)


@quotas.command("delete")
def delete_quota(
    quota_id: Annotated[int, typer.Argument(metavar="ID", min=1)], as_user: AsOption = None
) -> None:
    """Remove a quota."""
    with db_session() as session:
        forecasts.delete_quota(session, quota_id, acting_user(session, as_user))
    console.print(f"deleted quota {quota_id}")


# ----------------------------------------------------------------------------- forecast


@forecast.callback(invoke_without_command=True)
def show_forecast(
    period: Annotated[str, typer.Option(help="A year, quarter or month: 2026, 2026-Q4, 2026-11.")],
    by: Annotated[Group, typer.Option("--by", help="One row per rep or per team.")] = Group.rep,
    currency: Annotated[
        str | None, typer.Option(help="Show figures in this currency (default: the base one).")
    ] = None,
    pipeline: Annotated[int | None, typer.Option(help="Only this pipeline's deals.", min=1)] = None,
) -> None:
    """The forecast of a period against quota, and its win rate, deal size and sales cycle."""
    with db_session() as session:
        scope = forecasts.report_scope(
            session,
            forecasts.parse_period(period, ("--period",)),
            group=by.value,
            currency=currency,
            pipeline_id=pipeline,
        )
        actor = Actor.system("cli")
        predicted = forecasts.forecast(session, actor, scope)
        figures = forecasts.sales_metrics(session, actor, scope)
    who = "Team" if by == Group.team else "Rep"
    table = Table(
        who,
        "Won",
        "Commit",
        "Best case",
        "Pipeline",
        "Weighted",
        "Quota",
        "Attainment",
        title=f"Forecast {predicted.period} ({predicted.start} – {predicted.end}), "
        f"{predicted.currency}",
    )
    for row in [*predicted.rows, predicted.total]:
        table.add_row(
            _label(row),
            _money(row.won),
            _money(row.commit),
            _money(row.best_case),
            _money(row.pipeline),
            _money(row.weighted),
            _money(row.quota),
            _percent(row.attainment),
            style="bold" if row.kind == "total" else None,
        )
    console.print(table)
    sales = Table(
        who,
        "Won",
        "Lost",
        "Win rate",
        "by amount",
        "Average won",
        "Cycle (median days)",
        "Cycle (mean days)",
        title=f"Deals closed {figures.start} – {figures.end}, {figures.currency}",
    )
    for line in [*figures.rows, figures.total]:
        sales.add_row(
            _label(line),
            str(line.won_count),
            str(line.lost_count),
            _percent(line.win_rate),
            _percent(line.win_rate_by_amount),
            _money(line.average_won),
            str(line.cycle_median_days or "—"),
            str(line.cycle_mean_days or "—"),
            style="bold" if line.kind == "total" else None,
        )
    console.print(sales)
