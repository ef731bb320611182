"""Filters (every operator on several kinds of field), sorting and cursor pagination,
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import company, field, user

from ichigen.core import clock
from ichigen.core.audit import Actor
from ichigen.core.clock import FixedClock, SystemClock
from ichigen.core.errors import BadRequest
from ichigen.crm.companies import service as companies
from ichigen.crm.companies.schemas import CompanyRead
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate, ContactRead

START = datetime(2026, 1, 1, tzinfo=UTC)
CITIES = ["kobe", "osaka", None, "tokyo", "kyoto", "osaka", None, "nara", "tokyo", "sendai"]


@pytest.fixture
def ticking() -> Iterator[FixedClock]:
    fixed = FixedClock(START)
    clock.set_clock(fixed)
    yield fixed
    clock.set_clock(SystemClock())


@pytest.fixture
def rows(session: Session, admin: Actor, ticking: FixedClock) -> list[ContactRead]:
    """Ten contacts with varied, partly missing values, each created a minute apart."""
    owner = user(session, "owner@example.com")
    field(session, "score", "number")
    made = []
    for n, city in enumerate(CITIES):
        ticking.at = START + timedelta(minutes=n)
        record: dict[str, Any] = {
            "first_name": f"Name{n % 4}",
            "last_name": ["Abe", "Baba", "Chiba", "Doi", "Endo"][n % 5],
            "email": f"person{n}@example.com" if n != 3 else None,
            "city": city,
            "owner_id": owner.id if n % 3 == 0 else None,
            "do_not_email": n % 2 == 1,
            "tags": ["vip", "expo"] if n % 4 == 0 else (["expo"] if n % 4 == 1 else []),
            "lifecycle_stage": ["lead", "customer", None][n % 3],
            "custom": {"score": n * 10} if n % 5 != 4 else {},
        }
        made.append(contacts.create_contact(session, _create(record), admin))
    return made


def _create(record: dict[str, Any]) -> ContactCreate:
    return ContactCreate.model_validate({k: v for k, v in record.items() if v is not None})


def _ids(session: Session, admin: Actor, *filters: str, **kw: Any) -> list[int]:
    page = contacts.list_contacts(session, admin, filters=list(filters), sort="id", limit=500, **kw)
    return [c.id for c in page.items]


def _where(rows: list[Any], keep: Callable[[Any], bool]) -> list[int]:
    return [c.id for c in rows if keep(c)]


def test_every_operator_on_several_kinds_of_field(
    session: Session, admin: Actor, rows: list[ContactRead]
) -> None:
    owner_id = next(c.owner_id for c in rows if c.owner_id)
    at = START + timedelta(minutes=4)
    cases: dict[str, Callable[[ContactRead], bool]] = {
        # text
        "city:eq:osaka": lambda c: c.city == "osaka",
        "city:ne:osaka": lambda c: c.city != "osaka",  # missing values are "not osaka"
        "city:lt:nara": lambda c: c.city is not None and c.city < "nara",
        "city:lte:nara": lambda c: c.city is not None and c.city <= "nara",
        "city:gt:osaka": lambda c: c.city is not None and c.city > "osaka",
        "city:gte:osaka": lambda c: c.city is not None and c.city >= "osaka",
        "city:in:kobe,nara,sapporo": lambda c: c.city in ("kobe", "nara"),
        "city:contains:ak": lambda c: c.city is not None and "ak" in c.city,
        "city:startswith:to": lambda c: c.city is not None and c.city.startswith("to"),
        "city:is_null:true": lambda c: c.city is None,
        "city:is_null": lambda c: c.city is None,
        "city:is_null:false": lambda c: c.city is not None,
        # folded text: case-insensitive
        "name:eq:NAME1 BABA": lambda c: c.full_name == "Name1 Baba",
        "name:startswith:NAME2": lambda c: c.full_name.startswith("Name2"),
        "name:contains:CHI": lambda c: "Chi" in c.full_name,
        "email:eq:PERSON5@EXAMPLE.COM": lambda c: c.primary_email == "person5@example.com",
        "email:is_null:true": lambda c: c.primary_email is None,
        # int
        f"owner_id:eq:{owner_id}": lambda c: c.owner_id == owner_id,
        f"owner_id:ne:{owner_id}": lambda c: c.owner_id != owner_id,
        f"owner_id:gte:{owner_id}": lambda c: c.owner_id is not None,
        f"owner_id:lt:{owner_id}": lambda c: False,
        f"owner_id:in:{owner_id},999": lambda c: c.owner_id == owner_id,
        "owner_id:is_null:true": lambda c: c.owner_id is None,
        f"id:gt:{rows[6].id}": lambda c: c.id > rows[6].id,
        f"id:lte:{rows[2].id}": lambda c: c.id <= rows[2].id,
        # bool
        "do_not_email:eq:true": lambda c: c.do_not_email,
        "do_not_email:eq:0": lambda c: not c.do_not_email,
        "do_not_email:ne:true": lambda c: not c.do_not_email,
        # enum-like text
        "lifecycle_stage:in:lead,customer": lambda c: c.lifecycle_stage in ("lead", "customer"),
        "lifecycle_stage:is_null:true": lambda c: c.lifecycle_stage is None,
        # datetime
        f"created_at:lt:{at.isoformat()}": lambda c: c.created_at < at,
        f"created_at:gte:{at.isoformat().replace('+00:00', 'Z')}": lambda c: c.created_at >= at,
        f"created_at:eq:{at.isoformat()}": lambda c: c.created_at == at,
        "created_at:gt:2026-01-01T09:05:00+09:00": lambda c: (
            c.created_at > START + timedelta(minutes=5)
        ),
        # list
        "tags:contains:vip": lambda c: "vip" in c.tags,
        "tags:contains:expo": lambda c: "expo" in c.tags,
        "tags:contains:exp": lambda c: False,  # whole tags only
        # custom number
        "cf.score:gte:50": lambda c: c.custom.get("score", -1) >= 50,
        "cf.score:is_null:true": lambda c: "score" not in c.custom,
    }
    wrong = {}
    for flt, keep in cases.items():
        found, expected = _ids(session, admin, flt), _where(rows, keep)
        if found != expected:
            wrong[flt] = (found, expected)
    assert wrong == {}


def test_filters_combine_with_and_and_with_quick_search(
    session: Session, admin: Actor, rows: list[ContactRead]
) -> None:
    found = _ids(session, admin, "city:eq:tokyo", "do_not_email:eq:true")
    assert found == _where(rows, lambda c: c.city == "tokyo" and c.do_not_email)
    found = _ids(session, admin, "tags:contains:expo", q="baba")
    assert found == _where(rows, lambda c: "expo" in c.tags and c.last_name == "Baba")


BAD_FILTERS = {
    "owner_id:eq:me": "owner_id",
    "owner_id:in:1,x": "owner_id",
    "do_not_email:eq:perhaps": "do_not_email",
    "created_at:gt:last week": "created_at",
    "city:bigger:x": "field:op:value",
    "city": "field:op:value",
    "nosuchfield:eq:1": "unknown field",
    "owner_id:contains:1": "owner_id",
    "tags:eq:vip": "tags",
    "city:is_null:sometimes": "city",
}


def test_bad_filters_are_400_naming_the_filter(session: Session, admin: Actor) -> None:
    for flt, message in BAD_FILTERS.items():
        with pytest.raises(BadRequest) as info:
            contacts.list_contacts(session, admin, filters=["city:eq:osaka", flt])
        assert info.value.status == 400
        assert info.value.errors[0].loc == ("query", "filter", 1), flt
        assert message in info.value.detail, flt


def _walk(list_page: Callable[..., Any], sort: str, limit: int, **kw: Any) -> tuple[list[int], int]:
    ids: list[int] = []
    cursor, pages = None, 0
    while True:
        page = list_page(sort=sort, cursor=cursor, limit=limit, **kw)
        pages += 1
        ids += [item.id for item in page.items]
        if page.next_cursor is None:
            return ids, pages
        assert len(page.items) == limit
        cursor = page.next_cursor
        assert pages < 100


def _expected(rows: list[Any], key: Callable[[Any], Any], descending: bool) -> list[int]:
    """Sort by a nullable key with nulls last in both directions, ties by id."""
    present = [r for r in rows if key(r) is not None]
    missing = [r for r in rows if key(r) is None]
    present.sort(key=lambda r: (key(r), r.id), reverse=descending)
    missing.sort(key=lambda r: r.id, reverse=descending)
    return [r.id for r in present + missing]


SORTS: dict[str, Callable[[ContactRead], Any]] = {
    "id": lambda c: c.id,
    "name": lambda c: c.full_name.casefold(),
    "city": lambda c: c.city,
    "last_name": lambda c: c.last_name,
    "email": lambda c: c.primary_email,
    "owner_id": lambda c: c.owner_id,
    "created_at": lambda c: c.created_at,
    "updated_at": lambda c: c.updated_at,
    "do_not_email": lambda c: c.do_not_email,
    "lifecycle_stage": lambda c: c.lifecycle_stage.value if c.lifecycle_stage else None,
    "cf.score": lambda c: c.custom.get("score"),
}


def test_cursor_walk_returns_every_row_once_in_order(
    session: Session, admin: Actor, rows: list[ContactRead]
) -> None:
    wrong = {}
    for sort, key in SORTS.items():
        for descending in (False, True):
            spec = ("-" if descending else "") + sort
            expected = _expected(rows, key, descending)
            for limit in (1, 3, 10):
                ids, pages = _walk(
                    lambda **kw: contacts.list_contacts(session, admin, **kw), spec, limit
                )
                if ids != expected or pages != -(-len(rows) // limit):  # no empty last page
                    wrong[(spec, limit)] = (ids, pages)
    assert wrong == {}


def test_cursor_walk_with_a_filter_and_ties(
    session: Session, admin: Actor, rows: list[ContactRead]
) -> None:
    ids, _ = _walk(
        lambda **kw: contacts.list_contacts(session, admin, filters=["city:is_null:false"], **kw),
        "-city",
        2,
    )
    assert ids == _expected([c for c in rows if c.city], SORTS["city"], True)


def test_default_sort_is_newest_first(
    session: Session, admin: Actor, rows: list[ContactRead]
) -> None:
    page = contacts.list_contacts(session, admin, limit=3)
    assert [c.id for c in page.items] == [c.id for c in rows[::-1][:3]]


def test_cursors_are_checked(session: Session, admin: Actor, rows: list[ContactRead]) -> None:
    cursor = contacts.list_contacts(session, admin, sort="city", limit=2).next_cursor
    assert cursor is not None
    for bad_sort, bad_cursor in [
        ("city", cursor[:-3] + ("AAA" if not cursor.endswith("AAA") else "BBB")),
        ("city", "garbage"),
        ("-city", cursor),
        ("name", cursor),
    ]:
        with pytest.raises(BadRequest) as info:
            contacts.list_contacts(session, admin, sort=bad_sort, cursor=bad_cursor, limit=2)
        assert info.value.errors[0].loc == ("query", "cursor")
    with pytest.raises(BadRequest) as info:
        contacts.list_contacts(session, admin, sort="tags")
    assert info.value.errors[0].loc == ("query", "sort")


def test_a_cursor_survives_rows_added_before_it(
    session: Session, admin: Actor, rows: list[ContactRead], ticking: FixedClock
) -> None:
    first = contacts.list_contacts(session, admin, sort="id", limit=4)
    ticking.at = START + timedelta(hours=1)
    contacts.create_contact(session, _create({"last_name": "Late"}), admin)
    rest, _ = _walk(
        lambda **kw: contacts.list_contacts(session, admin, **kw),
        "id",
        4,
    )
    assert rest[:4] == [c.id for c in first.items]
    second = contacts.list_contacts(session, admin, sort="id", cursor=first.next_cursor, limit=50)
    assert [c.id for c in second.items] == [c.id for c in rows[4:]] + [rest[-1]]


@pytest.fixture
def company_rows(session: Session, admin: Actor, ticking: FixedClock) -> list[CompanyRead]:
    made = []
    revenues = ["1000.50", None, "250", "1000.50", None, "99999.99", "0"]
    for n, revenue in enumerate(revenues):
        ticking.at = START + timedelta(minutes=n)
        made.append(
            company(
                session,
                f"Company {chr(ord('G') - n)}",
                admin,
                annual_revenue=Decimal(revenue) if revenue else None,
                employees=n * 10 if n % 2 else None,
                industry=["Retail", "Manufacturing", None][n % 3],
                tags=["key"] if n % 2 else [],
            )
        )
    return made


COMPANY_SORTS: dict[str, Callable[[CompanyRead], Any]] = {
    "annual_revenue": lambda c: c.annual_revenue,
    "employees": lambda c: c.employees,
    "name": lambda c: c.name.casefold(),
    "industry": lambda c: c.industry,
    "updated_at": lambda c: c.updated_at,
}


def test_company_cursor_walk(
    session: Session, admin: Actor, company_rows: list[CompanyRead]
) -> None:
    wrong = {}
    for sort, key in COMPANY_SORTS.items():
        for descending in (False, True):
            spec = ("-" if descending else "") + sort
            ids, _ = _walk(lambda **kw: companies.list_companies(session, admin, **kw), spec, 2)
            if ids != _expected(company_rows, key, descending):
                wrong[spec] = ids
    assert wrong == {}


def test_company_filters(session: Session, admin: Actor, company_rows: list[CompanyRead]) -> None:
    def ids(*filters: str) -> list[int]:
        page = companies.list_companies(session, admin, filters=list(filters), sort="id")
        return [c.id for c in page.items]

    rows = company_rows
    assert ids("annual_revenue:gt:1000.5") == _where(
        rows, lambda c: c.annual_revenue is not None and c.annual_revenue > Decimal("1000.5")
    )
    assert ids("annual_revenue:eq:1000.50") == _where(
        rows, lambda c: c.annual_revenue == Decimal("1000.5")
    )
    assert ids("employees:gte:30") == _where(rows, lambda c: (c.employees or -1) >= 30)
    assert ids("industry:in:Retail") == _where(rows, lambda c: c.industry == "Retail")
    assert ids("tags:contains:key") == _where(rows, lambda c: "key" in c.tags)
    assert ids("name:startswith:company a") == _where(rows, lambda c: c.name == "Company A")
    with pytest.raises(BadRequest) as info:
        companies.list_companies(session, admin, filters=["annual_revenue:gt:a lot"])
    assert info.value.errors[0].loc == ("query", "filter", 0)


def test_text_and_list_matching_is_the_same_on_both_engines(session: Session, admin: Actor) -> None:
    """contains/startswith ignore case everywhere, and non-ASCII tags and options match."""
    field(session, "topics", "multi_select", options=["展示会", "AI"])
    hit = contacts.create_contact(
        session,
        ContactCreate(
            last_name="山田",
            last_name_reading="ヤマダ",
            first_name="太郎",
            city="Tokyo",
            tags=["展示会2026", "VIP"],
            custom={"topics": ["展示会", "AI"]},
        ),
        admin,
    )
    contacts.create_contact(
        session, ContactCreate(last_name="Other", city="Kyoto", tags=["展示会2025"]), admin
    )
    for flt in [
        "city:contains:tok",
        "city:startswith:TOK",
        "tags:contains:展示会2026",
        "tags:contains:vip",
        "cf.topics:contains:展示会",
        "cf.topics:contains:ai",
        "name:startswith:山田",
        "name:eq:山田 太郎",
        "name:in:山田 太郎,nobody",
    ]:
        assert _ids(session, admin, flt) == [hit.id], flt
    assert _ids(session, admin, "tags:contains:展示会") == []  # whole tags only
