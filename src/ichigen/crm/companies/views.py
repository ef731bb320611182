"""Company pages: the list with search and filters, detail with history, forms."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Query, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from ichigen.auth import service as auth_service
from ichigen.core.audit import record_history
from ichigen.core.custom_fields import CustomFieldRead, fields_by_key
from ichigen.core.errors import (
    Conflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.core.tabular import ImportReport
from ichigen.core.text import fold
from ichigen.crm.companies import imports, service
from ichigen.crm.companies.schemas import CompanyCreate, CompanyRead, CompanyUpdate
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.import_views import ImportFlow, add_import_routes
from ichigen.web.templating import (
    ChangeFormatter,
    Form,
    SignedIn,
    Ui,
    country_names,
    csv_download,
    custom_values_from_form,
    field_errors,
    form_text,
    history_rows,
    query_string,
    register_flash_messages,
    ui_router_for,
)

router = ui_router_for("/companies")
PAGE_SIZE = 50

FIELD_LABELS: dict[str, str] = {
    "name": N_("Company name"),
    "domain": N_("Domain"),
    "website": N_("Website"),
    "industry": N_("Industry"),
    "employees": N_("Employees"),
    "annual_revenue": N_("Annual revenue"),
    "revenue_currency": N_("Currency"),
    "phone": N_("Phone"),
    "street": N_("Street"),
    "city": N_("City"),
    "region": N_("Prefecture / region"),
    "postal_code": N_("Postal code"),
    "country": N_("Country"),
    "description": N_("Description"),
    "owner_id": N_("Owner"),
    "parent_id": N_("Parent company"),
    "tags": N_("Tags"),
    "external_id": N_("External ID"),
}
TEXT_FIELDS = (
    "name",
    "domain",
    "website",
    "industry",
    "employees",
    "annual_revenue",
    "phone",
    "street",
    "city",
    "region",
    "postal_code",
    "external_id",
)
CURRENCIES = ("JPY", "USD", "EUR", "GBP", "CNY", "KRW", "TWD", "SGD", "AUD", "CAD")
SORTABLE = ("name", "domain", "industry", "employees", "updated_at")
DEFAULT_SORT = "name"
ERROR_FIELDS = {"parent_id": "parent"}

register_flash_messages(
    {
        "company_created": N_("Company created."),
        "company_saved": N_("Changes saved."),
        "company_deleted": N_("Company deleted."),
    }
)

Text = Annotated[str, Query(max_length=200)]


# ----------------------------------------------------------------------------- list


@dataclass
class ListParams:
    """The list's search, filters and sort, as they appear in the URL."""

    q: str = ""
    industry: str = ""
    owner: str = ""
    country: str = ""
    tag: str = ""
    sort: str = DEFAULT_SORT

    def as_query(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "q": self.q,
            "industry": self.industry,
            "owner": self.owner,
            "country": self.country,
            "tag": self.tag,
        }
        if self.sort != DEFAULT_SORT:
            values["sort"] = self.sort
        return values


def list_filters(params: ListParams, ui: Ui) -> list[str]:
    """The service filters (``field:op:value``) the list's controls stand for."""
    filters: list[str] = []
    if params.industry:
        filters.append(f"industry:eq:{params.industry}")
    if params.owner == "me":
        filters.append(f"owner_id:eq:{ui.user.id}")
    elif params.owner == "none":
        filters.append("owner_id:is_null:true")
    elif params.owner.isdigit():
        filters.append(f"owner_id:eq:{int(params.owner)}")
    if re.fullmatch(r"[A-Za-z]{2}", params.country):
        filters.append(f"country:eq:{params.country.upper()}")
    if params.tag:
        filters.append(f"tags:contains:{params.tag}")
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


