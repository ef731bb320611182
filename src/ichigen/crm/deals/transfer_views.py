"""Deal pages for CSV files: the import (upload, column mapping, dry run, report) and the
export of the deals a list shows."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Response

from ichigen.auth import service as auth_service
from ichigen.core.tabular import ImportReport
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts import service as contacts
from ichigen.crm.deals import imports, service
from ichigen.crm.deals.views import ListParams, list_filters
from ichigen.web.deps import DbSession
from ichigen.web.i18n import N_
from ichigen.web.import_views import ImportFlow, add_import_routes
from ichigen.web.templating import ChangeFormatter, SignedIn, Ui, csv_download, ui_router_for

router = ui_router_for("/deals")

Text = Annotated[str, Query(max_length=200)]

IMPORT_MODES: dict[str, str] = {
    "upsert": N_("Create new deals and update existing ones"),
    "create": N_("Only create new deals"),
    "update": N_("Only update existing deals"),
}
IMPORT_MATCH: dict[str, str] = {
    "external_id": N_("External ID (HubSpot Record ID, Salesforce Opportunity ID)"),
    "id": N_("ID in ichigen"),
}
#: How a dry run names the fields it would change.
IMPORT_FIELD_LABELS: dict[str, str] = {
    "name": N_("Deal name"),
    "external_id": N_("External ID"),
    "amount": N_("Amount"),
    "currency": N_("Currency"),
    "pipeline_id": N_("Pipeline"),
    "stage_id": N_("Stage"),
    "owner_id": N_("Owner"),
    "company_id": N_("Company"),
    "contacts": N_("Contacts"),
    "contact_roles": N_("Contact roles"),
    "expected_close_date": N_("Expected close date"),
    "closed_at": N_("Closed at"),
    "lost_reason_id": N_("Lost reason"),
    "close_note": N_("Close note"),
    "probability_override": N_("Probability (%)"),
    "forecast_category_override": N_("Forecast category"),
    "next_step": N_("Next step"),
    "next_step_due": N_("Next step due"),
    "source": N_("Source"),
    "tags": N_("Tags"),
}
FORECAST_CATEGORY_LABELS: dict[str, str] = {
    "commit": N_("Commit"),
    "best_case": N_("Best case"),
    "pipeline": N_("Pipeline"),
    "omitted": N_("Omitted"),
}


def _ids(report: ImportReport, name: str) -> set[int]:
    found: set[int] = set()
    for item in report.preview:
        for value in item.changes.get(name, []):
            values = value if isinstance(value, list) else [value]
            found.update(v for v in values if isinstance(v, int))
    return found


def _import_changes(ui: Ui, session: DbSession, report: ImportReport) -> ChangeFormatter:
    """How a dry run's changes read: pipelines, stages, owners, companies, contacts and lost
    reasons by name."""
    pipelines = service.list_pipelines(session, ui.actor, include_archived=True)
    return ChangeFormatter(
        ui,
        IMPORT_FIELD_LABELS,
        service.deal_custom_fields(session),
        {
            "pipeline_id": {p.id: p.name for p in pipelines},
            "stage_id": {s.id: s.name for p in pipelines for s in p.stages},
            "owner_id": {u.id: u.name for u in auth_service.list_users(session)},
            "company_id": {
                i: ref.name
                for i, ref in companies.company_refs(session, _ids(report, "company_id")).items()
            },
            "contacts": contacts.contact_names(session, _ids(report, "contacts")),
            "lost_reason_id": service.lost_reason_names(session, _ids(report, "lost_reason_id")),
            "forecast_category_override": FORECAST_CATEGORY_LABELS,
        },
        translated=("forecast_category_override",),
    )


DEAL_IMPORT = ImportFlow(
    entity="deals",
    base="/deals",
    title=N_("Import deals"),
    list_label=N_("Deals"),
    match_label=N_("Match existing deals on"),
    back_label=N_("Go to the deals"),
    modes=IMPORT_MODES,
    match_options=IMPORT_MATCH,
    preview=imports.preview_deals_import,
    run=imports.import_deals,
    changes=_import_changes,
    zoned=True,
)
add_import_routes(router, DEAL_IMPORT)


@router.get("/export.csv")
def export_deals(
    ui: SignedIn,
    q: Text = "",
    pipeline: Text = "",
    stage: Text = "",
    owner: Text = "",
    status: Text = "",
    close_from: Text = "",
    close_to: Text = "",
    company: Text = "",
    filter: Annotated[list[str], Query(max_length=300)] = [],  # noqa: B006
) -> Response:
    """The deals the list shows as CSV, streamed: the list's own search and filters (the same
    query as ``/deals``, so its "Export CSV" link carries it over), and any
    ``filter=field:op:value`` as the API takes them."""
    params = ListParams(
        q=q.strip(),
        pipeline=pipeline,
        stage=stage,
        owner=owner,
        status=status,
        close_from=close_from,
        close_to=close_to,
        company=company,
    )
    filters = [*list_filters(params, ui), *filter]
    return csv_download(
        ui,
        "deals",
        lambda session: imports.deals_csv(
            session, ui.actor, filters=filters, q=params.q or None, bom=True
        ),
    )
