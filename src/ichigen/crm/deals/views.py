"""Deal pages: the list, detail with stage history, forms, the kanban board with drag and drop,
and the pipeline and lost-reason settings."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from babel.numbers import format_decimal
from fastapi import Query, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserRead
from ichigen.core.audit import record_history
from ichigen.core.custom_fields import CustomFieldRead
from ichigen.core.errors import (
    Conflict,
    FieldError,
    IchigenError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.core.text import fold
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts import service as contacts
from ichigen.crm.deals import service
from ichigen.crm.deals.schemas import (
    CONTACT_ROLES,
    FORECAST_CATEGORIES,
    REQUIRED_FIELDS,
    DealCreate,
    DealRead,
    DealUpdate,
    LostReasonCreate,
    LostReasonUpdate,
    PipelineCreate,
    PipelineRead,
    PipelineUpdate,
    StageCreate,
    StageUpdate,
)
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.templating import (
    ChangeFormatter,
    Form,
    SignedIn,
    Ui,
    custom_values_from_form,
    field_errors,
    form_text,
    history_rows,
    query_string,
    register_flash_messages,
    ui_router_for,
)

router = ui_router_for()
PAGE_SIZE = 50
#: Contact rows the deal form always offers (more appear as they are filled).
CONTACT_ROWS = 3
#: Currencies offered first in the forms (any ISO 4217 code is accepted).
CURRENCIES = ("JPY", "USD", "EUR", "GBP", "CNY", "KRW", "TWD", "SGD", "AUD", "CAD")

FIELD_LABELS: dict[str, str] = {
    "name": N_("Deal name"),
    "amount": N_("Amount"),
    "currency": N_("Currency"),
    "pipeline_id": N_("Pipeline"),
    "stage_id": N_("Stage"),
    "status": N_("Status"),
    "board_position": N_("Place on the board"),
    "owner_id": N_("Owner"),
    "company_id": N_("Company"),
    "contacts": N_("Contacts"),
    "expected_close_date": N_("Expected close date"),
    "closed_at": N_("Closed"),
    "lost_reason_id": N_("Lost reason"),
    "close_note": N_("Close note"),
    "probability_override": N_("Probability"),
    "forecast_category": N_("Forecast category"),
    "next_step": N_("Next step"),
    "next_step_due": N_("Next step due"),
    "source": N_("Source"),
    "tags": N_("Tags"),
    "external_id": N_("External ID"),
}
STATUS_LABELS: dict[str, str] = {"open": N_("Open"), "won": N_("Won"), "lost": N_("Lost")}
KIND_LABELS: dict[str, str] = {
    "open": N_("Open"),
    "won": N_("Won (closes the deal)"),
    "lost": N_("Lost (closes the deal)"),
}
ROLE_LABELS: dict[str, str] = {
    "decision_maker": N_("Decision maker"),
    "champion": N_("Champion"),
    "influencer": N_("Influencer"),
    "economic_buyer": N_("Economic buyer"),
    "user": N_("User"),
    "other": N_("Other"),
}
CATEGORY_LABELS: dict[str, str] = {
    "commit": N_("Commit"),
    "best_case": N_("Best case"),
    "pipeline": N_("Pipeline"),
    "omitted": N_("Omitted"),
}
#: What a stage can require, as people read it.
REQUIREMENT_LABELS: dict[str, str] = {
    "amount": N_("Amount"),
    "expected_close_date": N_("Expected close date"),
    "company_id": N_("Company"),
    "contacts": N_("At least one contact"),
    "owner_id": N_("Owner"),
    "next_step": N_("Next step"),
    "close_note": N_("Close note"),
    "lost_reason_id": N_("Lost reason"),
}
#: Service messages the UI shows, in the visitor's language.
SERVICE_MESSAGES = (
    N_("cannot be empty"),
    N_("no such pipeline"),
    N_("no such stage"),
    N_("no such contact"),
    N_("no such lost reason"),
    N_("listed twice"),
    N_("the pipeline is archived"),
    N_("the lost reason is no longer in use"),
    N_("is before the day the deal was created"),
    N_("there is no pipeline yet; create one first"),
    N_("another stage has this name"),
    N_("already in use"),
    N_("a won stage is 100 %"),
    N_("a lost stage is 0 %"),
    N_("a pipeline needs at least one open stage"),
    N_("a pipeline needs at least one won stage"),
    N_("a pipeline needs at least one lost stage"),
    N_("the default pipeline cannot be archived"),
    N_("one pipeline is always the default"),
    N_("cannot change the kind of a stage with deals"),
    N_("the stage has deals"),
    N_("the stage is in deals' history"),
)
assert SERVICE_MESSAGES
ERROR_FIELDS = {"company_id": "company", "pipeline_id": "stage_id", "probability": "probability"}
#: Form fields a move asks for, by the deal field a stage requires.
MOVE_FIELDS = REQUIRED_FIELDS

register_flash_messages(
    {
        "deal_created": N_("Deal created."),
        "deal_saved": N_("Changes saved."),
        "deal_deleted": N_("Deal deleted."),
        "deal_moved": N_("Deal moved."),
        "pipeline_created": N_("Pipeline created."),
        "pipeline_saved": N_("Pipeline saved."),
        "pipeline_deleted": N_("Pipeline deleted."),
        "lost_reasons_saved": N_("Lost reasons saved."),
    }
)

Text = Annotated[str, Query(max_length=200)]


# ----------------------------------------------------------------------------- helpers


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(tuple(p for p in e["loc"] if p != "body"), e["msg"], e["type"])
        for e in exc.errors()
    ]


def error_text(ui: Ui, error: FieldError) -> str:
    """A service error as the visitor reads it."""
    if error.type == "missing":
        return ui.gettext("Needed to enter this stage.")
    if error.type == "currency_scale":
        return ui.gettext("Too many decimal places for this currency.")
    if error.msg.endswith("is not an ISO 4217 currency"):
        return ui.gettext("Not a currency code.")
    if "stage of another pipeline" in error.msg:
        return ui.gettext("That stage belongs to another pipeline.")
    return ui.gettext(error.msg)


def translated_errors(ui: Ui, errors: list[FieldError]) -> dict[str, list[str]]:
    """Field errors by form field (contacts by their row's email field)."""
    by_field: dict[str, list[str]] = {}
    for error in errors:
        [(name, _)] = field_errors([error], ERROR_FIELDS).items()
        if name.startswith("tags-"):
            name = "tags"
        name = re.sub(r"^contacts-(\d+)-contact_id$", r"contacts-\1-email", name)
        name = re.sub(r"^contacts-(\d+)-role$", r"contacts-\1-role", name)
        by_field.setdefault(name, []).append(error_text(ui, error))
    return by_field


def duration_text(ui: Ui, seconds: int) -> str:
    """``3 d 4 h``, ``5 h 20 min`` or ``12 min``."""
    days, rest = divmod(max(0, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return ui.gettext("%(days)s d %(hours)s h", days=days, hours=hours)
    if hours:
        return ui.gettext("%(hours)s h %(minutes)s min", hours=hours, minutes=minutes)
    return ui.gettext("%(minutes)s min", minutes=minutes)


def _users(session: Session, ids: set[int]) -> dict[int, UserRead]:
    return auth_service.users_by_id(session, {i for i in ids if i})


def _pipelines(session: Session, ui: Ui, also: int | None = None) -> list[PipelineRead]:
    """Pipelines in use, and the one a deal is in even if archived."""
    found = service.list_pipelines(session, ui.actor)
    if also is not None and all(p.id != also for p in found):
        found.append(service.get_pipeline(session, also, ui.actor))
    return found


def _int(value: str) -> int | None:
    return int(value) if value.isdigit() and len(value) < 19 else None


# ----------------------------------------------------------------------------- list


@dataclass
class ListParams:
    """The list's search, filters and sort, as they appear in the URL."""

    q: str = ""
    pipeline: str = ""
    stage: str = ""
    owner: str = ""
    status: str = ""
    close_from: str = ""
    close_to: str = ""
    sort: str = "-id"
    company: str = ""

    def as_query(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "q": self.q,
            "pipeline": self.pipeline,
            "stage": self.stage,
            "owner": self.owner,
            "status": self.status,
            "close_from": self.close_from,
            "close_to": self.close_to,
            "company": self.company,
        }
        if self.sort != "-id":
            values["sort"] = self.sort
        return values


SORTABLE = ("name", "amount", "expected_close_date", "updated_at")


def list_filters(params: ListParams, ui: Ui) -> list[str]:
    """The service filters the list's controls stand for (bad values are left out)."""
    filters: list[str] = []
    if (pipeline := _int(params.pipeline)) is not None:
        filters.append(f"pipeline_id:eq:{pipeline}")
    if (stage := _int(params.stage)) is not None:
        filters.append(f"stage_id:eq:{stage}")
    if params.owner == "me":
        filters.append(f"owner_id:eq:{ui.user.id}")
    elif params.owner == "none":
        filters.append("owner_id:is_null:true")
    elif (owner := _int(params.owner)) is not None:
        filters.append(f"owner_id:eq:{owner}")
    if params.status in STATUS_LABELS:
        filters.append(f"status:eq:{params.status}")
    if (company := _int(params.company)) is not None:
        filters.append(f"company_id:eq:{company}")
    for bound, op in ((params.close_from, "gte"), (params.close_to, "lte")):
        with contextlib.suppress(ValueError):
            filters.append(f"expected_close_date:{op}:{date.fromisoformat(bound).isoformat()}")
    return filters


def _sort_links(params: ListParams) -> dict[str, dict[str, str]]:
    links: dict[str, dict[str, str]] = {}
    for name in SORTABLE:
        if params.sort == name:
            links[name] = {"next": f"-{name}", "direction": "ascending"}
        elif params.sort == f"-{name}":
            links[name] = {"next": name, "direction": "descending"}
        else:
            links[name] = {"next": name, "direction": "none"}
    return links


@router.get("/deals")
def deal_list(
    ui: SignedIn,
    session: DbSession,
    q: Text = "",
    pipeline: Text = "",
    stage: Text = "",
    owner: Text = "",
    status: Text = "",
    close_from: Text = "",
    close_to: Text = "",
    sort: Annotated[str, Query(max_length=60)] = "-id",
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
    company: Text = "",
) -> Response:
    """The deal list; HTMX asks for just the results or just the next rows."""
    if sort.lstrip("-") not in SORTABLE:
        sort = "-id"
    params = ListParams(
        q.strip(), pipeline, stage, owner, status, close_from, close_to, sort, company
    )
    page = service.list_deals(
        session,
        ui.actor,
        filters=list_filters(params, ui),
        sort=sort,
        cursor=cursor,
        limit=PAGE_SIZE,
        q=params.q or None,
    )
    context: dict[str, Any] = {
        "page": page,
        "params": params,
        "query": params.as_query(),
        "owners": _users(session, {d.owner_id for d in page.items if d.owner_id}),
        "sort_links": _sort_links(params),
        "statuses": STATUS_LABELS,
    }
    if ui.htmx_target == "load-more":
        return ui.render("deals/_rows.html", context)
    if ui.htmx_target == "results":
        ui.extra_headers["HX-Push-Url"] = "/deals" + query_string(params.as_query())
        return ui.render("deals/_results.html", context)
    context["owner_choices"] = auth_service.list_users(session, include_inactive=False)
    context["pipelines"] = service.list_pipelines(session, ui.actor, include_archived=True)
    context["default_pipeline"] = service.default_pipeline(session, ui.actor)
    return ui.render("deals/list.html", context)


@router.get("/deals/board")
def default_board(ui: SignedIn, session: DbSession) -> Response:
    """The default pipeline's board (or the pipeline settings when there is none yet)."""
    pipeline = service.default_pipeline(session, ui.actor)
    return ui.redirect(f"/pipelines/{pipeline.id}/board" if pipeline else "/pipelines")


@router.get("/deals/_for-company/{company_id}")
def company_deals(ui: SignedIn, session: DbSession, company_id: int) -> Response:
    """The deals of one company (a panel on the company's page)."""
    page = service.deals_of_company(session, company_id, ui.actor)
    return ui.render(
        "deals/_for_record.html",
        {
            "deals": page.items,
            "more": page.next_cursor is not None,
            "list_link": "/deals" + query_string({}, company=company_id),
            "new_link": "/deals/new" + query_string({}, company_id=company_id),
            "statuses": STATUS_LABELS,
        },
    )


@router.get("/deals/_for-contact/{contact_id}")
def contact_deals(ui: SignedIn, session: DbSession, contact_id: int) -> Response:
    """The deals a contact takes part in (a panel on the contact's page)."""
    found = service.deals_of_contact(session, contact_id, ui.actor)
    return ui.render(
        "deals/_for_record.html",
        {
            "deals": found,
            "more": False,
            "list_link": None,
            "new_link": "/deals/new" + query_string({}, contact_id=contact_id),
            "statuses": STATUS_LABELS,
        },
    )


# ----------------------------------------------------------------------------- forms


@dataclass
class DealForm:
    """What the form shows: the values as typed, and the errors next to each field."""

    values: dict[str, Any] = field(default_factory=dict)
    contacts: list[dict[str, str]] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    version: int | None = None
    stale: bool = False


def _contact_rows(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows the form shows: those filled, and empty ones up to ``CONTACT_ROWS``."""
    shown = [r for r in rows if r.get("email")]
    wanted = max(CONTACT_ROWS, len(shown) + 1)
    return shown + [{"email": "", "role": ""} for _ in range(wanted - len(shown))]


def form_from_deal(
    session: Session, ui: Ui, deal: DealRead | None, start: dict[str, Any] | None = None
) -> DealForm:
    """The form filled from a deal (or, for a new one, from ``start``)."""
    if deal is None:
        start = dict(start or {})
        rows: list[dict[str, str]] = start.pop("contacts", [])
        initial = {"owner_id": str(ui.user.id), "currency": ui.settings.base_currency, **start}
        return DealForm(values=initial, contacts=_contact_rows(rows))
    details = {d.contact_id: d for d in service.deal_contacts(session, deal.id, ui.actor)}
    values: dict[str, Any] = {
        "name": deal.name,
        "amount": "" if deal.amount is None else str(deal.amount),
        "currency": deal.currency,
        "stage_id": str(deal.stage_id),
        "owner_id": str(deal.owner_id or ""),
        "company": deal.company.name if deal.company else "",
        "expected_close_date": deal.expected_close_date.isoformat()
        if deal.expected_close_date
        else "",
        "probability": "" if deal.probability_override is None else str(deal.probability_override),
        "forecast_category": deal.forecast_category_override or "",
        "next_step": deal.next_step,
        "next_step_due": deal.next_step_due.isoformat() if deal.next_step_due else "",
        "lost_reason_id": str(deal.lost_reason_id or ""),
        "close_note": deal.close_note,
        "source": deal.source or "",
        "tags": ", ".join(deal.tags),
        "external_id": deal.external_id or "",
    }
    rows = [
        {"email": details[c.contact_id].email or f"#{c.contact_id}", "role": c.role or ""}
        for c in deal.contacts
        if c.contact_id in details
    ]
    return DealForm(
        values=values,
        contacts=_contact_rows(rows),
        custom=dict(deal.custom),
        version=deal.version,
    )


def _company_id(ui: Ui, session: Session, typed: str, errors: list[FieldError]) -> int | None:
    """The company a name (or ``#id``) stands for."""
    if not typed:
        return None
    if typed.lstrip("#").isdigit() and len(typed) < 19:
        return int(typed.lstrip("#"))
    matches = companies.list_companies(session, ui.actor, q=typed, sort="name", limit=50).items
    exact = [c for c in matches if fold(c.name) == fold(typed)]
    if len(exact) == 1:
        return exact[0].id
    errors.append(
        FieldError(
            ("company",),
            N_("No single company has this name.")
            if not exact
            else N_("Several companies have this name; type #id."),
        )
    )
    return None


def _contact_links(
    ui: Ui, session: Session, form: FormData, errors: list[FieldError]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The contacts the rows name (by email, or ``#id``), and the rows as typed."""
    indexes = sorted(
        {
            int(m.group(1))
            for name in form
            if (m := re.fullmatch(r"contacts-(\d{1,2})-email", name)) is not None
        }
    )
    links: list[dict[str, Any]] = []
    rows: list[dict[str, str]] = []
    for index in indexes:
        typed = form_text(form, f"contacts-{index}-email", 320)
        role = form_text(form, f"contacts-{index}-role", 30)
        if not typed:
            continue
        position = len(rows)
        rows.append({"email": typed, "role": role})
        contact_id: int | None = None
        if typed.lstrip("#").isdigit() and len(typed) < 19:
            contact_id = int(typed.lstrip("#"))
        else:
            found = contacts.find_contact_by_email(session, typed, ui.actor)
            contact_id = found.id if found else None
        if contact_id is None:
            errors.append(
                FieldError(("contacts", position, "email"), N_("No contact has this email."))
            )
            continue
        links.append({"contact_id": contact_id, "role": role if role in CONTACT_ROLES else None})
    return links, rows


def _stage_pipeline(pipelines: list[PipelineRead], stage_id: int | None) -> int | None:
    for pipeline in pipelines:
        if any(s.id == stage_id for s in pipeline.stages):
            return pipeline.id
    return None


def _amount(raw: str, errors: list[FieldError]) -> Decimal | None:
    if not raw:
        return None
    try:
        return Decimal(raw.replace(",", "").replace("，", ""))
    except InvalidOperation:
        errors.append(FieldError(("amount",), N_("Not a number.")))
        return None


def _date(raw: str, name: str, errors: list[FieldError]) -> str | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw).isoformat()
    except ValueError:
        errors.append(FieldError((name,), N_("Not a date.")))
        return None


def deal_record(
    ui: Ui,
    session: Session,
    form: FormData,
    fields: list[CustomFieldRead],
    existing: DealRead | None,
    pipelines: list[PipelineRead],
    errors: list[FieldError],
) -> tuple[dict[str, Any], DealForm]:
    """The service record a submitted deal form stands for, and the form to show it again."""
    typed = {
        name: form_text(form, name, 5000)
        for name in (
            "name",
            "amount",
            "currency",
            "stage_id",
            "owner_id",
            "company",
            "expected_close_date",
            "probability",
            "forecast_category",
            "next_step",
            "next_step_due",
            "lost_reason_id",
            "close_note",
            "source",
            "tags",
            "external_id",
        )
    }
    record: dict[str, Any] = {
        "name": typed["name"],
        "amount": _amount(typed["amount"], errors),
        "currency": typed["currency"] or ui.settings.base_currency,
        "owner_id": _int(typed["owner_id"]),
        "company_id": _company_id(ui, session, typed["company"], errors),
        "expected_close_date": _date(typed["expected_close_date"], "expected_close_date", errors),
        "probability": _int(typed["probability"]) if typed["probability"] else None,
        "forecast_category": typed["forecast_category"] or None,
        "next_step": typed["next_step"][:500],
        "next_step_due": _date(typed["next_step_due"], "next_step_due", errors),
        "lost_reason_id": _int(typed["lost_reason_id"]),
        "close_note": typed["close_note"],
        "source": typed["source"][:100] or None,
        "tags": [t.strip() for t in re.split(r"[,、，]", typed["tags"]) if t.strip()],
        "external_id": typed["external_id"][:200] or None,
    }
    if typed["probability"] and record["probability"] is None:
        errors.append(FieldError(("probability",), N_("Not a number.")))
    if typed["forecast_category"] and typed["forecast_category"] not in FORECAST_CATEGORIES:
        record["forecast_category"] = None
    stage_id = _int(typed["stage_id"])
    if stage_id is not None:
        record["stage_id"] = stage_id
        pipeline_id = _stage_pipeline(pipelines, stage_id)
        if pipeline_id is not None and (existing is None or pipeline_id != existing.pipeline_id):
            record["pipeline_id"] = pipeline_id
    links, rows = _contact_links(ui, session, form, errors)
    record["contacts"] = links
    record["custom"] = custom_values_from_form(form, fields, existing.custom if existing else None)
    shown = DealForm(
        values=typed,
        contacts=_contact_rows(rows),
        custom={k: v for k, v in record["custom"].items() if v is not None},
    )
    version = form_text(form, "version", 20)
    shown.version = int(version) if version.isdigit() and len(version) < 10 else None
    return record, shown


def _render_form(
    ui: Ui,
    session: Session,
    deal: DealRead | None,
    form: DealForm,
    status_code: int = 200,
) -> Response:
    pipelines = _pipelines(session, ui, deal.pipeline_id if deal else None)
    reasons = service.list_lost_reasons(session, ui.actor, include_inactive=deal is not None)
    currencies = list(CURRENCIES)
    for code in (form.values.get("currency"), ui.settings.base_currency):
        if code and code not in currencies:
            currencies.insert(0, code)
    return ui.render(
        "deals/form.html",
        {
            "deal": deal,
            "form": form,
            "pipelines": pipelines,
            "fields": service.deal_custom_fields(session),
            "owner_choices": auth_service.list_users(session, include_inactive=False),
            "labels": FIELD_LABELS,
            "roles": ROLE_LABELS,
            "categories": CATEGORY_LABELS,
            "currencies": {c: c for c in currencies},
            "reasons": {str(r.id): r.name for r in reasons},
        },
        status_code=status_code,
    )


@router.get("/deals/new")
def new_deal(
    ui: SignedIn,
    session: DbSession,
    company_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    contact_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    stage: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Response:
    """An empty form for a new deal (for a company or a contact when asked)."""
    start: dict[str, Any] = {}
    if company_id is not None:
        company = companies.company_for_display(session, company_id)
        start["company"] = company.name if company else ""
    if contact_id is not None:
        try:
            person = contacts.get_contact(session, contact_id, ui.actor)
        except NotFound:
            person = None
        if person is not None:
            start["contacts"] = [{"email": person.primary_email or f"#{person.id}", "role": ""}]
            if person.company and "company" not in start:
                start["company"] = person.company.name
    if stage is not None:
        start["stage_id"] = str(stage)
    return _render_form(ui, session, None, form_from_deal(session, ui, None, start))


@router.post("/deals/new")
def create_deal(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """Create the deal, or show the form again with each problem next to its field."""
    fields = service.deal_custom_fields(session)
    pipelines = _pipelines(session, ui)
    problems: list[FieldError] = []
    record, shown = deal_record(ui, session, form, fields, None, pipelines, problems)
    try:
        data = DealCreate.model_validate(record)
        if problems:
            raise ValidationFailed("The deal has invalid fields.", problems)
        created = service.create_deal(session, data, ui.actor)
    except ValidationError as exc:
        shown.errors = translated_errors(ui, problems + _pydantic_errors(exc))
        return _render_form(ui, session, None, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = translated_errors(ui, exc.errors)
        return _render_form(ui, session, None, shown, exc.status)
    return ui.redirect(f"/deals/{created.id}", flash="deal_created")


def _history_formatter(
    ui: Ui, session: Session, deal: DealRead, fields: list[CustomFieldRead], entries: list[Any]
) -> ChangeFormatter:
    user_ids: set[int] = {deal.owner_id} if deal.owner_id else set()
    company_ids: set[int] = set()
    stage_ids: set[int] = set()
    pipeline_ids: set[int] = set()
    reason_ids: set[int] = set()
    contact_ids: set[int] = set()
    for entry in entries:
        for links in entry.changes.get("contacts", []):
            contact_ids.update(link["contact_id"] for link in links or [] if isinstance(link, dict))
        for name, ids in (
            ("owner_id", user_ids),
            ("company_id", company_ids),
            ("stage_id", stage_ids),
            ("pipeline_id", pipeline_ids),
            ("lost_reason_id", reason_ids),
        ):
            ids.update(v for v in entry.changes.get(name, []) if isinstance(v, int))
    pipelines = {p.id: p for p in service.list_pipelines(session, ui.actor, include_archived=True)}
    stage_names = {s.id: s.name for p in pipelines.values() for s in p.stages}
    names = contacts.contact_names(session, contact_ids)

    def people(links: Any) -> str:
        shown = []
        for link in links if isinstance(links, list) else []:
            who = names.get(link.get("contact_id")) or f"#{link.get('contact_id')}"
            role = link.get("role")
            shown.append(f"{who} ({ui.gettext(ROLE_LABELS[role])})" if role in ROLE_LABELS else who)
        return ", ".join(shown) or "—"

    def number(value: Any) -> str:
        try:
            return str(format_decimal(Decimal(str(value)), locale=ui.locale))
        except InvalidOperation:
            return str(value)

    return ChangeFormatter(
        ui,
        FIELD_LABELS,
        fields,
        {
            "owner_id": {i: u.name for i, u in _users(session, user_ids).items()},
            "company_id": {
                i: r.name for i, r in companies.company_refs(session, company_ids).items()
            },
            "stage_id": stage_names,
            "pipeline_id": {i: p.name for i, p in pipelines.items()},
            "lost_reason_id": service.lost_reason_names(session, reason_ids),
            "status": STATUS_LABELS,
            "forecast_category": CATEGORY_LABELS,
        },
        translated=("status", "forecast_category"),
        formats={"contacts": people, "amount": number},
    )


@router.get("/deals/{deal_id}")
def deal_detail(ui: SignedIn, session: DbSession, deal_id: int) -> Response:
    """Everything about one deal: fields, contacts with roles, stage history, timeline."""
    deal = service.get_deal(session, deal_id, ui.actor)
    fields = service.deal_custom_fields(session)
    history = service.stage_history(session, deal_id, ui.actor)
    audit = record_history(session, "deals", deal_id, limit=200) if ui.can("audit") else []
    # A card's place on the board is kept in the log, but says nothing to a reader.
    audit = [
        entry.model_copy(
            update={"changes": {k: v for k, v in entry.changes.items() if k != "board_position"}}
        )
        for entry in audit
        if set(entry.changes) != {"board_position"}
    ]
    pipeline = service.get_pipeline(session, deal.pipeline_id, ui.actor)
    users = _users(session, {deal.owner_id or 0})
    return ui.render(
        "deals/detail.html",
        {
            "deal": deal,
            "pipeline": pipeline,
            "owner": users.get(deal.owner_id) if deal.owner_id else None,
            "people": service.deal_contacts(session, deal_id, ui.actor),
            "stage_history": [
                (change, duration_text(ui, change.seconds_in_stage)) for change in reversed(history)
            ],
            "lost_reason": service.lost_reason_names(
                session, [deal.lost_reason_id] if deal.lost_reason_id else []
            ).get(deal.lost_reason_id or 0),
            "fields": fields,
            "labels": FIELD_LABELS,
            "roles": ROLE_LABELS,
            "statuses": STATUS_LABELS,
            "categories": CATEGORY_LABELS,
            "history": history_rows(_history_formatter(ui, session, deal, fields, audit), audit),
        },
    )


@router.get("/deals/{deal_id}/edit")
def edit_deal(ui: SignedIn, session: DbSession, deal_id: int) -> Response:
    """The deal's form, holding the version it was read at."""
    deal = service.get_deal(session, deal_id, ui.actor)
    return _render_form(ui, session, deal, form_from_deal(session, ui, deal))


@router.post("/deals/{deal_id}/edit")
def update_deal(ui: SignedIn, session: DbSession, form: Form, deal_id: int) -> Response:
    """Save the changes unless someone else saved theirs since the form was opened."""
    deal = service.get_deal(session, deal_id, ui.actor)
    fields = service.deal_custom_fields(session)
    pipelines = _pipelines(session, ui, deal.pipeline_id)
    problems: list[FieldError] = []
    record, shown = deal_record(ui, session, form, fields, deal, pipelines, problems)
    try:
        data = DealUpdate.model_validate(record)
        if problems:
            raise ValidationFailed("The deal has invalid fields.", problems)
        service.update_deal(session, deal_id, data, ui.actor, if_version=shown.version)
    except ValidationError as exc:
        shown.errors = translated_errors(ui, problems + _pydantic_errors(exc))
        return _render_form(ui, session, deal, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = translated_errors(ui, exc.errors)
        return _render_form(ui, session, deal, shown, exc.status)
    except PreconditionFailed:
        shown.stale = True
        return _render_form(ui, session, deal, shown, 409)
    return ui.redirect(f"/deals/{deal_id}", flash="deal_saved")


@router.get("/deals/{deal_id}/delete")
def confirm_delete(ui: SignedIn, session: DbSession, deal_id: int) -> Response:
    """Ask before deleting."""
    deal = service.get_deal(session, deal_id, ui.actor)
    return ui.render("deals/delete.html", {"deal": deal, "stale": False})


@router.post("/deals/{deal_id}/delete")
def delete_deal(ui: SignedIn, session: DbSession, form: Form, deal_id: int) -> Response:
    """Delete the deal as it was shown."""
    version = form_text(form, "version", 20)
    try:
        service.delete_deal(
            session,
            deal_id,
            ui.actor,
            if_version=int(version) if version.isdigit() and len(version) < 10 else None,
        )
    except PreconditionFailed:
        deal = service.get_deal(session, deal_id, ui.actor)
        return ui.render("deals/delete.html", {"deal": deal, "stale": True}, 409)
    except NotFound:
        pass  # already gone: a second click of the same button
    return ui.redirect("/deals", flash="deal_deleted")


# ----------------------------------------------------------------------------- moves


def _move_values(
    ui: Ui, session: Session, form: FormData, errors: list[FieldError]
) -> dict[str, Any]:
    """The required fields a move form filled in (only those it sent)."""
    values: dict[str, Any] = {}
    if "amount" in form:
        values["amount"] = _amount(form_text(form, "amount", 40), errors)
        if form_text(form, "currency", 3):
            values["currency"] = form_text(form, "currency", 3)
    if "expected_close_date" in form:
        values["expected_close_date"] = _date(
            form_text(form, "expected_close_date", 20), "expected_close_date", errors
        )
    if "company" in form:
        values["company_id"] = _company_id(ui, session, form_text(form, "company", 300), errors)
    if "owner_id" in form:
        values["owner_id"] = _int(form_text(form, "owner_id", 20))
    for name in ("next_step", "close_note"):
        if name in form:
            values[name] = form_text(form, name, 5000)
    if "lost_reason_id" in form:
        values["lost_reason_id"] = _int(form_text(form, "lost_reason_id", 20))
    if "contacts-0-email" in form:
        links, _rows = _contact_links(ui, session, form, errors)
        values["contacts"] = links
    return {k: v for k, v in values.items() if v is not None and v != ""}


def _board_response(ui: Ui, session: Session, pipeline_id: int, owner: str) -> Response:
    return ui.render("deals/_board.html", _board_context(ui, session, pipeline_id, owner))


def _move_form(
    ui: Ui,
    session: Session,
    deal: DealRead,
    stage_id: int,
    form: FormData,
    errors: list[FieldError],
    *,
    board: bool,
    stale: bool = False,
    status_code: int = 422,
) -> Response:
    """The form for the fields a stage still needs (or the problems of the move)."""
    stage = None
    for pipeline in service.list_pipelines(session, ui.actor, include_archived=True):
        stage = next((s for s in pipeline.stages if s.id == stage_id), stage)
    # Each field the stage needs, or that was filled in and refused, is asked (again).
    needed: list[str] = []
    for error in errors:
        head = str(error.loc[0]) if error.loc else ""
        head = {"company": "company_id", "currency": "amount"}.get(head, head)
        if head in MOVE_FIELDS and head not in needed:
            needed.append(head)
    messages = translated_errors(ui, errors)
    if "currency" in messages:
        messages.setdefault("amount", []).extend(messages.pop("currency"))
    asked = {"company" if n == "company_id" else n for n in needed}
    summary = [
        text
        for name, texts in messages.items()
        if name.split("-")[0] not in asked
        for text in texts
    ]
    reasons = service.list_lost_reasons(session, ui.actor)
    values = {k: form_text(form, k, 5000) for k in form if isinstance(form.get(k), str)}
    values.setdefault("currency", deal.currency)
    if deal.amount is not None:
        values.setdefault("amount", str(deal.amount))
    return ui.render(
        "deals/_move_form.html" if board else "deals/move.html",
        {
            "deal": deal,
            "stage": stage,
            "needed": needed,
            "errors": messages,
            "summary": summary,
            "stale": stale,
            "values": values,
            "board_position": form_text(form, "board_position", 40),
            "owner": form_text(form, "owner", 20),
            "labels": REQUIREMENT_LABELS,
            "roles": ROLE_LABELS,
            "reasons": {str(r.id): r.name for r in reasons},
            "owner_choices": auth_service.list_users(session, include_inactive=False),
            "currencies": {c: c for c in dict.fromkeys([deal.currency, *CURRENCIES])},
        },
        status_code=status_code,
    )


@router.post("/deals/{deal_id}/move")
def move_deal(ui: SignedIn, session: DbSession, form: Form, deal_id: int) -> Response:
    """Move a deal to a stage: from the board (``X-Board``: answers with the board, or with a
    form for the fields the stage needs) or from the deal's page."""
    board = ui.request.headers.get("x-board") == "1"
    deal = service.get_deal(session, deal_id, ui.actor)
    stage_id = _int(form_text(form, "stage_id", 20))
    if stage_id is None:
        raise NotFound("No stage was chosen.")
    position_text = form_text(form, "board_position", 40)
    try:
        position: float | None = float(position_text) if position_text else None
    except ValueError:
        position = None
    if position is not None and not -1e15 <= position <= 1e15:
        position = None
    version = form_text(form, "version", 20)
    errors: list[FieldError] = []
    values = _move_values(ui, session, form, errors)
    try:
        fields = DealUpdate.model_validate(values)
        if errors:
            raise ValidationFailed("The deal has invalid fields.", errors)
        service.move_deal(
            session,
            deal_id,
            stage_id,
            ui.actor,
            board_position=position,
            if_version=int(version) if version.isdigit() and len(version) < 10 else None,
            fields=fields,
        )
    except ValidationError as exc:
        return _move_form(
            ui, session, deal, stage_id, form, errors + _pydantic_errors(exc), board=board
        )
    except ValidationFailed as exc:
        return _move_form(ui, session, deal, stage_id, form, exc.errors, board=board)
    except PreconditionFailed:
        return _move_form(
            ui, session, deal, stage_id, form, [], board=board, stale=True, status_code=409
        )
    if board:
        return _board_response(ui, session, deal.pipeline_id, form_text(form, "owner", 20))
    return ui.redirect(f"/deals/{deal_id}", flash="deal_moved")


# ----------------------------------------------------------------------------- the board


def _board_context(ui: Ui, session: Session, pipeline_id: int, owner: str) -> dict[str, Any]:
    owner_id = ui.user.id if owner == "me" else _int(owner)
    board = service.kanban(session, pipeline_id, ui.actor, owner_id=owner_id)
    return {
        "board": board,
        "owner": owner if owner_id is not None else "",
        "requirements": REQUIREMENT_LABELS,
    }


@router.get("/pipelines/{pipeline_id}/board")
def pipeline_board(
    ui: SignedIn, session: DbSession, pipeline_id: int, owner: Text = ""
) -> Response:
    """A pipeline's kanban: drag a card to another column to move the deal."""
    context = _board_context(ui, session, pipeline_id, owner)
    if ui.htmx_target == "board":
        return ui.render("deals/_board.html", context)
    context["pipelines"] = service.list_pipelines(session, ui.actor)
    context["owner_choices"] = auth_service.list_users(session, include_inactive=False)
    return ui.render("deals/board.html", context)


# ----------------------------------------------------------------------------- pipelines


@dataclass
class SettingsForm:
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    stale: bool = False


def _render_pipelines(
    ui: Ui, session: Session, form: SettingsForm | None = None, status_code: int = 200
) -> Response:
    can_edit = ui.can("pipelines", "write")
    return ui.render(
        "deals/pipelines.html",
        {
            "pipelines": service.list_pipelines(session, ui.actor, include_archived=True),
            "reasons": service.list_lost_reasons(session, ui.actor, include_inactive=can_edit),
            "form": form or SettingsForm(),
            "can_edit": can_edit,
        },
        status_code=status_code,
    )


@router.get("/pipelines")
def pipeline_list(ui: SignedIn, session: DbSession) -> Response:
    """The pipelines and lost reasons; admins and managers change them here."""
    return _render_pipelines(ui, session)


def _checked(form: FormData, name: str) -> bool:
    return form.get(name) is not None


@router.post("/pipelines/new")
def create_pipeline(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """A pipeline with the standard stages, to edit next."""
    values = {"name": form_text(form, "name", 300), "is_default": _checked(form, "is_default")}
    try:
        created = service.create_pipeline(session, PipelineCreate.model_validate(values), ui.actor)
    except ValidationError as exc:
        shown = SettingsForm(values, translated_errors(ui, _pydantic_errors(exc)))
        return _render_pipelines(ui, session, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        return _render_pipelines(
            ui, session, SettingsForm(values, translated_errors(ui, exc.errors)), exc.status
        )
    return ui.redirect(f"/pipelines/{created.id}/edit", flash="pipeline_created")


@router.post("/pipelines/lost-reasons")
def add_lost_reason(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """Add a lost reason."""
    values = {"reason": form_text(form, "reason", 300)}
    try:
        service.create_lost_reason(
            session, LostReasonCreate.model_validate({"name": values["reason"]}), ui.actor
        )
    except ValidationError as exc:
        errors = [FieldError(("reason",), e.msg, e.type) for e in _pydantic_errors(exc)]
        return _render_pipelines(
            ui, session, SettingsForm(values, translated_errors(ui, errors)), 422
        )
    except Conflict as exc:
        errors = [FieldError(("reason",), e.msg, e.type) for e in exc.errors]
        return _render_pipelines(
            ui, session, SettingsForm(values, translated_errors(ui, errors)), 409
        )
    return ui.redirect("/pipelines", flash="lost_reasons_saved")


@router.post("/pipelines/lost-reasons/{reason_id}")
def change_lost_reason(ui: SignedIn, session: DbSession, form: Form, reason_id: int) -> Response:
    """Turn a lost reason off (it stays on deals lost for it) or on again."""
    service.update_lost_reason(
        session, reason_id, LostReasonUpdate(active=form_text(form, "active", 5) == "1"), ui.actor
    )
    return ui.redirect("/pipelines", flash="lost_reasons_saved")


def _render_pipeline_form(
    ui: Ui,
    session: Session,
    pipeline: PipelineRead,
    form: SettingsForm | None = None,
    stage_errors: dict[int | str, dict[str, Any]] | None = None,
    status_code: int = 200,
) -> Response:
    return ui.render(
        "deals/pipeline_form.html",
        {
            "pipeline": pipeline,
            "form": form
            or SettingsForm(
                {
                    "name": pipeline.name,
                    "is_default": pipeline.is_default,
                    "archived": pipeline.archived,
                }
            ),
            "stage_errors": stage_errors or {},
            "kinds": KIND_LABELS,
            "requirements": REQUIREMENT_LABELS,
        },
        status_code=status_code,
    )


@router.get("/pipelines/{pipeline_id}/edit")
def edit_pipeline(ui: SignedIn, session: DbSession, pipeline_id: int) -> Response:
    """A pipeline's name, flags and stages."""
    return _render_pipeline_form(ui, session, service.get_pipeline(session, pipeline_id, ui.actor))


@router.post("/pipelines/{pipeline_id}/edit")
def update_pipeline(ui: SignedIn, session: DbSession, form: Form, pipeline_id: int) -> Response:
    """Save the pipeline's name, default and archived flags."""
    pipeline = service.get_pipeline(session, pipeline_id, ui.actor)
    values: dict[str, Any] = {
        "name": form_text(form, "name", 300),
        "is_default": _checked(form, "is_default") or pipeline.is_default,
        "archived": _checked(form, "archived"),
    }
    version = form_text(form, "version", 20)
    shown = SettingsForm(dict(values))
    try:
        service.update_pipeline(
            session,
            pipeline_id,
            PipelineUpdate.model_validate(values),
            ui.actor,
            if_version=int(version) if version.isdigit() and len(version) < 10 else None,
        )
    except ValidationError as exc:
        shown.errors = translated_errors(ui, _pydantic_errors(exc))
        return _render_pipeline_form(ui, session, pipeline, shown, status_code=422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = translated_errors(ui, exc.errors)
        return _render_pipeline_form(ui, session, pipeline, shown, status_code=exc.status)
    except PreconditionFailed:
        shown.stale = True
        return _render_pipeline_form(ui, session, pipeline, shown, status_code=409)
    return ui.redirect(f"/pipelines/{pipeline_id}/edit", flash="pipeline_saved")


@router.post("/pipelines/{pipeline_id}/delete")
def delete_pipeline(ui: SignedIn, session: DbSession, pipeline_id: int) -> Response:
    """Delete a pipeline that never had deals."""
    pipeline = service.get_pipeline(session, pipeline_id, ui.actor)
    try:
        service.delete_pipeline(session, pipeline_id, ui.actor)
    except Conflict as exc:
        shown = SettingsForm(
            {
                "name": pipeline.name,
                "is_default": pipeline.is_default,
                "archived": pipeline.archived,
            },
            {"": [ui.gettext("The pipeline has or had deals; archive it instead.")]},
        )
        return _render_pipeline_form(ui, session, pipeline, shown, status_code=exc.status)
    return ui.redirect("/pipelines", flash="pipeline_deleted")


def _stage_values(form: FormData) -> dict[str, Any]:
    rotting = form_text(form, "rotting_days", 10)
    probability = form_text(form, "probability", 10)
    return {
        "name": form_text(form, "name", 300),
        "probability": int(probability)
        if probability.isdigit() and len(probability) < 6
        else probability,
        "kind": form_text(form, "kind", 10) or "open",
        "required_fields": [
            v
            for v in form.getlist("required_fields")
            if isinstance(v, str) and v in REQUIRED_FIELDS
        ],
        "rotting_days": int(rotting)
        if rotting.isdigit() and len(rotting) < 6
        else (rotting or None),
    }


def _stage_write(
    ui: Ui,
    session: Session,
    pipeline_id: int,
    key: int | str,
    write: Any,
    model: type[BaseModel],
    values: dict[str, Any],
) -> Response:
    """Run a stage change; problems are shown next to that stage's fields."""
    try:
        write(model.model_validate(values))
    except ValidationError as exc:
        errors = _pydantic_errors(exc)
    except IchigenError as exc:
        if exc.status not in (409, 422):
            raise
        errors = exc.errors or [FieldError(("",), exc.detail)]
    else:
        return ui.redirect(f"/pipelines/{pipeline_id}/edit", flash="pipeline_saved")
    pipeline = service.get_pipeline(session, pipeline_id, ui.actor)
    by_field: dict[str, list[str]] = {}
    for error in errors:
        name = str(error.loc[-1]) if error.loc and error.loc[0] != "stages" else ""
        if error.loc and error.loc[0] == "stages" and len(error.loc) > 2:
            name = str(error.loc[-1])
        by_field.setdefault(name, []).append(error_text(ui, error))
    return _render_pipeline_form(
        ui, session, pipeline, stage_errors={key: {"values": values, **by_field}}, status_code=422
    )


@router.post("/pipelines/{pipeline_id}/stages")
def add_stage(ui: SignedIn, session: DbSession, form: Form, pipeline_id: int) -> Response:
    """Add a stage (after the last open one)."""
    service.get_pipeline(session, pipeline_id, ui.actor)
    values = _stage_values(form)
    return _stage_write(
        ui,
        session,
        pipeline_id,
        "new",
        lambda data: service.add_stage(session, pipeline_id, data, ui.actor),
        StageCreate,
        values,
    )


@router.post("/pipelines/{pipeline_id}/stages/{stage_id}")
def save_stage(
    ui: SignedIn, session: DbSession, form: Form, pipeline_id: int, stage_id: int
) -> Response:
    """Save one stage's name, probability, kind, required fields and rotting days."""
    values = _stage_values(form)
    version = form_text(form, "version", 20)
    return _stage_write(
        ui,
        session,
        pipeline_id,
        stage_id,
        lambda data: service.update_stage(
            session,
            pipeline_id,
            stage_id,
            data,
            ui.actor,
            if_version=int(version) if version.isdigit() and len(version) < 10 else None,
        ),
        StageUpdate,
        values,
    )


@router.post("/pipelines/{pipeline_id}/stages/{stage_id}/{action}")
def stage_action(
    ui: SignedIn, session: DbSession, pipeline_id: int, stage_id: int, action: str
) -> Response:
    """Move a stage up or down the order, or remove it."""
    try:
        if action in ("up", "down"):
            service.move_stage(
                session, pipeline_id, stage_id, -1 if action == "up" else 1, ui.actor
            )
        elif action == "delete":
            service.delete_stage(session, pipeline_id, stage_id, ui.actor)
        else:
            raise NotFound(f"No such action: {action}.")
    except (Conflict, ValidationFailed) as exc:
        pipeline = service.get_pipeline(session, pipeline_id, ui.actor)
        messages = [error_text(ui, e) for e in exc.errors] or [exc.detail]
        return _render_pipeline_form(
            ui, session, pipeline, stage_errors={stage_id: {"": messages}}, status_code=exc.status
        )
    return ui.redirect(f"/pipelines/{pipeline_id}/edit", flash="pipeline_saved")
