"""The sales dashboard, the quota page and the exchange-rate page.

The dashboard shows its figures as HTML; its four charts are drawn in the browser by
``static/dashboard.js`` (Chart.js, vendored) from ``/dashboard/charts.json``, which answers the
same data as ``GET /api/v1/dashboard/charts`` for the signed-in user.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import require
from ichigen.core.clock import utcnow
from ichigen.core.db import session_settings
from ichigen.core.errors import Conflict, FieldError, IchigenError, NotFound, ValidationFailed
from ichigen.crm.deals import forecasts
from ichigen.crm.deals.forecasts import (
    ACTIVITY_KINDS,
    Period,
    QuotaCreate,
    ReportScope,
    month_of,
    quarter_of,
    year_of,
)
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.problems import problem
from ichigen.web.templating import (
    Form,
    SignedIn,
    Ui,
    field_errors,
    form_text,
    register_flash_messages,
    ui_router_for,
)

router = ui_router_for()

register_flash_messages(
    {
        "quota_saved": N_("Quota saved."),
        "quota_deleted": N_("Quota deleted."),
        "rate_saved": N_("Exchange rate saved."),
        "rate_deleted": N_("Exchange rate deleted."),
    }
)

#: Names of the rows that are not a rep or a team.
ROW_LABELS: dict[str, str] = {
    "no_team": N_("No team"),
    "unassigned": N_("No owner"),
    "total": N_("Total"),
}
ACTIVITY_LABELS: dict[str, str] = {
    "call": N_("Calls"),
    "email": N_("Email messages"),
    "meeting": N_("Meetings"),
    "note": N_("Notes"),
    "task": N_("Tasks done"),
}
GROUP_LABELS: dict[str, str] = {"rep": N_("Per rep"), "team": N_("Per team")}
QUOTA_KINDS: dict[str, str] = {"quarter": N_("Quarter"), "month": N_("Month")}

Text = Annotated[str, Query(max_length=20)]


def period_choices(today: date, chosen: Period) -> list[Period]:
    """The periods the picker offers: this and last year, the quarters from a year ago to the
    next one, and the last six months and the next one (and the chosen one)."""
    this_quarter = quarter_of(today)
    found: dict[str, Period] = {}
    for period in [
        year_of(today),
        year_of(date(today.year - 1, 1, 1)),
        *(quarter_of(forecasts.add_months(this_quarter.start, 3 * n)) for n in range(-4, 2)),
        *(month_of(forecasts.add_months(today, n)) for n in range(-6, 2)),
        chosen,
    ]:
        found[period.label] = period
    return sorted(found.values(), key=lambda p: (p.kind != "year", p.kind != "quarter", p.start))


def row_name(ui: Ui, row: forecasts.ReportRowBase) -> str:
    """What a report row is called in the visitor's language."""
    if row.kind in ROW_LABELS:
        return ui.gettext(ROW_LABELS[row.kind])
    return row.name


@dataclass
class DashboardParams:
    period: str
    group: str
    currency: str
    pipeline_id: int | None

    def query(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "group": self.group,
            "currency": self.currency,
            "pipeline_id": self.pipeline_id or "",
        }


def _params(
    session: DbSession, period: str, group: str, currency: str, pipeline_id: str
) -> DashboardParams:
    return DashboardParams(
        period=period.strip() or quarter_of(utcnow().date()).label,
        group=group if group in ("rep", "team") else "rep",
        currency=currency.strip().upper() or session_settings(session).base_currency,
        pipeline_id=int(pipeline_id) if pipeline_id.isdigit() and len(pipeline_id) < 18 else None,
    )


def _scope(session: DbSession, params: DashboardParams) -> ReportScope:
    return forecasts.report_scope(
        session,
        params.period,
        group=params.group,
        currency=params.currency,
        pipeline_id=params.pipeline_id,
    )


