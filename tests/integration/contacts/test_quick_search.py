"""Quick search by name, reading, email, phone and company, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import company, contact

from ichigen.core.audit import Actor
from ichigen.crm.contacts import service
from ichigen.crm.contacts.schemas import ContactRead, ContactUpdate


@pytest.fixture
def people(session: Session, admin: Actor) -> dict[str, ContactRead]:
    sakura = company(session, "株式会社サクラ精工", admin, domain="sakura-seiko.co.jp")
    acme = company(session, "Acme Inc.", admin, domain="acme.example")
    return {
        "yamada": contact(
            session,
            admin,
            last_name="山田",
            first_name="太郎",
            last_name_reading="ヤマダ",
            first_name_reading="タロウ",
            email="taro.yamada@sakura-seiko.co.jp",
            phone="090-1234-5678",
            company_id=sakura.id,
        ),
        "yamamoto": contact(
            session,
            admin,
            last_name="山本",
            first_name="花子",
            last_name_reading="やまもと",
            email="hanako@gmail.com",
            phone="+1 650 253 0000",
        ),
        "smith": contact(
            session,
            admin,
            first_name="John",
            last_name="Smith",
            email="john.smith@acme.example",
            company_id=acme.id,
            external_id="SF-0042",
        ),
        "nobody": contact(session, admin, last_name="Tanaka", email="t@other.example"),
    }


SEARCHES = {
    # kanji name, with and without the space, family or given name first
    "山田": ["yamada"],
    "山田 太郎": ["yamada"],
    "山田太郎": ["yamada"],
    "太郎": ["yamada"],
    "山": ["yamada", "yamamoto"],
    # the reading, stored in katakana, found in hiragana, katakana and half-width katakana
    "やまだ": ["yamada"],
    "ヤマダ": ["yamada"],
    "ﾔﾏﾀﾞ": ["yamada"],
    "やまだたろう": ["yamada"],
    "やま": ["yamada", "yamamoto"],
    # the reading stored in hiragana, found in katakana
    "ヤマモト": ["yamamoto"],
    # Latin names, any case and width
    "john": ["smith"],
    "SMITH": ["smith"],
    "Ｓｍｉｔｈ": ["smith"],
    "john smith": ["smith"],
    # email and its domain
    "taro.yamada@": ["yamada"],
    "HANAKO@GMAIL.COM": ["yamamoto"],
    "acme.example": ["smith"],
    # phone, national or international, with or without punctuation
    "090-1234": ["yamada"],
    "09012345678": ["yamada"],
    "+8190": ["yamada"],
    "650 253": ["yamamoto"],
    "+1650": ["yamamoto"],
    # company name, with or without its legal form, and company domain
    "サクラ精工": ["yamada"],
    "さくら": ["yamada"],
    "株式会社サクラ": ["yamada"],
    "acme": ["smith"],
    "Acme Inc": ["smith"],
    "sakura-seiko": ["yamada"],
    # external id
    "sf-0042": ["smith"],
    # no match
    "鈴木": [],
    "zzz": [],
    "%": [],
    "_": [],
}


def test_quick_search(session: Session, admin: Actor, people: dict[str, ContactRead]) -> None:
    names = {c.id: key for key, c in people.items()}
    wrong = {}
    for query, expected in SEARCHES.items():
        page = service.list_contacts(session, admin, q=query, sort="id")
        found = sorted(names[c.id] for c in page.items)
        if found != sorted(expected):
            wrong[query] = found
    assert wrong == {}


def test_blank_query_lists_everyone(
    session: Session, admin: Actor, people: dict[str, ContactRead]
) -> None:
    for blank in ("", "   ", "\u3000"):
        assert len(service.list_contacts(session, admin, q=blank).items) == len(people)


def test_search_follows_edits(
    session: Session, admin: Actor, people: dict[str, ContactRead]
) -> None:
    yamada = people["yamada"]
    service.update_contact(
        session,
        yamada.id,
        ContactUpdate(last_name="鈴木", last_name_reading="スズキ", phones=[]),
        admin,
    )
    found = service.list_contacts(session, admin, q="すずき").items
    assert [c.id for c in found] == [yamada.id]
    assert service.list_contacts(session, admin, q="ヤマダ").items == []
    assert service.list_contacts(session, admin, q="090-1234").items == []
    # Other search terms are kept: the email still finds the contact.
    assert [c.id for c in service.list_contacts(session, admin, q="taro.yamada").items] == [
        yamada.id
    ]


def test_search_combines_with_filters_and_paging(
    session: Session, admin: Actor, people: dict[str, ContactRead]
) -> None:
    first = service.list_contacts(session, admin, q="やま", sort="name", limit=1)
    assert first.next_cursor is not None
    second = service.list_contacts(
        session, admin, q="やま", sort="name", limit=1, cursor=first.next_cursor
    )
    assert {first.items[0].id, second.items[0].id} == {
        people["yamada"].id,
        people["yamamoto"].id,
    }
    assert second.next_cursor is None
    only = service.list_contacts(session, admin, q="やま", filters=["email:contains:gmail"])
    assert [c.id for c in only.items] == [people["yamamoto"].id]