@router.get("")
def company_list(
    ui: SignedIn,
    session: DbSession,
    q: Text = "",
    industry: Text = "",
    owner: Text = "",
    country: Text = "",
    tag: Text = "",
    sort: Annotated[str, Query(max_length=60)] = DEFAULT_SORT,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """The company list; HTMX asks for just the results or just the next rows."""
    if sort.lstrip("-") not in SORTABLE:
        sort = DEFAULT_SORT
    params = ListParams(q.strip(), industry.strip(), owner, country.strip(), tag.strip(), sort)
    page = service.list_companies(
        session,
        ui.actor,
        filters=list_filters(params, ui),
        sort=sort,
        cursor=cursor,
        limit=PAGE_SIZE,
        q=params.q or None,
    )
    context = {
        "page": page,
        "params": params,
        "query": params.as_query(),
        "owners": auth_service.users_by_id(session, {c.owner_id for c in page.items if c.owner_id}),
        "sort_links": _sort_links(params),
    }
    if ui.htmx_target == "load-more":
        return ui.render("companies/_rows.html", context)
    if ui.htmx_target == "results":
        # The address bar shows the search without its empty fields.
        ui.extra_headers["HX-Push-Url"] = "/companies" + query_string(params.as_query())
        return ui.render("companies/_results.html", context)
    context["owner_choices"] = auth_service.list_users(session, include_inactive=False)
    context["countries"] = country_names(ui.locale)
    return ui.render("companies/list.html", context)


@router.get("/export.csv")
def export_companies(
    ui: SignedIn,
    q: Text = "",
    industry: Text = "",
    owner: Text = "",
    country: Text = "",
    tag: Text = "",
) -> Response:
    """The companies the list shows (same search and filters) as CSV, streamed."""
    params = ListParams(q.strip(), industry.strip(), owner, country.strip(), tag.strip())
    filters = list_filters(params, ui)
    return csv_download(
        ui,
        "companies",
        lambda session: imports.companies_csv(
            session, ui.actor, filters=filters, q=params.q or None, bom=True
        ),
    )


@router.get("/_suggest")
def suggest_companies(
    ui: SignedIn, session: DbSession, company: Text = "", parent: Text = ""
) -> Response:
    """``<option>``s of companies whose name starts with what was typed (for datalists)."""
    typed = (company or parent).strip()
    page = (
        service.list_companies(session, ui.actor, q=typed, sort="name", limit=10) if typed else None
    )
    return ui.render("companies/_suggestions.html", {"companies": page.items if page else []})


# ----------------------------------------------------------------------------- import

IMPORT_MODES: dict[str, str] = {
    "upsert": N_("Create new companies and update existing ones"),
    "create": N_("Only create new companies"),
    "update": N_("Only update existing companies"),
}
IMPORT_MATCH: dict[str, str] = {
    "domain": N_("Domain (or website)"),
    "external_id": N_("External ID"),
}


def _import_changes(ui: Ui, session: DbSession, report: ImportReport) -> ChangeFormatter:
    """How a dry run's changes read: field labels, owners and parent companies by name."""
    parents = {
        value
        for item in report.preview
        for value in item.changes.get("parent_id", [])
        if isinstance(value, int)
    }
    return ChangeFormatter(
        ui,
        FIELD_LABELS,
        _custom_fields(session),
        {
            "owner_id": {u.id: u.name for u in auth_service.list_users(session)},
            "parent_id": {i: ref.name for i, ref in service.company_refs(session, parents).items()},
        },
    )


COMPANY_IMPORT = ImportFlow(
    entity="companies",
    base="/companies",
    title=N_("Import companies"),
    list_label=N_("Companies"),
    match_label=N_("Match existing companies on"),
    back_label=N_("Go to the companies"),
    modes=IMPORT_MODES,
    match_options=IMPORT_MATCH,
    preview=imports.preview_companies_import,
    run=imports.import_companies,
    changes=_import_changes,
)
add_import_routes(router, COMPANY_IMPORT)


# ----------------------------------------------------------------------------- forms


@dataclass
class CompanyForm:
    """What the form shows: the values as typed, and the errors next to each field."""

    values: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    version: int | None = None
    stale: bool = False


def _custom_fields(session: DbSession) -> list[CustomFieldRead]:
    return list(fields_by_key(session, "companies").values())


def form_from_company(
    company: CompanyRead | None, parent: CompanyRead | None, ui: Ui
) -> CompanyForm:
    """The form filled from a company (or empty, owned by the current user, for a new one)."""
    if company is None:
        return CompanyForm(values={"owner_id": str(ui.user.id)})
    values: dict[str, Any] = {
        name: "" if getattr(company, name) is None else str(getattr(company, name))
        for name in TEXT_FIELDS
    }
    values.update(
        revenue_currency=company.revenue_currency or "",
        country=company.country or "",
        description=company.description,
        owner_id=str(company.owner_id or ""),
        parent=parent.name if parent else "",
        tags=", ".join(company.tags),
    )
    return CompanyForm(values=values, custom=dict(company.custom), version=company.version)


def _parent_id(ui: Ui, session: DbSession, typed: str, errors: list[FieldError]) -> int | None:
    """The parent company a name (or ``#id``) stands for."""
    if not typed:
        return None
    if typed.lstrip("#").isdigit():
        return int(typed.lstrip("#"))
    matches = service.list_companies(session, ui.actor, q=typed, sort="name", limit=50).items
    exact = [c for c in matches if fold(c.name) == fold(typed)]
    if len(exact) == 1:
        return exact[0].id
    errors.append(
        FieldError(
            ("parent",),
            N_("No single company has this name.")
            if not exact
            else N_("Several companies have this name; type #id."),
        )
    )
    return None


def company_record(
    ui: Ui,
    session: DbSession,
    form: FormData,
    fields: list[CustomFieldRead],
    existing: CompanyRead | None,
    errors: list[FieldError],
) -> tuple[dict[str, Any], CompanyForm]:
    """The service record a submitted form stands for, and the form to show it again."""
    record: dict[str, Any] = {name: form_text(form, name, 2000) or None for name in TEXT_FIELDS}
    if record["domain"] is None and record["website"]:
        del record["domain"]  # the service takes it from the website
    record["description"] = form_text(form, "description", 20_000)
    for name in ("country", "revenue_currency"):
        record[name] = form_text(form, name, 10) or None
    owner = form_text(form, "owner_id", 20)
    record["owner_id"] = owner or None
    parent = form_text(form, "parent", 300)
    record["parent_id"] = _parent_id(ui, session, parent, errors)
    tags_raw = form_text(form, "tags", 3000)
    record["tags"] = [t.strip() for t in re.split(r"[,、，]", tags_raw) if t.strip()]
    custom = custom_values_from_form(form, fields, existing.custom if existing else None)
    record["custom"] = custom
    values = {k: record.get(k) or "" for k in (*TEXT_FIELDS, "country", "revenue_currency")}
    values.update(description=record["description"], owner_id=owner, parent=parent, tags=tags_raw)
    shown = CompanyForm(values=values, custom={k: v for k, v in custom.items() if v is not None})
    version = form_text(form, "version", 20)
    shown.version = int(version) if version.isdigit() else None
    return record, shown


def translated_errors(ui: Ui, errors: list[FieldError]) -> dict[str, list[str]]:
    by_field: dict[str, list[str]] = {}
    for name, messages in field_errors(errors, ERROR_FIELDS).items():
        key = "tags" if name.startswith("tags-") else name
        by_field.setdefault(key, []).extend(ui.gettext(m) for m in messages)
    return by_field


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    return [FieldError(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()]


def _render_form(
    ui: Ui,
    session: DbSession,
    company: CompanyRead | None,
    form: CompanyForm,
    status_code: int = 200,
) -> Response:
    return ui.render(
        "companies/form.html",
        {
            "company": company,
            "form": form,
            "fields": _custom_fields(session),
            "owner_choices": auth_service.list_users(session, include_inactive=False),
            "labels": FIELD_LABELS,
            "countries": country_names(ui.locale),
            "currencies": {c: c for c in CURRENCIES},
        },
        status_code=status_code,
    )


@router.get("/new")
def new_company(ui: SignedIn, session: DbSession) -> Response:
    """An empty form for a new company."""
    return _render_form(ui, session, None, form_from_company(None, None, ui))


@router.post("/new")
def create_company(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """Create the company, or show the form again with each problem next to its field."""
    problems: list[FieldError] = []
    record, shown = company_record(ui, session, form, _custom_fields(session), None, problems)
    try:
        if problems:
            raise ValidationFailed("The company has invalid fields.", problems)
        created = service.create_company(session, CompanyCreate.model_validate(record), ui.actor)
    except ValidationError as exc:
        shown.errors = translated_errors(ui, _pydantic_errors(exc))
        return _render_form(ui, session, None, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = translated_errors(ui, exc.errors)
        return _render_form(ui, session, None, shown, exc.status)
    return ui.redirect(f"/companies/{created.id}", flash="company_created")


@router.get("/{company_id}")
def company_detail(ui: SignedIn, session: DbSession, company_id: int) -> Response:
    """Everything about one company: fields, its contacts, subsidiaries and history."""
    company = service.get_company(session, company_id, ui.actor)
    fields = _custom_fields(session)
    history = record_history(session, "companies", company_id, limit=200) if ui.can("audit") else []
    user_ids = {company.owner_id} if company.owner_id else set()
    company_ids = {company.parent_id} if company.parent_id else set()
    for entry in history:
        user_ids.update(v for v in entry.changes.get("owner_id", []) if isinstance(v, int))
        company_ids.update(v for v in entry.changes.get("parent_id", []) if isinstance(v, int))
    users = auth_service.users_by_id(session, user_ids)
    refs = service.company_refs(session, company_ids)
    subsidiaries = service.list_companies(
        session, ui.actor, filters=[f"parent_id:eq:{company_id}"], sort="name", limit=50
    )
    return ui.render(
        "companies/detail.html",
        {
            "company": company,
            "parent": refs.get(company.parent_id) if company.parent_id else None,
            "owner": users.get(company.owner_id) if company.owner_id else None,
            "subsidiaries": subsidiaries.items,
            "fields": fields,
            "labels": FIELD_LABELS,
            "history": history_rows(
                ChangeFormatter(
                    ui,
                    FIELD_LABELS,
                    fields,
                    {
                        "owner_id": {i: u.name for i, u in users.items()},
                        "parent_id": {i: r.name for i, r in refs.items()},
                    },
                ),
                history,
            ),
        },
    )


@router.get("/{company_id}/edit")
def edit_company(ui: SignedIn, session: DbSession, company_id: int) -> Response:
    """The company's form, holding the version it was read at."""
    company = service.get_company(session, company_id, ui.actor)
    parent = (
        service.get_company(session, company.parent_id, ui.actor) if company.parent_id else None
    )
    return _render_form(ui, session, company, form_from_company(company, parent, ui))


@router.post("/{company_id}/edit")
def update_company(ui: SignedIn, session: DbSession, form: Form, company_id: int) -> Response:
    """Save the changes unless someone else saved theirs since the form was opened."""
    company = service.get_company(session, company_id, ui.actor)
    problems: list[FieldError] = []
    record, shown = company_record(ui, session, form, _custom_fields(session), company, problems)
    try:
        if problems:
            raise ValidationFailed("The company has invalid fields.", problems)
        service.update_company(
            session,
            company_id,
            CompanyUpdate.model_validate(record),
            ui.actor,
            if_version=shown.version,
        )
    except ValidationError as exc:
        shown.errors = translated_errors(ui, _pydantic_errors(exc))
        return _render_form(ui, session, company, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = translated_errors(ui, exc.errors)
        return _render_form(ui, session, company, shown, exc.status)
    except PreconditionFailed:
        shown.stale = True
        return _render_form(ui, session, company, shown, 409)
    return ui.redirect(f"/companies/{company_id}", flash="company_saved")


@router.get("/{company_id}/delete")
def confirm_delete(ui: SignedIn, session: DbSession, company_id: int) -> Response:
    """Ask before deleting."""
    company = service.get_company(session, company_id, ui.actor)
    return ui.render("companies/delete.html", {"company": company, "stale": False})


@router.post("/{company_id}/delete")
def delete_company(ui: SignedIn, session: DbSession, form: Form, company_id: int) -> Response:
    """Delete the company as it was shown; its contacts stay, unlinked."""
    version = form_text(form, "version", 20)
    try:
        service.delete_company(
            session, company_id, ui.actor, if_version=int(version) if version.isdigit() else None
        )
    except PreconditionFailed:
        company = service.get_company(session, company_id, ui.actor)
        return ui.render("companies/delete.html", {"company": company, "stale": True}, 409)
    except NotFound:
        pass  # already gone: a second click of the same button
    return ui.redirect("/companies", flash="company_deleted")
