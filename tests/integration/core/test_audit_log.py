"""Every write leaves one audit entry with before/after values in its own transaction;
a refused write leaves none."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from tests.integration.core.factories import audit_count, company, contact, field, row_count

from ichigen.core import custom_fields
from ichigen.core.audit import Actor, AuditEntry, record_history
from ichigen.core.custom_fields import CustomFieldUpdate
from ichigen.core.errors import Conflict, IchigenError, PreconditionFailed, ValidationFailed
from ichigen.crm.companies import service as companies
from ichigen.crm.companies.schemas import CompanyCreate, CompanyUpdate
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.models import Contact
from ichigen.crm.contacts.schemas import ContactCreate, ContactUpdate


def test_contact_lifecycle_is_audited_with_before_and_after(session: Session, admin: Actor) -> None:
    field(session, "tier", "select", options=["gold", "silver"])
    created = contacts.create_contact(
        session,
        ContactCreate(
            first_name="Hanako",
            last_name="Suzuki",
            email="hanako@example.com",
            tags=["vip"],
            custom={"tier": "gold"},
        ),
        admin,
    )
    [entry] = record_history(session, "contacts", created.id)
    assert (entry.action, entry.actor_user_id, entry.actor_label, entry.via) == (
        "create",
        admin.user_id,
        "admin@example.com",
        "ui",
    )
    assert entry.changes["first_name"] == [None, "Hanako"]
    assert entry.changes["emails"] == [None, ["hanako@example.com"]]
    assert entry.changes["custom"] == [None, {"tier": "gold"}]
    assert "city" not in entry.changes  # unset fields are not noise in the log

    contacts.update_contact(
        session,
        created.id,
        ContactUpdate.model_validate(
            {"city": "Sapporo", "emails": [{"email": "h.suzuki@example.com"}], "tags": ["vip"]}
        ),
        admin,
    )
    latest = record_history(session, "contacts", created.id)[0]
    assert latest.action == "update"
    assert latest.changes == {
        "city": [None, "Sapporo"],
        "emails": [["hanako@example.com"], ["h.suzuki@example.com"]],
    }

    contacts.delete_contact(session, created.id, admin)
    history = record_history(session, "contacts", created.id)
    assert [e.action for e in history] == ["delete", "update", "create"]
    assert history[0].changes["city"] == ["Sapporo", None]
    assert history[0].changes["custom"] == [{"tier": "gold"}, None]


def test_a_write_that_changes_nothing_is_not_audited(session: Session, admin: Actor) -> None:
    created = contact(session, admin, last_name="Same", city="Kobe")
    again = contacts.update_contact(session, created.id, ContactUpdate(city="Kobe"), admin)
    assert again.version == created.version
    assert len(record_history(session, "contacts", created.id)) == 1
    co = company(session, "Same Co", admin, city="Kobe")
    assert companies.update_company(session, co.id, CompanyUpdate(city="Kobe"), admin).version == 1
    assert len(record_history(session, "companies", co.id)) == 1


def test_refused_writes_leave_no_audit_entry(session: Session, admin: Actor) -> None:
    taken = contact(session, admin, last_name="Taken", email="taken@example.com")
    parent = company(session, "Parent", admin)
    child = company(session, "Child", admin, parent_id=parent.id)
    before = audit_count(session)
    failures: list[Callable[[], object]] = [
        lambda: contacts.create_contact(session, ContactCreate(email="bad@@example"), admin),
        lambda: contacts.create_contact(session, ContactCreate(email="taken@example.com"), admin),
        lambda: contacts.create_contact(session, ContactCreate(custom={"nope": 1}), admin),
        lambda: contacts.update_contact(
            session, taken.id, ContactUpdate(city="X"), admin, if_version=99
        ),
        lambda: contacts.update_contact(session, taken.id, ContactUpdate(phone="12"), admin),
        lambda: companies.update_company(
            session, parent.id, CompanyUpdate(parent_id=child.id), admin
        ),
        lambda: companies.create_company(
            session, CompanyCreate(name="Bad", website="http://"), admin
        ),
    ]
    for fail in failures:
        with pytest.raises(IchigenError):
            fail()
        session.rollback()
    assert audit_count(session) == before
    assert contacts.get_contact(session, taken.id, admin).city is None


def test_record_and_audit_entry_commit_or_roll_back_together(
    session: Session, admin: Actor
) -> None:
    results = contacts.write_contacts(
        session, [{"last_name": "Pending", "email": "p@example.com"}], admin, commit=False
    )
    assert results[0].status == "created"
    # Inside the unit of work both are there...
    assert row_count(session, Contact) == 1 and audit_count(session, "contacts") == 1
    session.rollback()
    # ...and after a rollback neither is.
    assert row_count(session, Contact) == 0 and audit_count(session, "contacts") == 0


def test_every_audited_write_names_its_actor(session: Session, admin: Actor) -> None:
    defined = field(session, "score", "number")
    custom_fields.update_field(session, defined.id, CustomFieldUpdate(label="NPS"), admin)
    with pytest.raises(PreconditionFailed):
        custom_fields.update_field(
            session, defined.id, CustomFieldUpdate(label="Other"), admin, if_version=1
        )
    custom_fields.delete_field(session, defined.id, admin)
    actions = [(e.action, e.actor_label) for e in record_history(session, "custom_fields", 1)]
    assert actions == [
        ("delete", "admin@example.com"),
        ("update", "admin@example.com"),
        ("create", "test-setup"),
    ]
    labels = {
        e.actor_label
        for e in session.scalars(select(AuditEntry).where(AuditEntry.entity == "custom_fields"))
    }
    assert labels == {"admin@example.com", "test-setup"}


def test_conflicting_company_name_write_is_not_half_done(session: Session, admin: Actor) -> None:
    company(session, "Holder", admin, external_id="EXT-1")
    second = company(session, "Second", admin)
    before = audit_count(session, "companies")
    with pytest.raises(Conflict):
        companies.update_company(
            session, second.id, CompanyUpdate(external_id="EXT-1", city="Nagoya"), admin
        )
    session.rollback()
    assert companies.get_company(session, second.id, admin).city is None
    assert audit_count(session, "companies") == before
    with pytest.raises(ValidationFailed):
        companies.update_company(session, second.id, CompanyUpdate(phone="not a phone"), admin)
    assert audit_count(session, "companies") == before
