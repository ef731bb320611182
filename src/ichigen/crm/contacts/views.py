"""Contact pages: the list with quick search and filters, detail with history, forms."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Query, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import UserRead
from ichigen.core.audit import record_history
from ichigen.core.custom_fields import CustomFieldRead
from ichigen.core.errors import (
    Conflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.core.schemas import Page
from ichigen.core.tabular import ImportReport
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts import imports, service
from ichigen.crm.contacts.schemas import (
    ContactCreate,
    ContactRead,
    ContactUpdate,
    LeadStatus,
    LifecycleStage,
)
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

router = ui_router_for("/contacts")
PAGE_SIZE = 50

LIFECYCLE_LABELS: dict[str, str] = {
    LifecycleStage.subscriber: N_("Subscriber"),
    LifecycleStage.lead: N_("Lead"),
    LifecycleStage.mql: N_("Marketing qualified lead"),
    LifecycleStage.sql: N_("Sales qualified lead"),
    LifecycleStage.opportunity: N_("Opportunity"),
    LifecycleStage.customer: N_("Customer"),
    LifecycleStage.evangelist: N_("Evangelist"),
    LifecycleStage.other: N_("Other"),
}
LEAD_STATUS_LABELS: dict[str, str] = {
    LeadStatus.new: N_("New"),
    LeadStatus.open: N_("Open"),
    LeadStatus.in_progress: N_("In progress"),
    LeadStatus.open_deal: N_("Open deal"),
    LeadStatus.unqualified: N_("Unqualified"),
    LeadStatus.attempted_to_contact: N_("Attempted to contact"),
    LeadStatus.connected: N_("Connected"),
    LeadStatus.bad_timing: N_("Bad timing"),
}
EMAIL_LABELS: dict[str, str] = {
    "work": N_("Work"),
    "personal": N_("Personal"),
    "other": N_("Other"),
}
PHONE_LABELS: dict[str, str] = {
    "mobile": N_("Mobile"),
    "work": N_("Work"),
    "home": N_("Home"),
    "fax": N_("Fax"),
    "other": N_("Other"),
}
#: Field names as people read them (forms, detail page, history).
FIELD_LABELS: dict[str, str] = {
    "first_name": N_("First name"),
    "last_name": N_("Last name"),
    "first_name_reading": N_("First name (reading)"),
    "last_name_reading": N_("Last name (reading)"),
    "emails": N_("Emails"),
    "phones": N_("Phone numbers"),
    "company_id": N_("Company"),
    "job_title": N_("Job title"),
    "street": N_("Street"),
    "city": N_("City"),
    "region": N_("Prefecture / region"),
    "postal_code": N_("Postal code"),
    "country": N_("Country"),
    "lifecycle_stage": N_("Lifecycle stage"),
    "lead_status": N_("Lead status"),
    "source": N_("Source"),
    "owner_id": N_("Owner"),
    "tags": N_("Tags"),
    "do_not_email": N_("Do not email"),
    "do_not_call": N_("Do not call"),
    "do_not_sms": N_("Do not text"),
    "external_id": N_("External ID"),
}
#: Fields as a dry run of an import names them.
IMPORT_FIELD_LABELS: dict[str, str] = {
    **FIELD_LABELS,
    "owner": N_("Owner"),
    "company_name": N_("Company"),
}
#: Columns the list sorts by when their header is clicked.
SORTABLE = ("name", "email", "phone", "lifecycle_stage", "updated_at")
DEFAULT_SORT = "-updated_at"
TEXT_FIELDS = (
    "first_name",
    "last_name",
    "first_name_reading",
    "last_name_reading",
    "job_title",
    "street",
    "city",
    "region",
    "postal_code",
    "source",
    "external_id",
)
FLAGS = ("do_not_email", "do_not_call", "do_not_sms")
#: Service error paths shown next to a differently named form field.
ERROR_FIELDS = {
    "company_name": "company",
    "company_id": "company",
    "owner": "owner_id",
    "email": "emails-0-email",
    "phone": "phones-0-number",
}
_BELONGS = re.compile(r"^(?P<email>\S+) belongs to contact (?P<id>\d+)$")
_ALREADY_HAS = re.compile(r"^contact (?P<id>\d+) already has this (?P<key>email|external_id)$")

register_flash_messages(
    {
        "contact_created": N_("Contact created."),
        "contact_saved": N_("Changes saved."),
        "contact_deleted": N_("Contact deleted."),
    }
)

Text = Annotated[str, Query(max_length=200)]


# ----------------------------------------------------------------------------- list


@dataclass
class ListParams:
    """The list's search, filters and sort, as they appear in the URL."""

    q: str = ""
    stage: str = ""
    owner: str = ""
    company: str = ""
    company_id: int | None = None
    tag: str = ""
    sort: str = DEFAULT_SORT

    def as_query(self) -> dict[str, Any]:
        values: dict[str, Any] = {
            "q": self.q,
            "stage": self.stage,
            "owner": self.owner,
            "company": self.company,
            "company_id": self.company_id,
            "tag": self.tag,
        }
        if self.sort != DEFAULT_SORT:
            values["sort"] = self.sort
        return values

    @property
    def filtered(self) -> bool:
        return bool(self.stage or self.owner or self.company or self.company_id or self.tag)


