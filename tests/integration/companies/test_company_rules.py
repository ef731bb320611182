"""Companies through their service: domains, phones, parents, external ids, owners, search;
on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import audit_count, company, user

from ichigen.auth import service as auth_service
from ichigen.core.audit import Actor, record_history
from ichigen.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from ichigen.crm.companies import service
from ichigen.crm.companies.schemas import CompanyCreate, CompanyUpdate


def _invalid(session: Session, admin: Actor, **fields: Any) -> dict[tuple[Any, ...], str]:
    with pytest.raises(ValidationFailed) as info:
        service.create_company(session, CompanyCreate(**fields), admin)
    return {e.loc: e.msg for e in info.value.errors}


@pytest.mark.parametrize(
    ("fields", "domain", "website"),
    [
        ({"website": "https://www.Sakura-Seiko.co.jp/about"}, "sakura-seiko.co.jp", None),
        ({"website": "sakura-seiko.co.jp"}, "sakura-seiko.co.jp", "https://sakura-seiko.co.jp"),
        ({"domain": "WWW.Example.COM"}, "example.com", None),
        ({"domain": "given.example", "website": "https://other.example"}, "given.example", None),
        ({}, None, None),
    ],
)
def test_domain_comes_from_the_website_unless_given(
    session: Session,
    admin: Actor,
    fields: dict[str, str],
    domain: str | None,
    website: str | None,
) -> None:
    created = company(session, "Co", admin, **fields)
    assert created.domain == domain
    if website:
        assert created.website == website


def test_bad_values_are_422_with_their_field(session: Session, admin: Actor) -> None:
    assert set(_invalid(session, admin, name="X", domain="not a domain")) == {("domain",)}
    assert set(_invalid(session, admin, name="X", website="http://")) == {("website",)}
    assert set(_invalid(session, admin, name="X", phone="12")) == {("phone",)}
    assert set(_invalid(session, admin, name="X", owner_id=999)) == {("owner_id",)}
    assert audit_count(session, "companies") == 0


def test_phone_and_country_are_normalised(session: Session, admin: Actor) -> None:
    created = company(
        session, "Phone Co", admin, phone="06-1234-5678", country="jp", tags=["a", "a", "b"]
    )
    assert (created.phone, created.country, created.tags) == ("+81612345678", "JP", ["a", "b"])
    us = company(session, "US Co", admin, phone="+1 212 555 0100")
    assert us.phone == "+12125550100"


def test_revenue_is_exact(session: Session, admin: Actor) -> None:
    created = company(
        session, "Rich", admin, annual_revenue=Decimal("1234567.89"), revenue_currency="JPY"
    )
    assert service.get_company(session, created.id, admin).annual_revenue == Decimal("1234567.89")


def test_parent_cycles_are_refused(session: Session, admin: Actor) -> None:
    top = company(session, "Top", admin)
    middle = company(session, "Middle", admin, parent_id=top.id)
    bottom = company(session, "Bottom", admin, parent_id=middle.id)
    for child, parent in [(top.id, bottom.id), (top.id, middle.id), (middle.id, middle.id)]:
        with pytest.raises(ValidationFailed) as info:
            service.update_company(session, child, CompanyUpdate(parent_id=parent), admin)
        assert [(e.loc, e.msg) for e in info.value.errors] == [
            (("parent_id",), "would make a cycle")
        ]
    assert _invalid(session, admin, name="Orphan", parent_id=999_999) == {
        ("parent_id",): "no such company"
    }
    assert service.get_company(session, top.id, admin).parent_id is None
    # Moving within the tree without a cycle is fine, and so is clearing the parent.
    moved = service.update_company(session, bottom.id, CompanyUpdate(parent_id=top.id), admin)
    assert moved.parent_id == top.id
    cleared = service.update_company(session, bottom.id, CompanyUpdate(parent_id=None), admin)
    assert cleared.parent_id is None


def test_deleting_a_parent_orphans_its_children(session: Session, admin: Actor) -> None:
    top = company(session, "Top", admin)
    child = company(session, "Child", admin, parent_id=top.id)
    service.delete_company(session, top.id, admin)
    session.expire_all()
    assert service.get_company(session, child.id, admin).parent_id is None
    with pytest.raises(NotFound):
        service.get_company(session, top.id, admin)


def test_external_ids_are_unique(session: Session, admin: Actor) -> None:
    first = company(session, "First", admin, external_id="SF-1")
    with pytest.raises(Conflict) as info:
        company(session, "Second", admin, external_id="SF-1")
    assert info.value.status == 409 and info.value.errors[0].loc == ("external_id",)
    second = company(session, "Second", admin, external_id="SF-2")
    with pytest.raises(Conflict):
        service.update_company(session, second.id, CompanyUpdate(external_id="SF-1"), admin)
    # Keeping one's own external id is not a conflict.
    same = service.update_company(
        session, first.id, CompanyUpdate(external_id="SF-1", city="Tokyo"), admin
    )
    assert same.city == "Tokyo"


def test_owner_must_be_an_active_user(session: Session, admin: Actor) -> None:
    rep = user(session, "rep@example.com")
    gone = user(session, "gone@example.com")
    auth_service.delete_user(session, gone.id, admin)
    assert company(session, "Owned", admin, owner_id=rep.id).owner_id == rep.id
    assert _invalid(session, admin, name="X", owner_id=gone.id) == {
        ("owner_id",): "the owner is an inactive user"
    }


def test_update_is_a_patch_with_versions_and_audit(session: Session, admin: Actor) -> None:
    created = company(session, "Patch KK", admin, city="Osaka", industry="Retail")
    updated = service.update_company(
        session, created.id, CompanyUpdate(employees=50), admin, if_version=created.version
    )
    assert (updated.city, updated.industry, updated.employees) == ("Osaka", "Retail", 50)
    assert updated.version == created.version + 1
    with pytest.raises(PreconditionFailed):
        service.update_company(
            session, created.id, CompanyUpdate(employees=60), admin, if_version=created.version
        )
    with pytest.raises(PreconditionFailed):
        service.delete_company(session, created.id, admin, if_version=created.version)
    with pytest.raises(ValidationFailed) as info:
        service.update_company(session, created.id, CompanyUpdate(name=None), admin)
    assert info.value.errors[0].loc == ("name",)
    renamed = service.update_company(
        session, created.id, CompanyUpdate(name="株式会社 改名"), admin
    )
    assert [c.id for c in service.list_companies(session, admin, q="改名").items] == [renamed.id]
    history = record_history(session, "companies", created.id)
    assert [e.action for e in history] == ["update", "update", "create"]
    assert history[1].changes == {"employees": [None, 50]}


COMPANY_SEARCHES = {
    "サクラ": ["sakura"],
    "さくら精工": ["sakura"],
    "株式会社サクラ": ["sakura"],
    "ｻｸﾗ": ["sakura"],
    "acme": ["acme"],
    "ACME INC": ["acme"],
    "acme.example": ["acme"],
    "www.acme.example": ["acme"],
    "sakura-seiko": ["sakura"],
    "the": ["the"],
    "株式会社": ["sakura"],  # the full name starts with it
    "zzz": [],
}


def test_company_search(session: Session, admin: Actor) -> None:
    made = {
        "sakura": company(session, "株式会社サクラ精工", admin, domain="sakura-seiko.co.jp"),
        "acme": company(session, "Acme Inc.", admin, website="https://acme.example"),
        "the": company(session, "The Theatre Company", admin),
    }
    names = {c.id: key for key, c in made.items()}
    wrong = {}
    for query, expected in COMPANY_SEARCHES.items():
        found = sorted(names[c.id] for c in service.list_companies(session, admin, q=query).items)
        if found != sorted(expected):
            wrong[query] = found
    assert wrong == {}
