"""Fixtures for these integration tests: a password-less admin, which is faster to make."""

from tests.integration.core.factories import admin

__all__ = ["admin"]