def list_filters(params: ListParams, ui: Ui, company_ids: list[int] | None) -> list[str]:
    """The service filters (``field:op:value``) the list's controls stand for."""
    filters: list[str] = []
    if params.stage in LIFECYCLE_LABELS:
        filters.append(f"lifecycle_stage:eq:{params.stage}")
    if params.owner == "me":
        filters.append(f"owner_id:eq:{ui.user.id}")
    elif params.owner == "none":
        filters.append("owner_id:is_null:true")
    elif params.owner.isdigit():
        filters.append(f"owner_id:eq:{int(params.owner)}")
    if params.company_id is not None:
        filters.append(f"company_id:eq:{params.company_id}")
    if company_ids:
        filters.append("company_id:in:" + ",".join(str(i) for i in company_ids))
    if params.tag:
        filters.append(f"tags:contains:{params.tag}")
    return filters


def _owners(session: DbSession, ids: set[int]) -> dict[int, UserRead]:
    return auth_service.users_by_id(session, ids)


def _sort_links(params: ListParams) -> dict[str, dict[str, str]]:
    """For each sortable column: the sort a click asks for, and its current direction."""
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
def contact_list(
    ui: SignedIn,
    session: DbSession,
    q: Text = "",
    stage: Text = "",
    owner: Text = "",
    company: Text = "",
    company_id: int | None = None,
    tag: Text = "",
    sort: Annotated[str, Query(max_length=60)] = DEFAULT_SORT,
    cursor: Annotated[str | None, Query(max_length=2000)] = None,
) -> Response:
    """The contact list; HTMX asks for just the results or just the next rows."""
    if sort.lstrip("-") not in SORTABLE:
        sort = DEFAULT_SORT
    params = ListParams(q.strip(), stage, owner, company.strip(), company_id, tag.strip(), sort)
    company_ids = (
        companies.company_ids_matching(session, params.company) if params.company else None
    )
    page: Page[ContactRead]
    if company_ids == []:
        page = Page[ContactRead](items=[])
    else:
        page = service.list_contacts(
            session,
            ui.actor,
            filters=list_filters(params, ui, company_ids),
            sort=sort,
            cursor=cursor,
            limit=PAGE_SIZE,
            q=params.q or None,
        )
    context = {
        "page": page,
        "params": params,
        "query": params.as_query(),
        "owners": _owners(session, {c.owner_id for c in page.items if c.owner_id}),
        "sort_links": _sort_links(params),
        "stages": LIFECYCLE_LABELS,
        "cursor": cursor,
        "company_ref": (
            companies.company_for_display(session, company_id) if company_id is not None else None
        ),
    }
    if ui.htmx_target == "load-more":
        return ui.render("contacts/_rows.html", context)
    if ui.htmx_target == "results":
        # The address bar shows the search without its empty fields.
        ui.extra_headers["HX-Push-Url"] = "/contacts" + query_string(params.as_query())
        return ui.render("contacts/_results.html", context)
    context["owner_choices"] = auth_service.list_users(session, include_inactive=False)
    return ui.render("contacts/list.html", context)


@router.get("/_for-company/{company_id}")
def company_contacts(ui: SignedIn, session: DbSession, company_id: int) -> Response:
    """The contacts of one company (a panel on the company's page)."""
    page = service.list_contacts(
        session, ui.actor, filters=[f"company_id:eq:{company_id}"], sort="name", limit=PAGE_SIZE
    )
    return ui.render(
        "contacts/_company_contacts.html",
        {
            "page": page,
            "company_id": company_id,
            "stages": LIFECYCLE_LABELS,
            "owners": _owners(session, {c.owner_id for c in page.items if c.owner_id}),
        },
    )


# ----------------------------------------------------------------------------- forms


