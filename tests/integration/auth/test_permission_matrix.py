"""Each role's reads and writes through the services, and record ownership for sales/support."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import actor, audit_count, company, contact, team

from ichigen.auth import service as auth_service
from ichigen.auth.permissions import Role
from ichigen.auth.schemas import TeamCreate, UserCreate
from ichigen.core.audit import Actor
from ichigen.core.errors import PermissionDenied
from ichigen.crm.companies import service as companies
from ichigen.crm.companies.schemas import CompanyCreate, CompanyUpdate
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate, ContactUpdate

# role -> the entities it may write, through the services
WRITES = {
    "admin": {"contacts", "companies", "users", "teams"},
    "manager": {"contacts", "companies", "teams"},
    "sales": {"contacts", "companies"},
    "support": {"contacts"},
    "marketing": {"contacts"},
    "analyst": set(),
    "viewer": set(),
}


def _writers(session: Session, who: Actor, n: int) -> dict[str, Callable[[], Any]]:
    return {
        "contacts": lambda: contacts.create_contact(
            session, ContactCreate(last_name=f"C{n}", email=f"c{n}@example.com"), who
        ),
        "companies": lambda: companies.create_company(session, CompanyCreate(name=f"Co {n}"), who),
        "users": lambda: auth_service.create_user(
            session, UserCreate(email=f"u{n}@example.com", name=f"U{n}"), who
        ),
        "teams": lambda: auth_service.create_team(session, TeamCreate(name=f"Team {n}"), who),
    }


@pytest.mark.parametrize("role", [r.value for r in Role])
def test_each_role_reads_and_writes_what_the_matrix_says(session: Session, role: str) -> None:
    who = actor(session, f"{role}@example.com", role)
    # Every role reads contacts and companies.
    assert contacts.list_contacts(session, who).items == []
    assert companies.list_companies(session, who).items == []
    for n, (entity, write) in enumerate(_writers(session, who, 0).items()):
        before = audit_count(session, entity)
        if entity in WRITES[role]:
            write()
            assert audit_count(session, entity) == before + 1, entity
        else:
            with pytest.raises(PermissionDenied):
                write()
            assert audit_count(session, entity) == before, (entity, n)


@pytest.fixture
def people(session: Session) -> dict[str, Actor]:
    """Sales and support users in two teams, plus a teamless sales user and a manager."""
    east, west = team(session, "East"), team(session, "West")
    return {
        "ann": actor(session, "ann@example.com", "sales", east),
        "ben": actor(session, "ben@example.com", "sales", east),
        "cat": actor(session, "cat@example.com", "sales", west),
        "dan": actor(session, "dan@example.com", "support", west),
        "eve": actor(session, "eve@example.com", "sales", None),
        "max": actor(session, "max@example.com", "manager", west),
        "mia": actor(session, "mia@example.com", "marketing", west),
    }


CAN_EDIT_ANNS = {"ann": True, "ben": True, "cat": False, "dan": False, "eve": False}
CAN_EDIT_ANNS |= {"max": True, "mia": True}


@pytest.mark.parametrize(("who", "allowed"), sorted(CAN_EDIT_ANNS.items()))
def test_contact_edits_respect_ownership(
    session: Session, people: dict[str, Actor], who: str, allowed: bool
) -> None:
    owned = contact(session, last_name="Owned", owner_id=people["ann"].user_id)
    editor = people[who]
    before = audit_count(session, "contacts")
    if allowed:
        updated = contacts.update_contact(session, owned.id, ContactUpdate(city="Kyoto"), editor)
        assert updated.city == "Kyoto"
        contacts.delete_contact(session, owned.id, editor)
        assert audit_count(session, "contacts") == before + 2
    else:
        with pytest.raises(PermissionDenied, match="another owner"):
            contacts.update_contact(session, owned.id, ContactUpdate(city="Kyoto"), editor)
        with pytest.raises(PermissionDenied, match="another owner"):
            contacts.delete_contact(session, owned.id, editor)
        assert contacts.get_contact(session, owned.id, editor).city is None
        assert audit_count(session, "contacts") == before


@pytest.mark.parametrize("who", ["cat", "dan", "eve"])
def test_anyone_who_writes_may_edit_unowned_contacts(
    session: Session, people: dict[str, Actor], who: str
) -> None:
    unowned = contact(session, last_name="Nobody's")
    updated = contacts.update_contact(session, unowned.id, ContactUpdate(city="Nara"), people[who])
    assert updated.city == "Nara"


def test_bulk_upsert_refuses_another_teams_contact_record_by_record(
    session: Session, people: dict[str, Actor]
) -> None:
    contact(session, last_name="Ann's", email="anns@example.com", owner_id=people["ann"].user_id)
    contact(session, last_name="Cat's", email="cats@example.com", owner_id=people["cat"].user_id)
    before = audit_count(session, "contacts")
    results = contacts.bulk_upsert_contacts(
        session,
        [
            {"email": "anns@example.com", "city": "Kobe"},
            {"email": "cats@example.com", "city": "Kobe"},
            {"email": "new@example.com", "last_name": "New"},
        ],
        people["cat"],
    )
    assert [r.status for r in results] == ["error", "updated", "created"]
    assert results[0].errors[0]["loc"] == ["email"]
    assert "another owner" in str(results[0].errors[0]["msg"])
    assert audit_count(session, "contacts") == before + 2
    found = contacts.find_contact_by_email(session, "anns@example.com", people["cat"])
    assert found is not None and found.city is None


@pytest.mark.parametrize(("who", "allowed"), sorted(CAN_EDIT_ANNS.items()))
def test_company_edits_respect_ownership(
    session: Session, people: dict[str, Actor], who: str, allowed: bool
) -> None:
    owned = company(session, "Ann Corp", owner_id=people["ann"].user_id)
    editor = people[who]
    may_write_companies = who not in ("dan", "mia")  # support and marketing only read companies
    if allowed and may_write_companies:
        updated = companies.update_company(session, owned.id, CompanyUpdate(city="Kyoto"), editor)
        assert updated.city == "Kyoto"
        companies.delete_company(session, owned.id, editor)
    else:
        with pytest.raises(PermissionDenied):
            companies.update_company(session, owned.id, CompanyUpdate(city="Kyoto"), editor)
        with pytest.raises(PermissionDenied):
            companies.delete_company(session, owned.id, editor)
        assert companies.get_company(session, owned.id, editor).city is None


def test_sales_cannot_write_companies_owned_elsewhere_but_can_read_them(
    session: Session, people: dict[str, Actor]
) -> None:
    owned = company(session, "West Corp", owner_id=people["cat"].user_id)
    assert companies.get_company(session, owned.id, people["ann"]).name == "West Corp"
    assert [c.id for c in companies.list_companies(session, people["ann"]).items] == [owned.id]
