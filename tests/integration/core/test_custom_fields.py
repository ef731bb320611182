"""Custom fields of every type: definitions, validation on write, filters, sorting and indexes,
on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session
from tests.integration.core.factories import company, contact, field

from ichigen.core import custom_fields
from ichigen.core.audit import Actor
from ichigen.core.custom_fields import (
    CustomFieldCreate,
    CustomFieldUpdate,
    FieldOption,
    FieldType,
)
from ichigen.core.db import Database
from ichigen.core.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.crm.companies import service as companies
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.schemas import ContactCreate, ContactUpdate

EVERY_TYPE: dict[str, tuple[str, list[str] | None]] = {
    "note": ("text", None),
    "score": ("number", None),
    "amount": ("decimal", None),
    "renewal": ("date", None),
    "seen_at": ("datetime", None),
    "vip": ("boolean", None),
    "tier": ("select", ["gold", "silver", "bronze"]),
    "topics": ("multi_select", ["crm", "cdp", "ai"]),
    "homepage": ("url", None),
    "alt_email": ("email", None),
    "fax": ("phone", None),
}


def _define_all(session: Session, indexed: bool = False) -> None:
    for key, (ft, options) in EVERY_TYPE.items():
        field(session, key, ft, options=options, indexed=indexed and ft != "multi_select")


def _errors(session: Session, admin: Actor, custom: dict[str, Any]) -> dict[Any, str]:
    with pytest.raises(ValidationFailed) as info:
        contacts.create_contact(session, ContactCreate(last_name="X", custom=custom), admin)
    assert info.value.status == 422
    return {e.loc: e.msg for e in info.value.errors}


def test_values_of_every_type_are_validated_and_normalised(session: Session, admin: Actor) -> None:
    _define_all(session)
    created = contact(
        session,
        admin,
        last_name="Typed",
        custom={
            "note": "hello",
            "score": "1,200",
            "amount": "1234.50",
            "renewal": "2026-04-01",
            "seen_at": "2026-01-01T09:00:00+09:00",
            "vip": "yes",
            "tier": "gold",
            "topics": ["cdp", "crm", "cdp"],
            "homepage": "https://example.com",
            "alt_email": "Alt@Example.COM",
            "fax": "03-1234-5678",
        },
    )
    assert created.custom == {
        "note": "hello",
        "score": 1200,
        "amount": "1234.5",
        "renewal": "2026-04-01",
        "seen_at": "2026-01-01T00:00:00Z",
        "vip": True,
        "tier": "gold",
        "topics": ["cdp", "crm"],
        "homepage": "https://example.com",
        "alt_email": "alt@example.com",
        "fax": "+81312345678",
    }
    assert contacts.get_contact(session, created.id, admin).custom == created.custom


def test_bad_values_are_reported_per_field_with_a_custom_loc(
    session: Session, admin: Actor
) -> None:
    _define_all(session)
    errors = _errors(
        session,
        admin,
        {
            "note": 12,
            "score": 1.5,
            "amount": "lots",
            "renewal": "2026-02-30",
            "seen_at": "tomorrow",
            "vip": "perhaps",
            "tier": "platinum",
            "topics": ["crm", "web3"],
            "homepage": "javascript:alert(1)",
            "alt_email": "nobody",
            "fax": "12",
            "undefined_key": "x",
        },
    )
    assert set(errors) == {("custom", k) for k in [*EVERY_TYPE, "undefined_key"]}
    assert errors[("custom", "tier")] == "must be one of ['bronze', 'gold', 'silver']"
    assert errors[("custom", "topics")].startswith("unknown options ['web3']")
    assert errors[("custom", "score")] == "must be a whole number"
    assert errors[("custom", "undefined_key")] == "is not a custom field of this entity"
    assert contacts.list_contacts(session, admin).items == []


def test_required_fields(session: Session, admin: Actor) -> None:
    field(session, "region_code", "text", required=True)
    assert _errors(session, admin, {}) == {("custom", "region_code"): "is required"}
    created = contact(session, admin, last_name="Has", custom={"region_code": "K"})
    # An update that does not touch it is fine; clearing it is not.
    contacts.update_contact(session, created.id, ContactUpdate(city="Kobe"), admin)
    with pytest.raises(ValidationFailed) as info:
        contacts.update_contact(
            session, created.id, ContactUpdate(custom={"region_code": ""}), admin
        )
    assert [e.loc for e in info.value.errors] == [("custom", "region_code")]


def test_setting_a_value_to_null_removes_it_and_others_are_kept(
    session: Session, admin: Actor
) -> None:
    field(session, "a", "text")
    field(session, "b", "number")
    created = contact(session, admin, last_name="X", custom={"a": "x", "b": 1})
    updated = contacts.update_contact(session, created.id, ContactUpdate(custom={"a": None}), admin)
    assert updated.custom == {"b": 1}


def test_definitions_are_checked(session: Session, admin: Actor) -> None:
    field(session, "tier", "select", options=["a"])
    with pytest.raises(Conflict) as conflict:
        field(session, "tier", "text")
    assert conflict.value.errors[0].loc == ("key",)
    # The same key on another entity is a different field.
    field(session, "tier", "text", entity="companies")
    with pytest.raises(ValidationFailed, match="at least one option"):
        field(session, "empty", "select")
    with pytest.raises(ValidationFailed, match="unique"):
        field(session, "dupes", "multi_select", options=["a", "a"])
    with pytest.raises(ValidationFailed, match="takes no options"):
        field(session, "plain", "text", options=["a"])
    with pytest.raises(ValueError, match="pattern"):
        CustomFieldCreate(entity="contacts", key="Bad Key", label="x", field_type=FieldType.text)
    with pytest.raises(ValueError, match="pattern"):
        CustomFieldCreate(entity="tickets", key="ok", label="x", field_type=FieldType.text)


def test_update_and_delete_definitions(session: Session, admin: Actor) -> None:
    defined = field(session, "tier", "select", options=["a", "b"])
    contact(session, admin, last_name="X", custom={"tier": "b"})
    with pytest.raises(ValidationFailed, match="at least one option"):
        custom_fields.update_field(session, defined.id, CustomFieldUpdate(options=[]), admin)
    changed = custom_fields.update_field(
        session,
        defined.id,
        CustomFieldUpdate(label="Tier", options=[FieldOption(value="a")]),
        admin,
        if_version=defined.version,
    )
    assert changed.version == defined.version + 1 and changed.option_values() == {"a"}
    with pytest.raises(PreconditionFailed):
        custom_fields.update_field(
            session, defined.id, CustomFieldUpdate(label="T"), admin, if_version=defined.version
        )
    custom_fields.delete_field(session, defined.id, admin)
    with pytest.raises(NotFound):
        custom_fields.get_field(session, defined.id)
    # The stored value is no longer shown, and it is no longer filterable.
    [shown] = contacts.list_contacts(session, admin).items
    assert shown.custom == {}
    with pytest.raises(BadRequest):
        contacts.list_contacts(session, admin, filters=["cf.tier:eq:b"])


def _index_names(db: Database, session: Session) -> set[str]:
    if db.dialect == "postgresql":
        query = "SELECT indexname FROM pg_indexes WHERE indexname LIKE 'ix_cf_%'"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'ix_cf_%'"
    return set(session.scalars(text(query)))


def test_indexed_fields_get_and_lose_their_expression_index(
    session: Session, db: Database, admin: Actor
) -> None:
    score = field(session, "score", "number", indexed=True)
    field(session, "tier", "select", options=["a"], indexed=True, entity="companies")
    plain = field(session, "note", "text")
    assert _index_names(db, session) == {"ix_cf_contacts_score", "ix_cf_companies_tier"}
    custom_fields.update_field(session, plain.id, CustomFieldUpdate(indexed=True), admin)
    assert "ix_cf_contacts_note" in _index_names(db, session)
    custom_fields.update_field(session, score.id, CustomFieldUpdate(indexed=False), admin)
    assert "ix_cf_contacts_score" not in _index_names(db, session)
    custom_fields.delete_field(session, plain.id, admin)
    assert _index_names(db, session) == {"ix_cf_companies_tier"}


@pytest.mark.parametrize(
    ("key", "ft", "value", "flt"),
    [
        ("score", "number", 7, "cf.score:gt:5"),
        ("amount", "decimal", "12.5", "cf.amount:eq:12.50"),
        ("tier", "select", "gold", "cf.tier:eq:gold"),
        ("note", "text", "hello", "cf.note:eq:hello"),
        ("vip", "boolean", True, "cf.vip:eq:true"),
        ("renewal", "date", "2026-05-01", "cf.renewal:gte:2026-04-30"),
    ],
)
def test_queries_on_indexed_fields_use_their_index(
    session: Session, db: Database, admin: Actor, key: str, ft: str, value: Any, flt: str
) -> None:
    """The filter's SQL expression must be the index's, or the index is never used."""
    field(session, key, ft, options=["gold", "silver"] if ft == "select" else None, indexed=True)
    hit = contact(session, admin, last_name="Hit", custom={key: value})
    contact(session, admin, last_name="Miss")
    page = contacts.list_contacts(session, admin, filters=[flt])
    assert [c.id for c in page.items] == [hit.id]
    stmt, _ = contacts._list_statement(
        session, [flt], None, custom_fields.fields_by_key(session, "contacts")
    )
    compiled = stmt.compile(db.engine, compile_kwargs={"literal_binds": True})
    if db.dialect == "postgresql":
        session.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(session.scalars(text(f"EXPLAIN {compiled}")))
    else:
        plan = "\n".join(
            str(r[-1]) for r in session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
        )
    session.rollback()
    assert f"ix_cf_contacts_{key}" in plan, plan


FILTER_CASES: list[tuple[str, str, list[str]]] = [
    # (key, filter, expected last names) over the rows made in the test below
    ("score", "cf.score:eq:10", ["A"]),
    ("score", "cf.score:ne:10", ["B", "C", "D"]),
    ("score", "cf.score:lt:20", ["A"]),
    ("score", "cf.score:lte:20", ["A", "B"]),
    ("score", "cf.score:gt:10", ["B", "C"]),
    ("score", "cf.score:gte:10", ["A", "B", "C"]),
    ("score", "cf.score:in:10,30", ["A", "C"]),
    ("score", "cf.score:is_null:true", ["D"]),
    ("score", "cf.score:is_null:false", ["A", "B", "C"]),
    ("amount", "cf.amount:gt:1.5", ["B", "C"]),
    ("amount", "cf.amount:lte:1.25", ["A"]),
    ("amount", "cf.amount:in:1.25,3", ["A", "C"]),
    ("tier", "cf.tier:eq:gold", ["A", "C"]),
    ("tier", "cf.tier:in:silver", ["B"]),
    ("tier", "cf.tier:ne:gold", ["B", "D"]),
    ("topics", "cf.topics:contains:ai", ["B", "C"]),
    ("topics", "cf.topics:contains:crm", ["A", "C"]),
    ("topics", "cf.topics:is_null:true", ["D"]),
    ("vip", "cf.vip:eq:true", ["A"]),
    ("vip", "cf.vip:eq:false", ["B", "C"]),
    ("vip", "cf.vip:in:true,false", ["A", "B", "C"]),
    ("renewal", "cf.renewal:lt:2026-06-01", ["A", "B"]),
    ("renewal", "cf.renewal:eq:2026-12-31", ["C"]),
    ("seen_at", "cf.seen_at:gt:2026-01-01T08:59:59+09:00", ["B", "C"]),
    ("seen_at", "cf.seen_at:eq:2026-01-01T00:00:00Z", ["B"]),
    ("note", "cf.note:contains:llo", ["A", "B"]),
    ("note", "cf.note:startswith:wor", ["C"]),
    ("alt_email", "cf.alt_email:eq:B@EXAMPLE.COM", ["B"]),
    ("fax", "cf.fax:eq:03-1234-5678", ["A"]),
    ("fax", "cf.fax:eq:+81312345678", ["A"]),
    ("homepage", "cf.homepage:startswith:https://b", ["B"]),
]


@pytest.fixture
def typed_rows(session: Session, admin: Actor, request: pytest.FixtureRequest) -> None:
    _define_all(session, indexed=request.param)
    rows: dict[str, dict[str, Any]] = {
        "A": {
            "score": 10,
            "amount": "1.25",
            "tier": "gold",
            "topics": ["crm"],
            "vip": True,
            "renewal": "2026-01-15",
            "seen_at": "2025-12-31T23:00:00Z",
            "note": "hello",
            "fax": "+81312345678",
            "homepage": "https://a.example",
        },
        "B": {
            "score": 20,
            "amount": "2",
            "tier": "silver",
            "topics": ["ai"],
            "vip": False,
            "renewal": "2026-05-31",
            "seen_at": "2026-01-01T00:00:00Z",
            "note": "yellow",
            "alt_email": "b@example.com",
            "homepage": "https://b.example",
        },
        "C": {
            "score": 30,
            "amount": "3",
            "tier": "gold",
            "topics": ["ai", "crm"],
            "vip": False,
            "renewal": "2026-12-31",
            "seen_at": "2026-02-01T00:00:00Z",
            "note": "world",
        },
        "D": {},
    }
    for name, custom in rows.items():
        contact(session, admin, last_name=name, custom=custom)


@pytest.mark.parametrize("typed_rows", [False, True], ids=["plain", "indexed"], indirect=True)
@pytest.mark.usefixtures("typed_rows")
def test_filters_on_every_custom_field_type(session: Session, admin: Actor) -> None:
    wrong = {}
    for _key, flt, expected in FILTER_CASES:
        page = contacts.list_contacts(session, admin, filters=[flt], sort="last_name")
        found = [c.last_name for c in page.items]
        if found != expected:
            wrong[flt] = (found, expected)
    assert wrong == {}


CUSTOM_SORTS = {
    "cf.score": ["A", "B", "C", "D"],
    "-cf.score": ["C", "B", "A", "D"],
    "cf.amount": ["A", "B", "C", "D"],
    "-cf.renewal": ["C", "B", "A", "D"],
    "cf.tier": ["A", "C", "B", "D"],
    "-cf.seen_at": ["C", "B", "A", "D"],
    "cf.note": ["A", "C", "B", "D"],
    "-cf.vip": ["A", "C", "B", "D"],
}


@pytest.mark.parametrize("typed_rows", [True], ids=["indexed"], indirect=True)
@pytest.mark.usefixtures("typed_rows")
def test_sorting_on_custom_fields_pages_with_nulls_last(session: Session, admin: Actor) -> None:
    wrong = {}
    for sort, expected in CUSTOM_SORTS.items():
        seen: list[str | None] = []
        cursor = None
        while True:
            page = contacts.list_contacts(session, admin, sort=sort, cursor=cursor, limit=1)
            seen += [c.last_name for c in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        if seen != expected:
            wrong[sort] = seen
    assert wrong == {}


BAD_CUSTOM_FILTERS = [
    "cf.score:eq:ten",
    "cf.score:contains:1",
    "cf.tier:eq:platinum",
    "cf.vip:eq:maybe",
    "cf.renewal:lt:someday",
    "cf.topics:eq:ai",
    "cf.fax:eq:12",
    "cf.unknown:eq:1",
]


def test_bad_custom_filters_are_400_with_loc(session: Session, admin: Actor) -> None:
    _define_all(session)
    for flt in BAD_CUSTOM_FILTERS:
        with pytest.raises(BadRequest) as info:
            contacts.list_contacts(session, admin, filters=["last_name:eq:x", flt])
        assert info.value.status == 400
        assert info.value.errors[0].loc == ("query", "filter", 1), flt


def test_company_custom_fields(session: Session, admin: Actor) -> None:
    field(session, "segment", "select", entity="companies", options=["smb", "ent"], indexed=True)
    field(session, "seats", "number", entity="companies", required=True)
    with pytest.raises(ValidationFailed) as info:
        company(session, "Nope", admin, custom={"segment": "mid"})
    assert {e.loc for e in info.value.errors} == {("custom", "segment"), ("custom", "seats")}
    big = company(session, "Big", admin, custom={"segment": "ent", "seats": "5,000"})
    small = company(session, "Small", admin, custom={"segment": "smb", "seats": 12})
    assert big.custom == {"segment": "ent", "seats": 5000}
    page = companies.list_companies(session, admin, filters=["cf.seats:gte:100"])
    assert [c.id for c in page.items] == [big.id]
    page = companies.list_companies(session, admin, sort="cf.seats")
    assert [c.id for c in page.items] == [small.id, big.id]
    page = companies.list_companies(session, admin, filters=["cf.segment:in:smb,ent"], sort="name")
    assert [c.id for c in page.items] == [big.id, small.id]


def test_decimals_read_back_in_plain_notation(session: Session, admin: Actor) -> None:
    field(session, "amount", "decimal")
    for sent, shown in [("1000", "1000"), (1e6, "1000000"), ("0.10", "0.1"), ("-2.50", "-2.5")]:
        made = contact(session, admin, last_name="D", custom={"amount": sent})
        assert made.custom == {"amount": shown}, sent
        contacts.delete_contact(session, made.id, admin)
