"""The rules of a contact's fields: emails, phones, companies, owners, names, versions;
on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import company, contact, row_count, user

from ichigen.auth import service as auth_service
from ichigen.core.audit import Actor, record_history
from ichigen.core.db import Database
from ichigen.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts import service
from ichigen.crm.contacts.models import ContactEmail, ContactSearchTerm
from ichigen.crm.contacts.schemas import ContactCreate, ContactUpdate


def _invalid(session: Session, admin: Actor, **fields: Any) -> dict[tuple[Any, ...], str]:
    with pytest.raises(ValidationFailed) as info:
        service.create_contact(session, ContactCreate(**fields), admin)
    assert info.value.status == 422
    return {e.loc: e.msg for e in info.value.errors}


def test_emails_are_validated_lower_cased_and_one_is_primary(
    session: Session, admin: Actor
) -> None:
    created = contact(
        session,
        admin,
        last_name="Mail",
        emails=[
            {"email": "Work@Example.COM", "label": "work"},
            {"email": "home@example.org", "label": "personal", "primary": True},
            {"email": "WORK@example.com"},  # the same address again
        ],
    )
    assert created.primary_email == "home@example.org"
    assert [(e.email, e.primary) for e in created.emails] == [
        ("home@example.org", True),
        ("work@example.com", False),
    ]
    # Without a primary, the first becomes primary; the shorthand ``email`` wins over the list.
    first = contact(session, admin, emails=[{"email": "a@example.com"}, {"email": "b@example.com"}])
    assert first.primary_email == "a@example.com"
    short = contact(
        session, admin, email="C@example.com", emails=[{"email": "d@example.com", "primary": True}]
    )
    assert [(e.email, e.primary) for e in short.emails] == [
        ("c@example.com", True),
        ("d@example.com", False),
    ]


def test_bad_emails_are_422_with_their_path(session: Session, admin: Actor) -> None:
    assert set(_invalid(session, admin, last_name="X", email="not-an-email")) == {("email",)}
    errors = _invalid(
        session, admin, last_name="X", emails=[{"email": "ok@example.com"}, {"email": "a@b@c"}]
    )
    assert set(errors) == {("emails", 1, "email")}
    errors = _invalid(
        session,
        admin,
        last_name="X",
        emails=[
            {"email": "one@example.com", "primary": True},
            {"email": "two@example.com", "primary": True},
        ],
    )
    assert errors == {("emails",): "only one may be primary"}
    assert service.list_contacts(session, admin).items == []


def test_an_email_belongs_to_one_contact_only(session: Session, admin: Actor) -> None:
    holder = contact(session, admin, last_name="First", email="shared@example.com")
    other = contact(session, admin, last_name="Second", email="mine@example.com")
    with pytest.raises(Conflict) as info:
        service.create_contact(
            session, ContactCreate(last_name="Dup", email="SHARED@example.com"), admin
        )
    assert info.value.status == 409
    assert info.value.errors[0].loc == ("email",)
    assert str(holder.id) in info.value.errors[0].msg
    with pytest.raises(Conflict) as info:
        service.update_contact(
            session,
            other.id,
            ContactUpdate.model_validate(
                {"emails": [{"email": "mine@example.com"}, {"email": "shared@example.com"}]}
            ),
            admin,
        )
    assert [(e.loc, e.msg) for e in info.value.errors] == [
        (("emails", 1), f"shared@example.com belongs to contact {holder.id}")
    ]
    assert service.get_contact(session, other.id, admin).primary_email == "mine@example.com"
    # A contact may keep (and re-send) its own address.
    again = service.update_contact(
        session, holder.id, ContactUpdate(email="shared@example.com", city="Nagoya"), admin
    )
    assert again.city == "Nagoya"


def test_phones_become_e164_with_the_default_region(session: Session, admin: Actor) -> None:
    created = contact(
        session,
        admin,
        last_name="Phone",
        phone="090-1234-5678",
        phones=[{"number": "+1 (650) 253-0000", "label": "work"}, {"number": "03 1234 5678"}],
    )
    assert created.primary_phone == "+819012345678"
    assert [p.number for p in created.phones] == ["+819012345678", "+16502530000", "+81312345678"]
    errors = _invalid(session, admin, last_name="X", phone="12", phones=[{"number": "abc"}])
    assert set(errors) == {("phone",), ("phones", 0, "number")}


def test_default_phone_region_comes_from_settings(db: Database) -> None:
    us = Database(db.engine, db.settings.model_copy(update={"default_phone_region": "US"}))
    with us.sessionmaker() as session:
        admin = Actor.system()
        created = service.create_contact(
            session, ContactCreate(last_name="Smith", phone="(650) 253-0000"), admin
        )
        assert created.primary_phone == "+16502530000"


def test_email_domain_links_a_new_contact_to_its_company(session: Session, admin: Actor) -> None:
    sakura = company(session, "株式会社サクラ精工", admin, website="https://www.sakura-seiko.co.jp")
    assert sakura.domain == "sakura-seiko.co.jp"
    linked = contact(session, admin, last_name="山田", email="yamada@sakura-seiko.co.jp")
    assert linked.company_id == sakura.id
    assert linked.company is not None and linked.company.name == "株式会社サクラ精工"
    # Free mail says nothing about an employer.
    free = contact(session, admin, last_name="Free", email="someone@gmail.com")
    assert free.company_id is None
    # An explicit company wins over the domain.
    other = company(session, "Other KK", admin)
    explicit = contact(
        session, admin, last_name="X", email="x@sakura-seiko.co.jp", company_id=other.id
    )
    assert explicit.company_id == other.id
    # Updates do not re-link.
    moved = service.update_contact(
        session, free.id, ContactUpdate(email="free@sakura-seiko.co.jp"), admin
    )
    assert moved.company_id is None


def test_ambiguous_domain_or_setting_off_links_nothing(db: Database, session: Session) -> None:
    admin = Actor.system()
    company(session, "Twin A", admin, domain="twins.example")
    company(session, "Twin B", admin, domain="twins.example")
    assert contact(session, admin, email="a@twins.example").company_id is None
    solo = company(session, "Solo", admin, domain="solo.example")
    off = Database(db.engine, db.settings.model_copy(update={"auto_associate_company": False}))
    with off.sessionmaker() as other:
        made = service.create_contact(other, ContactCreate(email="b@solo.example"), admin)
        assert made.company_id is None
    assert contact(session, admin, email="c@solo.example").company_id == solo.id


def test_company_name_links_or_creates_the_company(session: Session, admin: Actor) -> None:
    existing = company(session, "Acme", admin)
    linked = contact(session, admin, last_name="A", company_name="ＡＣＭＥ")
    assert linked.company_id == existing.id
    made = contact(session, admin, last_name="B", company_name="  New Corp  ")
    assert made.company is not None and made.company.name == "New Corp"
    again = contact(session, admin, last_name="C", company_name="new corp")
    assert again.company_id == made.company_id
    [entry] = record_history(session, "companies", made.company_id or 0)
    assert entry.action == "create" and entry.actor_label == "admin@example.com"
    assert len(companies.list_companies(session, admin).items) == 2
    errors = _invalid(session, admin, last_name="X", company_id=999_999)
    assert errors == {("company_id",): "no such company"}


def test_owner_by_email_or_name_and_inactive_owners(session: Session, admin: Actor) -> None:
    rep = user(session, "rep@example.com")
    gone = user(session, "gone@example.com")
    auth_service.delete_user(session, gone.id, admin)
    assert contact(session, admin, last_name="A", owner="REP@example.com").owner_id == rep.id
    assert contact(session, admin, last_name="B", owner="rep").owner_id == rep.id  # by name
    assert contact(session, admin, last_name="C", owner_id=rep.id).owner_id == rep.id
    assert _invalid(session, admin, last_name="X", owner="nobody@example.com") == {
        ("owner",): "no single user has this email or name"
    }
    assert _invalid(session, admin, last_name="X", owner_id=gone.id) == {
        ("owner_id",): "the owner is an inactive user"
    }
    assert _invalid(session, admin, last_name="X", owner="gone@example.com") == {
        ("owner_id",): "the owner is an inactive user"
    }
    assert _invalid(session, admin, last_name="X", owner_id=999_999) == {
        ("owner_id",): "no such user"
    }


@pytest.mark.parametrize(
    ("fields", "full_name"),
    [
        ({"last_name": "山田", "first_name": "太郎"}, "山田 太郎"),
        ({"last_name": "Smith", "first_name": "John"}, "John Smith"),
        ({"last_name": "ヤマダ", "first_name": "Taro"}, "ヤマダ Taro"),
        ({"first_name": "Madonna"}, "Madonna"),
        ({"last_name": "佐藤"}, "佐藤"),
        ({"email": "Only@Example.com"}, "only@example.com"),
    ],
)
def test_full_name_order(
    session: Session, admin: Actor, fields: dict[str, str], full_name: str
) -> None:
    assert contact(session, admin, **fields).full_name == full_name


def test_a_contact_needs_a_name_or_an_email(session: Session, admin: Actor) -> None:
    assert _invalid(session, admin, city="Tokyo") == {
        ("last_name",): "a contact needs a name or an email"
    }
    created = contact(session, admin, last_name="X")
    with pytest.raises(ValidationFailed):
        service.update_contact(session, created.id, ContactUpdate(last_name=None), admin)


def test_plain_fields_are_cleaned(session: Session, admin: Actor) -> None:
    created = contact(
        session,
        admin,
        last_name="  Clean  ",
        country="jp",
        tags=["a", "b", "a"],
        job_title="   ",
        lifecycle_stage="mql",
    )
    assert (created.last_name, created.country, created.tags, created.job_title) == (
        "Clean",
        "JP",
        ["a", "b"],
        None,
    )
    assert created.lifecycle_stage == "mql"
    assert created.do_not_email is False


def test_patch_changes_only_what_is_sent(session: Session, admin: Actor) -> None:
    created = contact(
        session,
        admin,
        last_name="Patch",
        email="patch@example.com",
        phone="03-1234-5678",
        city="Osaka",
        tags=["x"],
    )
    updated = service.update_contact(session, created.id, ContactUpdate(job_title="CTO"), admin)
    assert (updated.job_title, updated.city, updated.primary_email, updated.tags) == (
        "CTO",
        "Osaka",
        "patch@example.com",
        ["x"],
    )
    assert updated.version == created.version + 1
    cleared = service.update_contact(
        session, created.id, ContactUpdate(city=None, tags=None, phones=[]), admin
    )
    assert (cleared.city, cleared.tags, cleared.phones, cleared.primary_phone) == (
        None,
        [],
        [],
        None,
    )


def test_optimistic_concurrency(session: Session, admin: Actor) -> None:
    created = contact(session, admin, last_name="V")
    first = service.update_contact(
        session, created.id, ContactUpdate(city="A"), admin, if_version=created.version
    )
    with pytest.raises(PreconditionFailed) as info:
        service.update_contact(
            session, created.id, ContactUpdate(city="B"), admin, if_version=created.version
        )
    assert info.value.status == 412
    assert service.get_contact(session, created.id, admin).city == "A"
    with pytest.raises(PreconditionFailed):
        service.delete_contact(session, created.id, admin, if_version=created.version)
    service.delete_contact(session, created.id, admin, if_version=first.version)
    with pytest.raises(NotFound):
        service.get_contact(session, created.id, admin)
    with pytest.raises(NotFound):
        service.update_contact(session, created.id, ContactUpdate(city="C"), admin)
    with pytest.raises(NotFound):
        service.delete_contact(session, created.id, admin)


def test_deleting_a_contact_removes_its_emails_for_reuse(session: Session, admin: Actor) -> None:
    gone = contact(session, admin, last_name="Gone", email="reuse@example.com")
    service.delete_contact(session, gone.id, admin)
    assert row_count(session, ContactEmail) == 0 and row_count(session, ContactSearchTerm) == 0
    assert contact(session, admin, email="reuse@example.com").primary_email == "reuse@example.com"


def test_deleting_a_company_unlinks_its_contacts(session: Session, admin: Actor) -> None:
    acme = company(session, "Acme", admin)
    linked = contact(session, admin, last_name="L", company_id=acme.id)
    companies.delete_company(session, acme.id, admin)
    session.expire_all()
    assert service.get_contact(session, linked.id, admin).company_id is None
