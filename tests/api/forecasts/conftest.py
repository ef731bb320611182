"""Fixtures for the forecasting pages: a signed-in admin browser on a SQLite store."""

from __future__ import annotations

from tests.api.ui.conftest import admin_actor, admin_user, anonymous, app_db, browser

__all__ = ["admin_actor", "admin_user", "anonymous", "app_db", "browser"]