@dataclass
class ContactForm:
    """What the form shows: the values as typed, and the errors next to each field."""

    values: dict[str, Any] = field(default_factory=dict)
    emails: list[dict[str, Any]] = field(default_factory=list)
    phones: list[dict[str, Any]] = field(default_factory=list)
    custom: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    version: int | None = None
    stale: bool = False


def form_from_contact(contact: ContactRead | None, ui: Ui) -> ContactForm:
    """The form filled from a contact (or empty, owned by the current user, for a new one)."""
    if contact is None:
        return ContactForm(values={"owner_id": str(ui.user.id)})
    values: dict[str, Any] = {name: getattr(contact, name) or "" for name in TEXT_FIELDS}
    values.update(
        country=contact.country or "",
        lifecycle_stage=contact.lifecycle_stage.value if contact.lifecycle_stage else "",
        lead_status=contact.lead_status.value if contact.lead_status else "",
        owner_id=str(contact.owner_id or ""),
        company=contact.company.name if contact.company else "",
        tags=", ".join(contact.tags),
    )
    values.update({flag: getattr(contact, flag) for flag in FLAGS})
    return ContactForm(
        values=values,
        emails=[e.model_dump() for e in contact.emails],
        phones=[p.model_dump() for p in contact.phones],
        custom=dict(contact.custom),
        version=contact.version,
    )


def _rows(form: FormData, prefix: str, key: str, label: str) -> list[dict[str, Any]]:
    """Repeated rows (``emails-0-email``, ``emails-0-label`` …) with one primary radio."""
    indexes = sorted(
        {
            int(m.group(1))
            for name in form
            if (m := re.fullmatch(rf"{prefix}-(\d{{1,2}})-{key}", name)) is not None
        }
    )
    primary = form_text(form, f"{prefix}-primary")
    rows = []
    for index in indexes:
        value = form_text(form, f"{prefix}-{index}-{key}", 400)
        if value:
            rows.append(
                {
                    key: value,
                    "label": form_text(form, f"{prefix}-{index}-label", 20) or label,
                    "primary": primary == str(index),
                }
            )
    return rows


def split_tags(raw: str) -> list[str]:
    """Tags typed as ``a, b`` (also the Japanese comma)."""
    return [t.strip() for t in re.split(r"[,、，]", raw) if t.strip()]


def contact_record(
    form: FormData, fields: list[CustomFieldRead], existing: ContactRead | None
) -> tuple[dict[str, Any], ContactForm]:
    """The service record a submitted form stands for, and the form to show it again."""
    record: dict[str, Any] = {name: form_text(form, name, 500) or None for name in TEXT_FIELDS}
    for name in ("country", "lifecycle_stage", "lead_status"):
        record[name] = form_text(form, name, 40) or None
    owner = form_text(form, "owner_id", 20)
    record["owner_id"] = owner or None
    tags_raw = form_text(form, "tags", 3000)
    record["tags"] = split_tags(tags_raw)
    for flag in FLAGS:
        record[flag] = form.get(flag) is not None
    emails = _rows(form, "emails", "email", "work")
    phones = _rows(form, "phones", "number", "mobile")
    record["emails"] = emails
    record["phones"] = phones
    company = form_text(form, "company", 300)
    current_company = existing.company.name if existing and existing.company else ""
    if company and company != current_company:
        record["company_name"] = company
    elif not company and current_company:
        record["company_id"] = None
    record["custom"] = custom_values_from_form(form, fields, existing.custom if existing else None)
    shown = ContactForm(
        values={
            **{k: record[k] or "" for k in (*TEXT_FIELDS, "country", "lifecycle_stage")},
            "lead_status": record["lead_status"] or "",
            "owner_id": owner,
            "company": company,
            "tags": tags_raw,
            **{flag: record[flag] for flag in FLAGS},
        },
        emails=emails,
        phones=phones,
        custom={k: v for k, v in record["custom"].items() if v is not None},
    )
    version = form_text(form, "version", 20)
    shown.version = int(version) if version.isdigit() else None
    return record, shown


def translated_errors(ui: Ui, errors: list[FieldError]) -> dict[str, list[str]]:
    """Field errors by form field, in the visitor's language where the catalog knows them."""
    by_field: dict[str, list[str]] = {}
    for name, messages in field_errors(errors, ERROR_FIELDS).items():
        if name.startswith("tags-"):
            name = "tags"
        if re.fullmatch(r"emails-\d+", name):
            name += "-email"
        if re.fullmatch(r"phones-\d+", name):
            name += "-number"
        for message in messages:
            by_field.setdefault(name, []).append(_error_text(ui, message))
    return by_field


