"""The permission matrix's rules and custom-field value checks, without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from ichigen.auth.permissions import (
    ENTITIES,
    MATRIX,
    OWNERSHIP_BOUND,
    Role,
    can,
    require,
    require_owner_access,
)
from ichigen.core.audit import Actor, diff
from ichigen.core.custom_fields import (
    CustomFieldRead,
    FieldOption,
    FieldType,
    coerce_value,
    custom_value_sql,
    present_custom_values,
    validate_custom_values,
)
from ichigen.core.errors import PermissionDenied

WRITERS = {
    "contacts": {"admin", "manager", "sales", "support", "marketing"},
    "companies": {"admin", "manager", "sales"},
    "users": {"admin"},
    "teams": {"admin", "manager"},
    "custom_fields": {"admin"},
    "audit": {"admin"},
    "sources": {"admin"},
    "events": {"admin"},
    "pipelines": {"admin", "manager"},
    "deals": {"admin", "manager", "sales"},
    "activities": {"admin", "manager", "sales", "support"},
    "tasks": {"admin", "manager", "sales", "support", "marketing"},
    "quotas": {"admin", "manager"},
    "identity": {"admin", "manager"},
}
READERS = {
    "contacts": set(Role),
    "companies": set(Role),
    "users": set(Role) - {Role.viewer},
    "teams": set(Role) - {Role.viewer},
    "custom_fields": set(Role),
    "audit": set(Role) - {Role.viewer},
    "sources": {Role.admin, Role.manager, Role.marketing, Role.analyst},
    "events": set(Role) - {Role.viewer},
    "pipelines": set(Role),
    "deals": set(Role),
    "activities": set(Role),
    "tasks": set(Role) - {Role.viewer},
    "quotas": {Role.admin, Role.manager, Role.sales, Role.analyst},
    "identity": set(Role),
}


def _actor(role: str, user_id: int = 1, team_id: int | None = None, via: str = "ui") -> Actor:
    return Actor(user_id=user_id, label=f"{role}@example.com", role=role, team_id=team_id, via=via)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("entity", ENTITIES)
def test_matrix_grants_exactly_the_documented_access(role: Role, entity: str) -> None:
    actor = _actor(role.value)
    assert can(actor, entity, "read") == (role in READERS[entity])
    assert can(actor, entity, "write") == (role.value in WRITERS[entity])
    if role.value in WRITERS[entity]:
        require(actor, entity, "write")
    else:
        with pytest.raises(PermissionDenied, match=f"{role.value} role may not write"):
            require(actor, entity, "write")


def test_every_role_has_a_row_for_every_entity() -> None:
    assert set(MATRIX) == set(Role)
    for grants in MATRIX.values():
        assert set(grants) == set(ENTITIES)


def test_read_only_token_never_writes_and_says_why() -> None:
    actor = _actor("admin", via="token-read")
    assert can(actor, "contacts", "read")
    assert not can(actor, "contacts", "write")
    with pytest.raises(PermissionDenied, match="read-only"):
        require(actor, "contacts", "write")


def test_unknown_role_gets_nothing() -> None:
    assert not can(_actor("superuser"), "contacts", "read")


@pytest.mark.parametrize(
    ("role", "owner_id", "owner_team", "allowed"),
    [
        ("sales", 1, 10, True),  # own record
        ("sales", 2, 10, True),  # a teammate's
        ("sales", None, None, True),  # nobody's
        ("sales", 3, 20, False),  # another team's
        ("sales", 3, None, False),  # an owner without a team
        ("support", 3, 20, False),
        ("manager", 3, 20, True),
        ("marketing", 3, 20, True),
        ("admin", 3, 20, True),
    ],
)
def test_ownership_bound_roles(
    role: str, owner_id: int | None, owner_team: int | None, allowed: bool
) -> None:
    actor = _actor(role, user_id=1, team_id=10)
    if allowed:
        require_owner_access(actor, "contacts", owner_id, owner_team)
    else:
        with pytest.raises(PermissionDenied, match="another owner"):
            require_owner_access(actor, "contacts", owner_id, owner_team)
    assert {Role.sales, Role.support} == OWNERSHIP_BOUND


def test_teamless_sales_user_may_not_touch_another_teamless_owners_record() -> None:
    with pytest.raises(PermissionDenied):
        require_owner_access(_actor("sales", user_id=1, team_id=None), "contacts", 2, None)


def _field(ft: str, options: tuple[str, ...] = (), required: bool = False) -> CustomFieldRead:
    now = datetime.now(UTC)
    return CustomFieldRead(
        id=1,
        entity="contacts",
        key="k",
        label="K",
        help_text="",
        field_type=FieldType(ft),
        required=required,
        indexed=False,
        options=[FieldOption(value=o) for o in options],
        position=0,
        version=1,
        created_at=now,
        updated_at=now,
    )


@pytest.mark.parametrize(
    ("ft", "value", "stored"),
    [
        ("text", "hello", "hello"),
        ("number", 7, 7),
        ("number", 7.0, 7),
        ("number", "1,000", 1000),
        ("decimal", "1,234.50", 1234.5),
        ("decimal", 3, 3.0),
        ("date", "2026-02-28", "2026-02-28"),
        ("datetime", "2026-01-01T09:00:00+09:00", "2026-01-01T00:00:00Z"),
        ("datetime", "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("boolean", True, True),
        ("boolean", "yes", True),
        ("boolean", "0", False),
        ("url", " https://example.com/x ", "https://example.com/x"),
        ("email", "A@Example.COM", "a@example.com"),
        ("phone", "03-1234-5678", "+81312345678"),
    ],
)
def test_coerce_value_accepts(ft: str, value: Any, stored: Any) -> None:
    assert coerce_value(_field(ft), value, "JP") == stored


@pytest.mark.parametrize(
    ("ft", "value", "message"),
    [
        ("text", 5, "must be text"),
        ("text", "x" * 10_001, "at most 10000"),
        ("number", 1.5, "whole number"),
        ("number", True, "must be a number"),
        ("number", "ten", "whole number"),
        ("decimal", "abc", "decimal number"),
        ("decimal", "NaN", "finite"),
        ("decimal", "1e16", "finite"),
        ("decimal", False, "decimal number"),
        ("date", "2026-02-30", "YYYY-MM-DD"),
        ("date", 20260101, "YYYY-MM-DD"),
        ("datetime", "soon", "ISO 8601"),
        ("datetime", 5, "ISO 8601"),
        ("boolean", "maybe", "true or false"),
        ("boolean", 2, "true or false"),
        ("url", "ftp://example.com", "http(s) URL"),
        ("url", "example.com", "http(s) URL"),
        ("email", "not-an-email", "@"),
        ("email", 5, "email address"),
        ("phone", "12", "phone number"),
        ("phone", 312345678, "phone number"),
    ],
)
def test_coerce_value_refuses_with_a_message(ft: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        coerce_value(_field(ft), value, "JP")


def test_select_and_multi_select_options() -> None:
    select_field = _field("select", ("gold", "silver"))
    assert coerce_value(select_field, "gold", "JP") == "gold"
    with pytest.raises(ValueError, match=r"must be one of \['gold', 'silver'\]"):
        coerce_value(select_field, "bronze", "JP")
    multi = _field("multi_select", ("a", "b", "c"))
    assert coerce_value(multi, ["b", "a", "b"], "JP") == ["b", "a"]
    assert coerce_value(multi, "c; a", "JP") == ["c", "a"]
    with pytest.raises(ValueError, match=r"unknown options \['z'\]"):
        coerce_value(multi, ["a", "z"], "JP")
    with pytest.raises(ValueError, match="list of options"):
        coerce_value(multi, [1, 2], "JP")


def test_validate_custom_values_locates_every_error() -> None:
    fields = {
        "tier": _field("select", ("gold",)),
        "score": _field("number"),
        "must": _field("text", required=True),
    }
    for key, f in fields.items():
        f.key = key
    values, errors = validate_custom_values(
        fields, {"tier": "tin", "score": "x", "ghost": 1}, None, "JP", creating=True
    )
    assert values == {}
    assert sorted((e.loc, e.msg.split(" ")[0]) for e in errors) == [
        (("custom", "ghost"), "is"),
        (("custom", "must"), "is"),
        (("custom", "score"), "must"),
        (("custom", "tier"), "must"),
    ]
    # On update, a required field untouched stays fine; clearing it is refused.
    kept, errors = validate_custom_values(fields, {"score": 3}, {"must": "x"}, "JP", creating=False)
    assert (kept, errors) == ({"must": "x", "score": 3}, [])
    _, errors = validate_custom_values(fields, {"must": None}, {"must": "x"}, "JP", creating=False)
    assert [(e.loc, e.msg) for e in errors] == [(("custom", "must"), "is required")]
    # Values of fields that no longer exist are dropped.
    kept, errors = validate_custom_values(
        fields, None, {"gone": 1, "score": 2}, "JP", creating=False
    )
    assert (kept, errors) == ({"score": 2}, [])


def test_present_custom_values_shows_decimals_exactly_and_hides_undefined() -> None:
    fields = {"amount": _field("decimal"), "n": _field("number")}
    assert present_custom_values(fields, {"amount": 1234.5, "n": 3, "gone": 1}) == {
        "amount": "1234.5",
        "n": 3,
    }


def test_custom_value_sql_refuses_unsafe_keys() -> None:
    evil = _field("text")
    evil.key = "x'); DROP TABLE contacts; --"
    with pytest.raises(ValueError, match="invalid custom field key"):
        custom_value_sql("contacts", evil, "sqlite")
    with pytest.raises(ValueError, match="invalid custom field key"):
        custom_value_sql("users", _field("text"), "postgresql")


def test_diff_reports_only_changed_fields_in_json_form() -> None:
    assert diff({"a": 1, "b": [1], "c": None}, {"a": 1, "b": [2], "d": "x"}) == {
        "b": [[1], [2]],
        "d": [None, "x"],
    }