@router.get("/dashboard")
def dashboard(
    ui: SignedIn,
    session: DbSession,
    period: Text = "",
    group: Text = "rep",
    currency: Text = "",
    pipeline_id: Text = "",
) -> Response:
    """The sales dashboard of a period: figures, stage conversion, and the charts' frames."""
    require(ui.actor, "deals", "read")
    params = _params(session, period, group, currency, pipeline_id)
    context: dict[str, Any] = {
        "params": params,
        "pipelines": forecasts.report_pipelines(session),
        "currencies": forecasts.rate_currencies(session),
        "groups": GROUP_LABELS,
        "problem": None,
        "problem_field": None,
        "forecast": None,
        "metrics": None,
        "activity_labels": {k: ui.gettext(v) for k, v in ACTIVITY_LABELS.items()},
        "activity_kinds": ACTIVITY_KINDS,
    }
    chosen = quarter_of(utcnow().date())
    try:
        scope = _scope(session, params)
        chosen = scope.period
        context["forecast"] = forecasts.forecast(session, ui.actor, scope)
        context["metrics"] = forecasts.sales_metrics(session, ui.actor, scope)
        context["scope"] = scope
    except (ValidationFailed, forecasts.MissingRate) as exc:
        context["problem"] = exc.detail
        context["problem_field"] = str(exc.errors[0].loc[-1]) if exc.errors else None
    context["periods"] = period_choices(utcnow().date(), chosen)
    context["row_name"] = lambda row: row_name(ui, row)
    status = 422 if context["problem"] else 200
    return ui.render("forecasts/dashboard.html", context, status_code=status)


@router.get("/dashboard/charts.json")
def dashboard_charts(
    ui: SignedIn,
    session: DbSession,
    period: Text = "",
    group: Text = "rep",
    currency: Text = "",
    pipeline_id: Text = "",
) -> Response:
    """The charts' data as JSON (what ``/api/v1/dashboard/charts`` answers), for the page's
    script; errors are problem documents too."""
    params = _params(session, period, group, currency, pipeline_id)
    try:
        charts = forecasts.dashboard_charts(session, ui.actor, _scope(session, params))
    except IchigenError as exc:
        return problem(
            exc.status,
            exc.title,
            exc.detail,
            exc.code,
            [e.as_dict() for e in exc.errors] or None,
        )
    for bar in [*charts.forecast_vs_quota, *charts.activity_per_rep]:
        bar.name = row_name(ui, bar)
    return Response(
        charts.model_dump_json(),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


# ----------------------------------------------------------------------------- quotas


@dataclass
class QuotaForm:
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)


def _render_quotas(
    ui: Ui, session: DbSession, period: str, form: QuotaForm, status_code: int = 200
) -> Response:
    require(ui.actor, "quotas", "read")
    problem_text = None
    try:
        chosen = forecasts.parse_period(period or quarter_of(utcnow().date()).label)
    except ValidationFailed as exc:
        problem_text = exc.detail
        chosen = quarter_of(utcnow().date())
        status_code = 422
    listed = forecasts.list_quotas(session, ui.actor, period=chosen, limit=500).items
    users = auth_service.list_users(session, include_inactive=False)
    teams = auth_service.list_teams(session)
    user_names = {u.id: u.name for u in auth_service.list_users(session)}
    team_names = {t.id: t.name for t in teams}
    return ui.render(
        "forecasts/quotas.html",
        {
            "period": chosen,
            "periods": period_choices(utcnow().date(), chosen),
            "problem": problem_text,
            "quotas": listed,
            "user_names": user_names,
            "team_names": team_names,
            "users": users,
            "teams": teams,
            "kinds": {k: ui.gettext(v) for k, v in QUOTA_KINDS.items()},
            "currencies": forecasts.rate_currencies(session),
            "form": form,
        },
        status_code=status_code,
    )


@router.get("/quotas")
def quota_list(ui: SignedIn, session: DbSession, period: Text = "") -> Response:
    """The quotas of a period and, for managers and admins, a form to set one."""
    return _render_quotas(ui, session, period, QuotaForm(values={"period": period}))


def _quota_values(form: FormData) -> dict[str, str]:
    return {
        name: form_text(form, name, 40)
        for name in ("holder", "period_kind", "period", "amount", "currency")
    }


def _quota_data(values: dict[str, str]) -> QuotaCreate:
    """The quota a form describes; problems as field errors named like the form's fields."""
    errors: list[FieldError] = []
    holder: dict[str, int] = {}
    kind, _, number = values["holder"].partition(":")
    if kind in ("user", "team") and number.isdigit() and len(number) < 18:
        holder[f"{kind}_id"] = int(number)
    else:
        errors.append(FieldError(("holder",), N_("Choose a rep or a team.")))
    start = None
    try:
        period = forecasts.parse_period(values["period"], ("period",))
        if period.kind != values["period_kind"]:
            raise ValidationFailed(
                "", [FieldError(("period",), N_("Enter a period of that kind."))]
            )
        start = period.start
    except ValidationFailed as exc:
        errors += exc.errors
    try:
        amount = forecasts.parse_amount(values["amount"], ("amount",))
    except ValidationFailed as exc:
        errors += exc.errors
        amount = None
    if errors:
        raise ValidationFailed("The quota has invalid fields.", errors)
    try:
        return QuotaCreate.model_validate(
            {
                **holder,
                "period_kind": values["period_kind"],
                "period_start": start,
                "amount": amount,
                "currency": values["currency"],
            }
        )
    except ValidationError as exc:
        raise ValidationFailed(
            "The quota has invalid fields.",
            [
                FieldError((str(e["loc"][0]) if e["loc"] else "",), N_("This value is not valid."))
                for e in exc.errors()
            ],
        ) from None