def _error_text(ui: Ui, message: str) -> str:
    """A service message in the visitor's language (with the contact conflicts reworded)."""
    if found := _BELONGS.match(message):
        return ui.gettext(
            "%(email)s already belongs to another contact (#%(id)s).",
            email=found["email"],
            id=found["id"],
        )
    if found := _ALREADY_HAS.match(message):
        return ui.gettext("Another contact (#%(id)s) already has this address.", id=found["id"])
    return ui.gettext(message)


def _pydantic_errors(exc: ValidationError) -> list[FieldError]:
    return [FieldError(tuple(e["loc"]), e["msg"], e["type"]) for e in exc.errors()]


def _render_form(
    ui: Ui,
    session: DbSession,
    contact: ContactRead | None,
    form: ContactForm,
    status_code: int = 200,
) -> Response:
    return ui.render(
        "contacts/form.html",
        {
            "contact": contact,
            "form": form,
            "fields": service.contact_custom_fields(session),
            "owner_choices": auth_service.list_users(session, include_inactive=False),
            "stages": LIFECYCLE_LABELS,
            "lead_statuses": LEAD_STATUS_LABELS,
            "email_labels": EMAIL_LABELS,
            "phone_labels": PHONE_LABELS,
            "labels": FIELD_LABELS,
            "countries": country_names(ui.locale),
        },
        status_code=status_code,
    )


@router.get("/new")
def new_contact(ui: SignedIn, session: DbSession) -> Response:
    """An empty form for a new contact."""
    return _render_form(ui, session, None, form_from_contact(None, ui))


