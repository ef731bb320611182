"""Bulk upsert of contacts (by email and by external id) and of companies, on both engines."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import audit_count, company, contact, field, row_count

from ichigen.core.audit import Actor, record_history
from ichigen.core.errors import BadRequest
from ichigen.crm.companies import service as companies
from ichigen.crm.companies.models import Company
from ichigen.crm.contacts import service
from ichigen.crm.contacts.models import Contact


def _by_email(session: Session, admin: Actor, email: str) -> Any:
    found = service.find_contact_by_email(session, email, admin)
    assert found is not None, email
    return found


def test_upsert_by_email_lands_valid_records_and_reports_invalid_ones(
    session: Session, admin: Actor
) -> None:
    field(session, "score", "number")
    old = contact(session, admin, last_name="Old", email="old@example.com", city="Kobe")
    records: list[dict[str, Any]] = [
        {"email": "new@example.com", "last_name": "New", "custom": {"score": 5}},
        {"email": "OLD@example.com", "city": "Kyoto"},
        {"email": "broken", "last_name": "Bad"},
        {"email": "x@example.com", "lifecycle_stage": "vip"},
        {"email": "y@example.com", "unknown_field": 1},
        {"email": "z@example.com", "custom": {"score": "many"}},
        {"email": "p@example.com", "phones": [{"number": "12"}]},
        {"email": "old@example.com", "city": "Kyoto"},  # the same again, later in the batch
        {"last_name": "No email", "tags": ["a"] * 2},
    ]
    results = service.bulk_upsert_contacts(session, records, admin, match_on="email")
    statuses = [r.status for r in results]
    assert statuses == [
        "created",
        "updated",
        "error",
        "error",
        "error",
        "error",
        "error",
        "error",
        "created",
    ]
    assert [r.index for r in results] == list(range(len(records)))
    locs: dict[int, list[tuple[Any, ...]]] = {
        r.index: [tuple(e["loc"]) for e in r.errors]  # type: ignore[arg-type]
        for r in results
        if r.errors
    }
    assert locs == {
        2: [("email",)],
        3: [("lifecycle_stage",)],
        4: [("unknown_field",)],
        5: [("custom", "score")],
        6: [("phones", 0, "number")],
        7: [("emails", 0)],
    }
    assert results[1].id == old.id
    assert _by_email(session, admin, "old@example.com").city == "Kyoto"
    assert _by_email(session, admin, "new@example.com").custom == {"score": 5}
    for bad in ("broken", "x@example.com", "y@example.com", "z@example.com", "p@example.com"):
        assert service.find_contact_by_email(session, bad, admin) is None
    assert row_count(session, Contact) == 3


def test_repeating_an_upsert_changes_nothing(session: Session, admin: Actor) -> None:
    records = [{"email": "same@example.com", "last_name": "Same", "tags": ["a"]}]
    [first] = service.bulk_upsert_contacts(session, records, admin)
    audits = audit_count(session, "contacts")
    [second] = service.bulk_upsert_contacts(session, records, admin)
    assert (first.status, second.status, second.id) == ("created", "unchanged", first.id)
    assert audit_count(session, "contacts") == audits
    assert _by_email(session, admin, "same@example.com").version == 1


def test_upsert_by_external_id(session: Session, admin: Actor) -> None:
    existing = contact(session, admin, last_name="Ext", external_id="CRM-1", email="e@example.com")
    results = service.bulk_upsert_contacts(
        session,
        [
            {"external_id": "CRM-1", "city": "Fukuoka", "email": "e2@example.com"},
            {"external_id": "CRM-2", "last_name": "Second"},
            {"last_name": "No key"},
        ],
        admin,
        match_on="external_id",
    )
    assert [r.status for r in results] == ["updated", "created", "error"]
    assert results[0].id == existing.id
    assert results[2].errors[0]["loc"] == ["external_id"]
    updated = service.get_contact(session, existing.id, admin)
    assert (updated.city, updated.primary_email) == ("Fukuoka", "e2@example.com")


def test_create_and_update_modes(session: Session, admin: Actor) -> None:
    contact(session, admin, last_name="Here", email="here@example.com")
    created = service.bulk_upsert_contacts(
        session,
        [{"email": "here@example.com", "last_name": "Again"}, {"email": "fresh@example.com"}],
        admin,
        mode="create",
    )
    assert [r.status for r in created] == ["error", "created"]
    assert created[0].errors[0]["loc"] == ["email"]
    updated = service.bulk_upsert_contacts(
        session,
        [{"email": "here@example.com", "city": "Sendai"}, {"email": "missing@example.com"}],
        admin,
        mode="update",
    )
    assert [r.status for r in updated] == ["updated", "error"]
    assert service.find_contact_by_email(session, "missing@example.com", admin) is None


def test_dry_run_writes_nothing(session: Session, admin: Actor) -> None:
    existing = contact(session, admin, last_name="Dry", email="dry@example.com")
    before = (
        row_count(session, Contact),
        row_count(session, Company),
        audit_count(session),
    )
    results = service.bulk_upsert_contacts(
        session,
        [
            {"email": "dry@example.com", "city": "Nara"},
            {"email": "wet@example.com", "last_name": "Wet", "company_name": "Brand New KK"},
            {"email": "bad"},
        ],
        admin,
        dry_run=True,
    )
    assert [r.status for r in results] == ["updated", "created", "error"]
    session.rollback()
    after = (row_count(session, Contact), row_count(session, Company), audit_count(session))
    assert after == before
    assert service.get_contact(session, existing.id, admin).city is None
    assert service.find_contact_by_email(session, "wet@example.com", admin) is None


def test_more_than_the_limit_is_refused_before_anything_is_written(
    session: Session, admin: Actor
) -> None:
    records = [{"email": f"p{n}@example.com"} for n in range(1001)]
    with pytest.raises(BadRequest) as info:
        service.bulk_upsert_contacts(session, records, admin)
    assert info.value.status == 400
    assert info.value.errors[0].loc == ("body", "records")
    assert row_count(session, Contact) == 0
    # Exactly the limit is fine, and lands in one go with one audit entry each.
    results = service.bulk_upsert_contacts(session, records[:1000], admin)
    assert {r.status for r in results} == {"created"}
    assert row_count(session, Contact) == 1000
    assert audit_count(session, "contacts") == 1000


def test_bulk_links_companies_by_name_and_domain(session: Session, admin: Actor) -> None:
    acme = company(session, "Acme", admin, domain="acme.example")
    results = service.bulk_upsert_contacts(
        session,
        [
            {"email": "a@acme.example", "last_name": "A"},
            {"email": "b@elsewhere.example", "last_name": "B", "company_name": "Beta KK"},
            {"email": "c@elsewhere.example", "last_name": "C", "company_name": "beta kk"},
        ],
        admin,
    )
    ids = [r.id for r in results]
    a, b, c = (service.get_contact(session, i or 0, admin) for i in ids)
    assert a.company_id == acme.id
    assert b.company_id is not None and b.company_id == c.company_id
    assert [entry.action for entry in record_history(session, "companies", b.company_id)] == [
        "create"
    ]


def test_company_bulk_upsert(session: Session, admin: Actor) -> None:
    existing = company(session, "Existing", admin, external_id="ACC-1", domain="existing.example")
    by_ext = companies.bulk_upsert_companies(
        session,
        [
            {"external_id": "ACC-1", "name": "Existing", "employees": 10},
            {"external_id": "ACC-2", "name": "Second"},
            {"external_id": "ACC-3"},  # no name
            {"external_id": "ACC-4", "name": "Bad", "phone": "12"},
            {"external_id": "ACC-5", "name": "Typo", "employes": 3},
            {"external_id": "ACC-1", "name": "Existing", "employees": 10},
        ],
        "external_id",
        admin,
    )
    assert [r.status for r in by_ext] == [
        "updated",
        "created",
        "error",
        "error",
        "error",
        "unchanged",
    ]
    assert by_ext[0].id == existing.id
    assert [e["loc"] for e in by_ext[2].errors] == [["name"]]
    assert [e["loc"] for e in by_ext[3].errors] == [["phone"]]
    assert [e["loc"] for e in by_ext[4].errors] == [["employes"]]
    by_domain = companies.bulk_upsert_companies(
        session,
        [{"domain": "https://www.existing.example/", "name": "Existing", "city": "Tokyo"}],
        "domain",
        admin,
    )
    assert (by_domain[0].status, by_domain[0].id) == ("updated", existing.id)
    assert companies.get_company(session, existing.id, admin).city == "Tokyo"
    with pytest.raises(BadRequest):
        companies.bulk_upsert_companies(session, [{}] * 1001, "external_id", admin)
    with pytest.raises(BadRequest):
        companies.bulk_upsert_companies(session, [{}], "name", admin)
