"""Deal pages use the UI fixtures: a signed-in admin's browser on a SQLite store."""

from tests.api.ui.conftest import admin_actor, admin_user, anonymous, app_db, browser

__all__ = ["admin_actor", "admin_user", "anonymous", "app_db", "browser"]