@router.post("/new")
def create_contact(ui: SignedIn, session: DbSession, form: Form) -> Response:
    """Create the contact, or show the form again with each problem next to its field."""
    fields = service.contact_custom_fields(session)
    record, shown = contact_record(form, fields, None)
    try:
        created = service.create_contact(session, ContactCreate.model_validate(record), ui.actor)
    except ValidationError as exc:
        shown.errors = translated_errors(ui, _pydantic_errors(exc))
        return _render_form(ui, session, None, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = translated_errors(ui, exc.errors)
        return _render_form(ui, session, None, shown, exc.status)
    return ui.redirect(f"/contacts/{created.id}", flash="contact_created")


@router.get("/_email-row")
def email_row(ui: SignedIn, index: Annotated[int, Query(ge=0, le=19)] = 0) -> Response:
    """One more empty email row (the form's "Add email" button)."""
    return ui.render(
        "contacts/_email_row.html",
        {"index": index, "row": {}, "errors": {}, "email_labels": EMAIL_LABELS, "adder": True},
    )


@router.get("/_phone-row")
def phone_row(ui: SignedIn, index: Annotated[int, Query(ge=0, le=19)] = 0) -> Response:
    """One more empty phone row (the form's "Add phone" button)."""
    return ui.render(
        "contacts/_phone_row.html",
        {"index": index, "row": {}, "errors": {}, "phone_labels": PHONE_LABELS, "adder": True},
    )


# ----------------------------------------------------------------------------- import, export

IMPORT_MODES: dict[str, str] = {
    "upsert": N_("Create new contacts and update existing ones"),
    "create": N_("Only create new contacts"),
    "update": N_("Only update existing contacts"),
}
IMPORT_MATCH: dict[str, str] = {
    "email": N_("Email"),
    "external_id": N_("External ID"),
}


def _import_changes(ui: Ui, session: DbSession, report: ImportReport) -> ChangeFormatter:
    """How a dry run's changes read: field labels, and stages and statuses by name."""
    return ChangeFormatter(
        ui,
        IMPORT_FIELD_LABELS,
        service.contact_custom_fields(session),
        {"lifecycle_stage": LIFECYCLE_LABELS, "lead_status": LEAD_STATUS_LABELS},
        translated=("lifecycle_stage", "lead_status"),
    )


CONTACT_IMPORT = ImportFlow(
    entity="contacts",
    base="/contacts",
    title=N_("Import contacts"),
    list_label=N_("Contacts"),
    match_label=N_("Match existing contacts on"),
    back_label=N_("Go to the contacts"),
    modes=IMPORT_MODES,
    match_options=IMPORT_MATCH,
    preview=imports.preview_contacts_import,
    run=imports.import_contacts,
    changes=_import_changes,
)
add_import_routes(router, CONTACT_IMPORT)


@router.get("/export.csv")
def export_contacts(
    ui: SignedIn,
    session: DbSession,
    q: Text = "",
    stage: Text = "",
    owner: Text = "",
    company: Text = "",
    company_id: int | None = None,
    tag: Text = "",
) -> Response:
    """The contacts the list shows (same search and filters) as CSV, streamed."""
    params = ListParams(q.strip(), stage, owner, company.strip(), company_id, tag.strip())
    company_ids = (
        companies.company_ids_matching(session, params.company) if params.company else None
    )
    filters = list_filters(params, ui, company_ids)
    if company_ids == []:
        filters.append("id:eq:0")  # the company filter matches no company: export nothing
    return csv_download(
        ui,
        "contacts",
        lambda export_session: imports.contacts_csv(
            export_session, ui.actor, filters=filters, q=params.q or None, bom=True
        ),
    )


@router.get("/{contact_id}")
def contact_detail(ui: SignedIn, session: DbSession, contact_id: int) -> Response:
    """Everything about one contact, and who changed what when."""
    contact = service.get_contact(session, contact_id, ui.actor)
    fields = service.contact_custom_fields(session)
    history = record_history(session, "contacts", contact_id, limit=200) if ui.can("audit") else []
    user_ids = {contact.owner_id} if contact.owner_id else set()
    company_ids: set[int] = set()
    for entry in history:
        for name, ids in (("owner_id", user_ids), ("company_id", company_ids)):
            ids.update(v for v in entry.changes.get(name, []) if isinstance(v, int))
    users = _owners(session, user_ids)
    refs = companies.company_refs(session, company_ids)
    return ui.render(
        "contacts/detail.html",
        {
            "contact": contact,
            "owner": users.get(contact.owner_id) if contact.owner_id else None,
            "fields": fields,
            "labels": FIELD_LABELS,
            "stages": LIFECYCLE_LABELS,
            "lead_statuses": LEAD_STATUS_LABELS,
            "email_labels": EMAIL_LABELS,
            "phone_labels": PHONE_LABELS,
            "history": history_rows(
                ChangeFormatter(
                    ui,
                    FIELD_LABELS,
                    fields,
                    {
                        "owner_id": {i: u.name for i, u in users.items()},
                        "company_id": {i: r.name for i, r in refs.items()},
                        "lifecycle_stage": LIFECYCLE_LABELS,
                        "lead_status": LEAD_STATUS_LABELS,
                    },
                    translated=("lifecycle_stage", "lead_status"),
                ),
                history,
            ),
        },
    )


@router.get("/{contact_id}/edit")
def edit_contact(ui: SignedIn, session: DbSession, contact_id: int) -> Response:
    """The contact's form, holding the version it was read at."""
    contact = service.get_contact(session, contact_id, ui.actor)
    return _render_form(ui, session, contact, form_from_contact(contact, ui))


@router.post("/{contact_id}/edit")
def update_contact(ui: SignedIn, session: DbSession, form: Form, contact_id: int) -> Response:
    """Save the changes unless someone else saved theirs since the form was opened."""
    contact = service.get_contact(session, contact_id, ui.actor)
    fields = service.contact_custom_fields(session)
    record, shown = contact_record(form, fields, contact)
    try:
        service.update_contact(
            session,
            contact_id,
            ContactUpdate.model_validate(record),
            ui.actor,
            if_version=shown.version,
        )
    except ValidationError as exc:
        shown.errors = translated_errors(ui, _pydantic_errors(exc))
        return _render_form(ui, session, contact, shown, 422)
    except (ValidationFailed, Conflict) as exc:
        shown.errors = translated_errors(ui, exc.errors)
        return _render_form(ui, session, contact, shown, exc.status)
    except PreconditionFailed:
        shown.stale = True
        return _render_form(ui, session, contact, shown, 409)
    return ui.redirect(f"/contacts/{contact_id}", flash="contact_saved")


@router.get("/{contact_id}/delete")
def confirm_delete(ui: SignedIn, session: DbSession, contact_id: int) -> Response:
    """Ask before deleting."""
    contact = service.get_contact(session, contact_id, ui.actor)
    return ui.render("contacts/delete.html", {"contact": contact, "stale": False})


@router.post("/{contact_id}/delete")
def delete_contact(ui: SignedIn, session: DbSession, form: Form, contact_id: int) -> Response:
    """Delete the contact as it was shown (a newer version is not deleted unseen)."""
    version = form_text(form, "version", 20)
    try:
        service.delete_contact(
            session, contact_id, ui.actor, if_version=int(version) if version.isdigit() else None
        )
    except PreconditionFailed:
        contact = service.get_contact(session, contact_id, ui.actor)
        return ui.render("contacts/delete.html", {"contact": contact, "stale": True}, 409)
    except NotFound:
        pass  # already gone: a second click of the same button
    return ui.redirect("/contacts", flash="contact_deleted")
