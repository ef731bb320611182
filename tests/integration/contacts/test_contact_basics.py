"""Creating and finding a contact through the service, on both engines."""

from __future__ import annotations

from sqlalchemy.orm import Session

from ichigen.core.audit import Actor, record_history
from ichigen.crm.contacts import service
from ichigen.crm.contacts.schemas import ContactCreate


def test_create_contact_normalises_and_is_found_by_quick_search(
    session: Session, admin: Actor
) -> None:
    created = service.create_contact(
        session,
        ContactCreate(
            last_name="山田",
            first_name="太郎",
            last_name_reading="ヤマダ",
            email="Taro@Example.CO.JP",
            phone="090-1234-5678",
        ),
        admin,
    )
    assert created.full_name == "山田 太郎"
    assert created.primary_email == "taro@example.co.jp"
    assert created.primary_phone == "+819012345678"
    for query in ("やまだ", "山田太郎", "taro@", "0901234"):
        page = service.list_contacts(session, admin, q=query)
        assert [c.id for c in page.items] == [created.id], query
    [entry] = record_history(session, "contacts", created.id)
    assert entry.action == "create" and entry.changes["last_name"] == [None, "山田"]
