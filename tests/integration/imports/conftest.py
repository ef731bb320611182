"""Fixtures for the import tests: a password-less admin, a sales rep who owns records, the
sample files under tests/data/imports, and custom fields the sample files carry."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from tests.conftest import SETUP
from tests.integration.core.factories import admin, user

from ichigen.auth.schemas import UserRead
from ichigen.core import custom_fields
from ichigen.core.custom_fields import CustomFieldCreate, CustomFieldRead, FieldOption, FieldType

DATA = Path(__file__).parents[2] / "data" / "imports"

__all__ = ["DATA", "admin", "define_field", "rep"]


def define_field(
    session: Session,
    key: str,
    label: str,
    field_type: FieldType,
    *,
    entity: str = "contacts",
    options: tuple[str, ...] = (),
) -> CustomFieldRead:
    """A custom field with a label of our choosing (sample files name columns by label)."""
    return custom_fields.create_field(
        session,
        CustomFieldCreate(
            entity=entity,
            key=key,
            label=label,
            field_type=field_type,
            options=[FieldOption(value=o) for o in options],
        ),
        SETUP,
    )


@pytest.fixture
def rep(session: Session) -> UserRead:
    """The sales rep the sample files name as owner (rep@example.com)."""
    return user(session, "rep@example.com", "sales")
