"""Fixtures for the deal and activity transfer pages: a signed-in admin browser on SQLite."""

from __future__ import annotations

from tests.api.ui.conftest import admin_actor, admin_user, anonymous, app_db, browser

__all__ = ["admin_actor", "admin_user", "anonymous", "app_db", "browser"]
