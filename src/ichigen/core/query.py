"""List queries shared by every entity: filters, sorting and keyset (cursor) pagination.

A feature describes its listable fields once (``ListField``); requests arrive as
``filter=field:op:value`` and ``sort=-field`` strings and become SQLAlchemy clauses with bound
parameters. Cursors are opaque, tamper-evident tokens holding the last row's sort key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import orjson
from sqlalchemy import ColumnElement, Select, and_, literal, literal_column, or_
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.types import Boolean, Float, Integer, Numeric, String, TypeEngine

from ichigen.core.custom_fields import (
    NUMERIC_TYPES,
    CustomFieldRead,
    FieldType,
    coerce_value,
    custom_value_sql,
)
from ichigen.core.db import utc_from_iso
from ichigen.core.errors import BadRequest, FieldError
from ichigen.core.text import fold

Op = Literal["eq", "ne", "lt", "lte", "gt", "gte", "in", "contains", "startswith", "is_null"]
OPS: tuple[str, ...] = (
    "eq",
    "ne",
    "lt",
    "lte",
    "gt",
    "gte",
    "in",
    "contains",
    "startswith",
    "is_null",
)
Kind = Literal["int", "text", "bool", "datetime", "date", "decimal", "list"]


@dataclass(frozen=True)
class ListField:
    """A field a list can filter or sort on: its column expression and value kind."""

    expr: ColumnElement[Any] | QueryableAttribute[Any]
    kind: Kind
    sortable: bool = True
    nullable: bool = True
    #: Text compared case-insensitively: the column holds lower-cased text.
    folded: bool = False


@dataclass(frozen=True)
class Filter:
    field: str
    op: str
    value: str


def parse_filters(raw: Sequence[str]) -> list[Filter]:
    """``["owner_id:eq:3", "cf.tier:in:a,b"]`` into filters; a malformed one is a 400."""
    parsed: list[Filter] = []
    for index, item in enumerate(raw):
        parts = item.split(":", 2)
        if len(parts) < 2 or parts[1] not in OPS:
            raise BadRequest(
                f"Filter '{item}' is not field:op:value with op one of {', '.join(OPS)}.",
                [FieldError(("query", "filter", index), "malformed filter")],
            )
        field, op = parts[0], parts[1]
        value = parts[2] if len(parts) == 3 else ""
        parsed.append(Filter(field, op, value))
    return parsed


def _parse_scalar(kind: Kind, raw: str) -> Any:
    if kind == "int":
        number = int(raw)
        if not -(2**63) <= number < 2**63:
            raise ValueError("is out of range")
        return number
    if kind == "bool":
        lowered = raw.lower()
        if lowered not in {"true", "false", "1", "0"}:
            raise ValueError("expected true or false")
        return lowered in {"true", "1"}
    if kind == "datetime":
        return utc_from_iso(raw.replace("Z", "+00:00"))
    if kind == "date":
        return date.fromisoformat(raw)
    if kind == "decimal":
        try:
            return Decimal(raw)
        except InvalidOperation:
            raise ValueError("expected a decimal number") from None
    return raw


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def field_condition(
    name: str, spec: ListField, op: str, raw: str, loc: tuple[str | int, ...]
) -> ColumnElement[bool]:
    """One filter on one described field."""
    expr = spec.expr
    try:
        if op == "is_null":
            flag = _parse_scalar("bool", raw or "true")
            return expr.is_(None) if flag else expr.is_not(None)
        if spec.kind == "list":
            if op != "contains":
                raise ValueError("list fields support only contains and is_null")
            # Lists are JSON arrays of strings; match the quoted element. ILIKE, because
            # SQLite's LIKE ignores ASCII case and PostgreSQL's does not: the same on both.
            return expr.cast(String).ilike(
                f"%{_escape_like(orjson.dumps(raw).decode())}%", escape="\\"
            )
        if op in ("contains", "startswith"):
            if spec.kind != "text":
                raise ValueError(f"{op} applies to text fields only")
            needle = _escape_like(fold(raw) if spec.folded else raw)
            pattern = f"%{needle}%" if op == "contains" else f"{needle}%"
            # Folded columns hold folded text (LIKE keeps their index usable); other text
            # matches case-insensitively on both engines, as SQLite's LIKE alone would.
            if spec.folded:
                return expr.like(pattern, escape="\\")
            return expr.ilike(pattern, escape="\\")
        if op == "in":
            items = [
                _parse_scalar(spec.kind, fold(v) if spec.folded else v) for v in raw.split(",")
            ]
            if not items or len(items) > 1000:
                raise ValueError("in takes 1 to 1000 comma-separated values")
            return expr.in_(items)
        value = _parse_scalar(spec.kind, fold(raw) if spec.folded else raw)
    except ValueError as exc:
        raise BadRequest(
            f"Filter on '{name}' has a bad value: {exc}.", [FieldError(loc, str(exc))]
        ) from None
    return compare(expr, op, value)


def compare(expr: Any, op: str, value: Any) -> ColumnElement[bool]:
    """``expr <op> value`` for the six comparison operators; ``ne`` also keeps nulls."""
    comparisons: dict[str, Callable[[Any], ColumnElement[bool]]] = {
        "eq": lambda v: expr == v,
        "ne": lambda v: or_(expr != v, expr.is_(None)),
        "lt": lambda v: expr < v,
        "lte": lambda v: expr <= v,
        "gt": lambda v: expr > v,
        "gte": lambda v: expr >= v,
    }
    return comparisons[op](value)


def custom_field_expr(table: str, field: CustomFieldRead, dialect: str) -> ColumnElement[Any]:
    """The value expression of a custom field, identical to its index expression."""
    sql_type: TypeEngine[Any]
    if field.field_type in NUMERIC_TYPES:
        sql_type = Numeric() if dialect == "postgresql" else Float()
    elif field.field_type == FieldType.boolean:
        sql_type = Boolean() if dialect == "postgresql" else Integer()
    elif field.field_type == FieldType.date:
        sql_type = String()
    else:
        sql_type = String()
    return literal_column(custom_value_sql(table, field, dialect), sql_type)


def custom_list_field(table: str, field: CustomFieldRead, dialect: str) -> ListField:
    expr = custom_field_expr(table, field, dialect)
    if field.field_type == FieldType.multi_select:
        return ListField(expr, "list", sortable=False)
    if field.field_type in NUMERIC_TYPES:
        return ListField(expr, "decimal")
    if field.field_type == FieldType.boolean:
        return ListField(expr, "bool")
    return ListField(expr, "text")


def custom_condition(
    table: str,
    field: CustomFieldRead,
    dialect: str,
    op: str,
    raw: str,
    loc: tuple[str | int, ...],
    region: str,
) -> ColumnElement[bool]:
    """A filter on a custom field; the value is checked and stored-form converted first."""
    spec = custom_list_field(table, field, dialect)
    if op in ("is_null", "contains", "startswith", "in") or spec.kind == "list":
        return field_condition(f"cf.{field.key}", spec, op, raw, loc)
    try:
        stored = coerce_value(field, raw, region)
    except ValueError as exc:
        raise BadRequest(
            f"Filter on 'cf.{field.key}' has a bad value: {exc}.", [FieldError(loc, str(exc))]
        ) from None
    if field.field_type == FieldType.boolean and dialect != "postgresql":
        stored = 1 if stored else 0
    if field.field_type in NUMERIC_TYPES:
        stored = Decimal(str(stored))
    return compare(spec.expr, op, stored)


# ----------------------------------------------------------------------------- cursors


@dataclass(frozen=True)
class Sort:
    name: str
    spec: ListField
    descending: bool


def parse_sort(raw: str | None, fields: dict[str, ListField], default: str) -> Sort:
    text = raw or default
    descending = text.startswith("-")
    name = text.lstrip("-")
    spec = fields.get(name)
    if spec is None or not spec.sortable:
        sortable = sorted(k for k, v in fields.items() if v.sortable)
        raise BadRequest(
            f"Cannot sort by '{name}'; sortable fields are {', '.join(sortable)}.",
            [FieldError(("query", "sort"), "unknown or unsortable field")],
        )
    return Sort(name, spec, descending)


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    if isinstance(value, Decimal):
        return {"dec": str(value)}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "dt" in value:
            return utc_from_iso(value["dt"])
        if "d" in value:
            return date.fromisoformat(value["d"])
        if "dec" in value:
            return Decimal(value["dec"])
        raise ValueError("bad cursor value")
    return value


def encode_cursor(secret: str, sort: Sort, value: Any, row_id: int) -> str:
    body = orjson.dumps(
        {"s": ("-" if sort.descending else "") + sort.name, "v": _encode_value(value), "id": row_id}
    )
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(mac + body).decode().rstrip("=")


def decode_cursor(secret: str, sort: Sort, cursor: str) -> tuple[Any, int]:
    """The (sort value, id) a cursor holds; a 400 if it is forged, garbled or for another sort."""
    problem = BadRequest(
        "The cursor is not valid for this list; start again without it.",
        [FieldError(("query", "cursor"), "invalid cursor")],
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise problem from None
    mac, body = raw[:12], raw[12:]
    if len(mac) < 12 or not hmac.compare_digest(
        mac, hmac.new(secret.encode(), body, hashlib.sha256).digest()[:12]
    ):
        raise problem
    try:
        payload = orjson.loads(body)
        if payload["s"] != ("-" if sort.descending else "") + sort.name:
            raise ValueError("cursor for another sort")
        return _decode_value(payload["v"]), int(payload["id"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise problem from None


def apply_sort_and_cursor(
    stmt: Select[Any],
    sort: Sort,
    id_column: ColumnElement[int] | QueryableAttribute[int],
    after: tuple[Any, int] | None,
) -> Select[Any]:
    """Order by (sort field, id) with nulls last, and continue after the cursor's row."""
    expr, desc = sort.spec.expr, sort.descending
    nullable = sort.spec.nullable and sort.name != "id"
    if after is not None:
        value, last_id = after
        id_after = id_column < last_id if desc else id_column > last_id
        if sort.name == "id":
            stmt = stmt.where(id_after)
        elif value is None:
            stmt = stmt.where(and_(expr.is_(None), id_after))
        else:
            # A typed bind: SQLAlchemy refuses ``<``/``>`` against a bare True or False.
            bound = literal(value, type_=expr.type)
            beyond = expr < bound if desc else expr > bound
            clause = or_(beyond, and_(expr == bound, id_after))
            stmt = stmt.where(or_(clause, expr.is_(None)) if nullable else clause)
    order: list[Any] = []
    if nullable:
        order.append(expr.is_(None).asc())
    if sort.name != "id":
        order.append(expr.desc() if desc else expr.asc())
    order.append(id_column.desc() if desc else id_column.asc())
    return stmt.order_by(*order)


__all__ = [
    "OPS",
    "Filter",
    "ListField",
    "Sort",
    "apply_sort_and_cursor",
    "custom_condition",
    "custom_list_field",
    "decode_cursor",
    "encode_cursor",
    "field_condition",
    "parse_filters",
    "parse_sort",
]
