"""Small factories for integration tests: users, actors, companies and contacts built through
the services, so every test exercises the product's own rules.

Users made here have no password unless asked (argon2 hashing costs ~0.15 s per user).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from tests.conftest import SETUP, make_user

from ichigen.auth import service as auth_service
from ichigen.auth.schemas import TeamCreate, UserRead
from ichigen.core import custom_fields
from ichigen.core.audit import Actor, AuditEntry
from ichigen.core.custom_fields import CustomFieldCreate, CustomFieldRead, FieldOption, FieldType
from ichigen.crm.companies import service as companies
from ichigen.crm.companies.schemas import CompanyCreate, CompanyRead
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate, ContactRead


def user(
    session: Session,
    email: str,
    role: str = "sales",
    team_id: int | None = None,
    password: str | None = None,
) -> UserRead:
    """A user (without a password unless one is given)."""
    return make_user(session, email, role, team_id, password)


def actor(session: Session, email: str, role: str = "sales", team_id: int | None = None) -> Actor:
    """An acting user of the given role, as the UI would see them."""
    return auth_service.actor_for(user(session, email, role, team_id))


def team(session: Session, name: str) -> int:
    return auth_service.create_team(session, TeamCreate(name=name), SETUP).id


def company(session: Session, name: str, by: Actor = SETUP, **fields: Any) -> CompanyRead:
    return companies.create_company(session, CompanyCreate(name=name, **fields), by)


def contact(session: Session, by: Actor = SETUP, **fields: Any) -> ContactRead:
    return contacts.create_contact(session, ContactCreate(**fields), by)


def field(
    session: Session,
    key: str,
    field_type: FieldType | str,
    *,
    entity: str = "contacts",
    options: list[str] | None = None,
    **extra: Any,
) -> CustomFieldRead:
    """A custom field definition, made by the setup actor."""
    return custom_fields.create_field(
        session,
        CustomFieldCreate(
            entity=entity,
            key=key,
            label=key.replace("_", " ").title(),
            field_type=FieldType(field_type),
            options=[FieldOption(value=o) for o in options or []],
            **extra,
        ),
        SETUP,
    )


def audit_count(session: Session, entity: str | None = None) -> int:
    """How many audit entries exist (for one entity, or in all)."""
    stmt = select(func.count()).select_from(AuditEntry)
    if entity is not None:
        stmt = stmt.where(AuditEntry.entity == entity)
    return int(session.scalar(stmt) or 0)


def row_count(session: Session, model: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def admin(session: Session) -> Actor:
    """An admin actor without a password (overrides the slower root fixture)."""
    return actor(session, "admin@example.com", "admin")