#: Service error paths and the form fields that edit them.
_QUOTA_FIELDS = {
    "user_id": "holder",
    "team_id": "holder",
    "period_start": "period",
    "period_kind": "period",
}


@router.post("/quotas")
def save_quota(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """Set a quota (replacing the holder's quota of that period), or show the problems."""
    require(ui.actor, "quotas", "write")
    shown = QuotaForm(values=_quota_values(form))
    try:
        forecasts.set_quota(session, _quota_data(shown.values), ui.actor)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = {
            name: [ui.gettext(m) for m in messages]
            for name, messages in field_errors(exc.errors, _QUOTA_FIELDS).items()
        }
        return _render_quotas(ui, session, shown.values["period"], shown, exc.status)
    return ui.redirect(
        "/quotas?period=" + shown.values["period"].strip().upper(), flash="quota_saved"
    )


@router.post("/quotas/{quota_id}/delete")
def remove_quota(ui: SignedIn, session: DbSession, quota_id: int) -> Response:
    quota = forecasts.get_quota(session, quota_id, ui.actor)
    forecasts.delete_quota(session, quota_id, ui.actor)
    return ui.redirect(f"/quotas?period={quota.period}", flash="quota_deleted")


# ----------------------------------------------------------------------------- exchange rates


def _render_rates(
    ui: Ui,
    session: DbSession,
    currency: str,
    cursor: str | None,
    form: QuotaForm,
    status_code: int = 200,
) -> Response:
    page = forecasts.list_rates(session, ui.actor, currency=currency or None, cursor=cursor)
    return ui.render(
        "forecasts/rates.html",
        {
            "page": page,
            "currency": currency,
            "currencies": forecasts.rate_currencies(session),
            "base": session_settings(session).base_currency,
            "form": form,
        },
        status_code=status_code,
    )


@router.get("/exchange-rates")
def rate_list(
    ui: SignedIn,
    session: DbSession,
    currency: Text = "",
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """The stored rates, newest day first, and a form to set one (admins and managers)."""
    try:
        return _render_rates(ui, session, currency.strip(), cursor, QuotaForm())
    except ValidationFailed:
        return _render_rates(ui, session, "", None, QuotaForm(), 422)


def _rate_input(values: dict[str, str]) -> tuple[date, Decimal]:
    """The day and the rate a form gives; problems as field errors."""
    errors: list[FieldError] = []
    day = rate = None
    try:
        day = date.fromisoformat(values["rate_date"])
    except ValueError:
        errors.append(FieldError(("rate_date",), N_("Enter a date like 2026-11-01.")))
    try:
        rate = forecasts.parse_amount(values["rate"], ("rate",))
    except ValidationFailed as exc:
        errors += exc.errors
    if day is None or rate is None:
        raise ValidationFailed("The exchange rate is not valid.", errors)
    return day, rate


@router.post("/exchange-rates")
def save_rate(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """Set a rate for a day (replacing the one of that day), or show the problems."""
    require(ui.actor, forecasts.RATES_PERMISSION, "write")
    values = {name: form_text(form, name, 40) for name in ("currency", "rate_date", "rate")}
    shown = QuotaForm(values=values)
    try:
        day, rate = _rate_input(values)
        forecasts.set_rate(session, values["currency"], day, rate, ui.actor)
    except ValidationFailed as exc:
        shown.errors = {
            name: [ui.gettext(m) for m in messages]
            for name, messages in field_errors(exc.errors).items()
        }
        return _render_rates(ui, session, "", None, shown, 422)
    return ui.redirect("/exchange-rates", flash="rate_saved")


@router.post("/exchange-rates/{rate_id}/delete")
def remove_rate(ui: SignedIn, session: DbSession, rate_id: int) -> Response:
    with suppress(NotFound):  # deleted already (a second click): the list shows it gone
        forecasts.delete_rate(session, rate_id, ui.actor)
    return ui.redirect("/exchange-rates", flash="rate_deleted")
