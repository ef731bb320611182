"""The web UI's routes: sign-in, the application shell, and each feature's pages."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from ichigen.auth.views import router as auth_pages
from ichigen.collect.views import router as source_pages
from ichigen.crm.activities.transfer_views import router as activity_transfer_pages
from ichigen.crm.activities.views import entries as activity_entries
from ichigen.crm.activities.views import router as activity_pages
from ichigen.crm.companies.views import router as company_pages
from ichigen.crm.contacts.views import router as contact_pages
from ichigen.crm.deals.forecast_views import router as forecast_pages
from ichigen.crm.deals.transfer_views import router as deal_transfer_pages
from ichigen.crm.deals.views import router as deal_pages
from ichigen.crm.tasks.views import router as task_pages
from ichigen.identity.duplicates_views import router as duplicate_pages
from ichigen.profiles.views import router as profile_pages
from ichigen.web.settings_views import router as settings_pages
from ichigen.web.templating import AnyVisitor, csrf_guard, ui_router_for

#: Each feature's pages, in the order their routes are matched.
FEATURE_PAGES: list[APIRouter] = [
    auth_pages,
    contact_pages,
    duplicate_pages,
    company_pages,
    # Before the feature pages, whose /deals/{id} and /activities/{id} would take "import".
    deal_transfer_pages,
    deal_pages,
    forecast_pages,
    activity_transfer_pages,
    activity_pages,
    activity_entries,
    task_pages,
    source_pages,
    profile_pages,
    settings_pages,
]


def ui_router() -> APIRouter:
    """Every HTML page, each behind the CSRF check for unsafe methods."""
    router = ui_router_for(dependencies=[Depends(csrf_guard)])

    @router.get("/")
    def home(ui: AnyVisitor) -> Response:
        """The first section the user may see, or the sign-in page."""
        items = ui.navigation()
        return ui.redirect(items[0].href if items else "/login")

    for pages in FEATURE_PAGES:
        router.include_router(pages)
    return router
