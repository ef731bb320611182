"""The UI fixtures (a signed-in browser on a SQLite store) for the timeline's pages."""

from tests.api.ui.conftest import admin_actor, admin_user, app_db, browser

__all__ = ["admin_actor", "admin_user", "app_db", "browser"]
