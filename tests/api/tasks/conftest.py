"""Fixtures for the task pages: the UI tests' signed-in browser on a SQLite record store."""

from tests.api.ui.conftest import admin_actor, admin_user, anonymous, app_db, browser

__all__ = ["admin_actor", "admin_user", "anonymous", "app_db", "browser"]
