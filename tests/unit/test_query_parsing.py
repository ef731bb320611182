"""Filter parsing, sort parsing and cursors, without a database."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table
from sqlalchemy.dialects import postgresql, sqlite

from ichigen.core.errors import BadRequest
from ichigen.core.query import (
    Filter,
    ListField,
    Sort,
    decode_cursor,
    encode_cursor,
    field_condition,
    parse_filters,
    parse_sort,
)

SECRET = "unit-test-secret"
_table = Table(
    "things",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("city", String),
    Column("name_folded", String),
    Column("size", Integer),
    Column("tags", String),
)
FIELDS = {
    "id": ListField(_table.c.id, "int", nullable=False),
    "city": ListField(_table.c.city, "text"),
    "name": ListField(_table.c.name_folded, "text", nullable=False, folded=True),
    "size": ListField(_table.c.size, "int"),
    "tags": ListField(_table.c.tags, "list", sortable=False),
    "seen_at": ListField(_table.c.city, "datetime"),
    "born_on": ListField(_table.c.city, "date"),
    "flag": ListField(_table.c.size, "bool"),
    "amount": ListField(_table.c.size, "decimal"),
}


def test_parse_filters_keeps_colons_in_values() -> None:
    assert parse_filters(
        ["created_at:gt:2026-01-01T09:00:00+09:00", "city:is_null", "cf.tier:in:a,b"]
    ) == [
        Filter("created_at", "gt", "2026-01-01T09:00:00+09:00"),
        Filter("city", "is_null", ""),
        Filter("cf.tier", "in", "a,b"),
    ]


@pytest.mark.parametrize("bad", ["city", "city:like:x", "city:EQ:x", ""])
def test_malformed_filter_is_a_400_naming_its_position(bad: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_filters(["city:eq:Tokyo", bad])
    assert info.value.status == 400
    assert [e.loc for e in info.value.errors] == [("query", "filter", 1)]


def _sql(clause: Any) -> str:
    return str(clause.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))


def test_field_conditions_compile_to_bound_comparisons() -> None:
    loc = ("query", "filter", 0)
    assert _sql(field_condition("size", FIELDS["size"], "gte", "3", loc)) == "things.size >= 3"
    assert (
        _sql(field_condition("city", FIELDS["city"], "ne", "Osaka", loc))
        == "things.city != 'Osaka' OR things.city IS NULL"
    )
    assert _sql(field_condition("city", FIELDS["city"], "is_null", "", loc)) == (
        "things.city IS NULL"
    )
    assert _sql(field_condition("city", FIELDS["city"], "is_null", "false", loc)) == (
        "things.city IS NOT NULL"
    )
    # Folded text compares against the case-folded value.
    assert "'yamada'" in _sql(field_condition("name", FIELDS["name"], "eq", "YAMADA", loc))
    # LIKE wildcards in a value are escaped, not interpreted.
    contains = _sql(field_condition("city", FIELDS["city"], "contains", "50%_off", loc))
    assert "50\\%\\_off" in contains


@pytest.mark.parametrize(
    ("name", "op", "value"),
    [
        ("size", "eq", "three"),
        ("size", "in", "1,two"),
        ("size", "in", ""),
        ("flag", "eq", "maybe"),
        ("seen_at", "gt", "yesterday"),
        ("born_on", "lt", "2026-13-01"),
        ("amount", "gt", "1.2.3"),
        ("size", "contains", "3"),
        ("size", "startswith", "3"),
        ("tags", "eq", "vip"),
        ("tags", "lt", "vip"),
        ("size", "in", ",".join(["1"] * 1001)),
    ],
)
def test_bad_filter_values_are_400_with_the_filter_loc(name: str, op: str, value: str) -> None:
    loc = ("query", "filter", 2)
    with pytest.raises(BadRequest) as info:
        field_condition(name, FIELDS[name], op, value, loc)
    assert info.value.status == 400
    assert [e.loc for e in info.value.errors] == [loc]
    assert name in info.value.detail


def test_parse_sort() -> None:
    assert parse_sort("-city", FIELDS, "-id") == Sort("city", FIELDS["city"], True)
    assert parse_sort(None, FIELDS, "-id") == Sort("id", FIELDS["id"], True)
    for bad in ("tags", "nope", "-nope"):
        with pytest.raises(BadRequest) as info:
            parse_sort(bad, FIELDS, "id")
        assert info.value.errors[0].loc == ("query", "sort")


CURSOR_VALUES = [
    None,
    7,
    "山田",
    1.5,
    True,
    datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
    date(2026, 2, 28),
    Decimal("12345.67"),
]


@pytest.mark.parametrize("value", CURSOR_VALUES)
def test_cursor_round_trips_every_kind_of_value(value: Any) -> None:
    sort = Sort("city", FIELDS["city"], False)
    cursor = encode_cursor(SECRET, sort, value, 42)
    assert decode_cursor(SECRET, sort, cursor) == (value, 42)


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(
    st.one_of(st.none(), st.integers(), st.text(max_size=50), st.booleans()),
    st.integers(min_value=1, max_value=2**53),
)
def test_cursor_round_trip_property(value: Any, row_id: int) -> None:
    sort = Sort("name", FIELDS["name"], True)
    assert decode_cursor(SECRET, sort, encode_cursor(SECRET, sort, value, row_id)) == (
        value,
        row_id,
    )


def _assert_invalid(sort: Sort, cursor: str, secret: str = SECRET) -> None:
    with pytest.raises(BadRequest) as info:
        decode_cursor(secret, sort, cursor)
    assert info.value.status == 400
    assert info.value.errors[0].loc == ("query", "cursor")


def test_tampered_garbled_and_foreign_cursors_are_400() -> None:
    sort = Sort("city", FIELDS["city"], False)
    cursor = encode_cursor(SECRET, sort, "Osaka", 10)
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    # Change the id inside the signed body without re-signing it.
    forged = raw[:12] + raw[12:].replace(b'"id":10', b'"id":11')
    assert forged != raw
    _assert_invalid(sort, base64.urlsafe_b64encode(forged).decode().rstrip("="))
    # Flip one character.
    flipped = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
    _assert_invalid(sort, flipped)
    for garbage in ("", "%%%", "not-a-cursor", "A" * 10, "=="):
        _assert_invalid(sort, garbage)
    # Signed by another secret.
    _assert_invalid(sort, cursor, secret="another-secret")
    # Made for another sort: other field, or other direction.
    _assert_invalid(Sort("size", FIELDS["size"], False), cursor)
    _assert_invalid(Sort("city", FIELDS["city"], True), cursor)


def test_compiled_filters_use_bound_parameters_on_postgresql() -> None:
    clause = field_condition("city", FIELDS["city"], "eq", "'; DROP TABLE things; --", ("q",))
    compiled = clause.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
    assert "DROP" not in str(compiled)
    assert list(compiled.params.values()) == ["'; DROP TABLE things; --"]
