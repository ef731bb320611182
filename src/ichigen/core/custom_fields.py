"""Custom fields: admin-defined, typed, validated on every write, filterable and indexable.

Values live in each record's ``custom`` JSON document under the field's ``key``. A field
marked *indexed* gets an expression index on that document path, and queries use the very
same expression (``custom_value_sql``) so both engines' planners can use it.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import (
    Boolean,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    select,
    text,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from ichigen.core.audit import Actor, diff, record_change
from ichigen.core.clock import utcnow
from ichigen.core.db import (
    Base,
    IdType,
    JsonType,
    UTCDateTime,
    refresh_statistics,
    utc_from_iso,
)
from ichigen.core.errors import (
    Conflict,
    FieldError,
    NotFound,
    PreconditionFailed,
    ValidationFailed,
)
from ichigen.core.normalise import normalise_email, normalise_phone

#: Entities whose records carry custom fields; the name is also the table name.
CUSTOM_FIELD_ENTITIES = ("contacts", "companies", "deals")

KEY_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
_KEY_RE = re.compile(KEY_PATTERN)
_URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)


class FieldType(StrEnum):
    text = "text"
    number = "number"
    decimal = "decimal"
    date = "date"
    datetime = "datetime"
    boolean = "boolean"
    select = "select"
    multi_select = "multi_select"
    url = "url"
    email = "email"
    phone = "phone"


NUMERIC_TYPES = {FieldType.number, FieldType.decimal}


class CustomField(Base):
    """The definition of one custom field on one entity."""

    __tablename__ = "custom_fields"
    __table_args__ = (UniqueConstraint("entity", "key"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    entity: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(200))
    help_text: Mapped[str] = mapped_column(Text, default="")
    field_type: Mapped[str] = mapped_column(String(20))
    required: Mapped[bool] = mapped_column(Boolean, default=False)
    indexed: Mapped[bool] = mapped_column(Boolean, default=False)
    options: Mapped[list[dict[str, str]]] = mapped_column(JsonType, default=list)
    position: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FieldOption(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]
    label: Annotated[str, StringConstraints(max_length=200, strip_whitespace=True)] = ""


Key = Annotated[str, StringConstraints(pattern=KEY_PATTERN)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class CustomFieldCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "entity": "contacts",
                    "key": "nps_score",
                    "label": "NPS score",
                    "field_type": "number",
                    "indexed": True,
                }
            ]
        },
    )

    entity: Annotated[str, Field(pattern="^(contacts|companies|deals)$")]
    key: Key
    label: Label
    help_text: Annotated[str, Field(max_length=2000)] = ""
    field_type: FieldType
    required: bool = False
    indexed: bool = False
    options: Annotated[list[FieldOption], Field(max_length=500)] = []
    position: Annotated[int, Field(ge=0, le=10_000)] = 0


class CustomFieldUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: Label | None = None
    help_text: Annotated[str, Field(max_length=2000)] | None = None
    required: bool | None = None
    indexed: bool | None = None
    options: Annotated[list[FieldOption], Field(max_length=500)] | None = None
    position: Annotated[int, Field(ge=0, le=10_000)] | None = None


class CustomFieldRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    entity: str
    key: str
    label: str
    help_text: str
    field_type: FieldType
    required: bool
    indexed: bool
    options: list[FieldOption]
    position: int
    version: int
    created_at: datetime
    updated_at: datetime

    def option_values(self) -> set[str]:
        return {o.value for o in self.options}


def _snapshot(row: CustomField) -> dict[str, Any]:
    return {
        "label": row.label,
        "help_text": row.help_text,
        "required": row.required,
        "indexed": row.indexed,
        "options": row.options,
        "position": row.position,
    }


def list_fields(session: Session, entity: str) -> list[CustomFieldRead]:
    """The live custom-field definitions of an entity, in display order."""
    rows = session.execute(_FIELDS_OF, {"entity": entity})
    return [CustomFieldRead.model_validate(r._mapping) for r in rows]


#: Built once (and plain rows, not ORM objects): every list and read asks for the fields.
_FIELDS_OF = (
    select(*CustomField.__table__.c)
    .where(CustomField.__table__.c.entity == bindparam("entity"))
    .order_by(CustomField.__table__.c.position, CustomField.__table__.c.id)
)


def fields_by_key(session: Session, entity: str) -> dict[str, CustomFieldRead]:
    return {f.key: f for f in list_fields(session, entity)}


def get_field(session: Session, field_id: int) -> CustomFieldRead:
    row = session.get(CustomField, field_id)
    if row is None:
        raise NotFound(f"Custom field {field_id} does not exist.")
    return CustomFieldRead.model_validate(row)


def _check_options(field_type: FieldType, options: list[FieldOption]) -> None:
    if field_type in (FieldType.select, FieldType.multi_select):
        if not options:
            raise ValidationFailed(
                "A select field needs at least one option.",
                [FieldError(("options",), "at least one option is required")],
            )
        values = [o.value for o in options]
        if len(set(values)) != len(values):
            raise ValidationFailed(
                "Option values must be unique.",
                [FieldError(("options",), "duplicate option value")],
            )
    elif options:
        raise ValidationFailed(
            f"A {field_type.value} field takes no options.",
            [FieldError(("options",), "options are only for select and multi_select fields")],
        )


def create_field(session: Session, data: CustomFieldCreate, actor: Actor) -> CustomFieldRead:
    """Define a new custom field; an indexed one gets its expression index at once."""
    if data.entity not in CUSTOM_FIELD_ENTITIES:
        raise ValidationFailed(
            "Unknown entity.", [FieldError(("entity",), f"must be one of {CUSTOM_FIELD_ENTITIES}")]
        )
    _check_options(data.field_type, data.options)
    exists = session.scalar(
        select(CustomField.id).where(CustomField.entity == data.entity, CustomField.key == data.key)
    )
    if exists is not None:
        raise Conflict(
            f"A custom field '{data.key}' already exists on {data.entity}.",
            [FieldError(("key",), "already in use")],
        )
    now = utcnow()
    row = CustomField(
        entity=data.entity,
        key=data.key,
        label=data.label,
        help_text=data.help_text,
        field_type=data.field_type.value,
        required=data.required,
        indexed=data.indexed,
        options=[o.model_dump() for o in data.options],
        position=data.position,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    record_change(session, actor, "custom_fields", row.id, "create", diff({}, _snapshot(row)))
    read = CustomFieldRead.model_validate(row)
    if read.indexed:
        create_value_index(session, read)
    session.commit()
    return read


def update_field(
    session: Session,
    field_id: int,
    data: CustomFieldUpdate,
    actor: Actor,
    *,
    if_version: int | None = None,
) -> CustomFieldRead:
    row = session.get(CustomField, field_id)
    if row is None:
        raise NotFound(f"Custom field {field_id} does not exist.")
    if if_version is not None and if_version != row.version:
        raise PreconditionFailed(
            f"The custom field {field_id} was changed by someone else; reload it and try again."
        )
    before = _snapshot(row)
    changes = data.model_dump(exclude_unset=True)
    if "options" in changes and changes["options"] is not None:
        options = data.options or []
        _check_options(FieldType(row.field_type), options)
        row.options = [o.model_dump() for o in options]
    for name in ("label", "help_text", "required", "indexed", "position"):
        if name in changes and changes[name] is not None:
            setattr(row, name, changes[name])
    after = _snapshot(row)
    delta = diff(before, after)
    if delta:
        row.version += 1
        row.updated_at = utcnow()
        session.flush()
        record_change(session, actor, "custom_fields", row.id, "update", delta)
    read = CustomFieldRead.model_validate(row)
    if "indexed" in delta:
        if read.indexed:
            create_value_index(session, read)
        else:
            drop_value_index(session, read)
    session.commit()
    return read


def delete_field(session: Session, field_id: int, actor: Actor) -> None:
    """Remove a definition; values stay in the documents but are no longer shown or checked."""
    row = session.get(CustomField, field_id)
    if row is None:
        raise NotFound(f"Custom field {field_id} does not exist.")
    read = CustomFieldRead.model_validate(row)
    record_change(session, actor, "custom_fields", row.id, "delete", diff(_snapshot(row), {}))
    session.delete(row)
    if read.indexed:
        drop_value_index(session, read)
    session.commit()


# ----------------------------------------------------------------------------- values


def _bad(key: str, msg: str) -> FieldError:
    return FieldError(("custom", key), msg)


def coerce_value(field: CustomFieldRead, value: Any, region: str) -> Any:
    """The stored (JSON) form of one value, or ``ValueError`` saying what is wrong."""
    ft = field.field_type
    if ft == FieldType.text:
        if not isinstance(value, str):
            raise ValueError("must be text")
        if len(value) > 10_000:
            raise ValueError("must be at most 10000 characters")
        return value
    if ft == FieldType.number:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip().replace(",", ""))
            except ValueError:
                pass
        raise ValueError("must be a whole number")
    if ft == FieldType.decimal:
        if isinstance(value, bool):
            raise ValueError("must be a decimal number")
        try:
            number = Decimal(str(value).strip().replace(",", ""))
        except InvalidOperation:
            raise ValueError("must be a decimal number") from None
        if not number.is_finite() or abs(number) >= Decimal("1e15"):
            raise ValueError("must be a finite decimal below 10^15")
        return float(number)
    if ft == FieldType.date:
        if isinstance(value, date) and not isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip()).isoformat()
            except ValueError:
                pass
        raise ValueError("must be a date as YYYY-MM-DD")
    if ft == FieldType.datetime:
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, str):
            try:
                parsed = utc_from_iso(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise ValueError("must be an ISO 8601 date and time") from None
        else:
            raise ValueError("must be an ISO 8601 date and time")
        if parsed.tzinfo is None:
            raise ValueError("must carry a time zone")
        return utc_from_iso(parsed.isoformat()).strftime("%Y-%m-%dT%H:%M:%SZ")
    if ft == FieldType.boolean:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in {"true", "yes", "1", "y"}:
            return True
        if isinstance(value, str) and value.strip().lower() in {"false", "no", "0", "n"}:
            return False
        raise ValueError("must be true or false")
    if ft == FieldType.select:
        if not isinstance(value, str) or value not in field.option_values():
            raise ValueError(f"must be one of {sorted(field.option_values())}")
        return value
    if ft == FieldType.multi_select:
        items = value.split(";") if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            raise ValueError("must be a list of options")
        items = [v.strip() for v in items if v.strip()]
        unknown = [v for v in items if v not in field.option_values()]
        if unknown:
            raise ValueError(f"unknown options {unknown}; allowed {sorted(field.option_values())}")
        return sorted(set(items), key=items.index)
    if ft == FieldType.url:
        if not isinstance(value, str) or not _URL_RE.match(value.strip()) or len(value) > 2000:
            raise ValueError("must be an http(s) URL")
        return value.strip()
    if ft == FieldType.email:
        if not isinstance(value, str):
            raise ValueError("must be an email address")
        return normalise_email(value)
    if ft == FieldType.phone:
        if not isinstance(value, str):
            raise ValueError("must be a phone number")
        return normalise_phone(value, region)
    raise ValueError("has an unknown type")  # pragma: no cover


def validate_custom_values(
    fields: dict[str, CustomFieldRead],
    incoming: dict[str, Any] | None,
    existing: dict[str, Any] | None,
    region: str,
    *,
    creating: bool,
) -> tuple[dict[str, Any], list[FieldError]]:
    """Merge ``incoming`` over ``existing``; ``None`` removes a value. Returns (values, errors)."""
    result = {k: v for k, v in (existing or {}).items() if k in fields}
    errors: list[FieldError] = []
    for key, value in (incoming or {}).items():
        field = fields.get(key)
        if field is None:
            errors.append(_bad(key, "is not a custom field of this entity"))
            continue
        if value is None or value == "" or value == []:
            result.pop(key, None)
            continue
        try:
            result[key] = coerce_value(field, value, region)
        except ValueError as exc:
            errors.append(_bad(key, str(exc)))
    if creating or incoming:
        for key, field in fields.items():
            if field.required and key not in result and (creating or key in (incoming or {})):
                errors.append(_bad(key, "is required"))
    return result, errors


def present_custom_values(
    fields: dict[str, CustomFieldRead], stored: dict[str, Any]
) -> dict[str, Any]:
    """Values as the API shows them: only defined fields, decimals as exact strings."""
    shown: dict[str, Any] = {}
    for key, value in (stored or {}).items():
        field = fields.get(key)
        if field is None:
            continue
        if field.field_type == FieldType.decimal and isinstance(value, int | float):
            # Fixed-point: normalize() alone writes 1000 as 1E+3.
            shown[key] = format(Decimal(str(value)).normalize(), "f")
        else:
            shown[key] = value
    return shown


# ----------------------------------------------------------------------------- SQL


def custom_value_sql(table: str, field: CustomFieldRead, dialect: str) -> str:
    """The SQL expression for a field's value; keys are checked identifiers, never user values."""
    if not _KEY_RE.match(field.key) or table not in CUSTOM_FIELD_ENTITIES:
        raise ValueError("invalid custom field key")
    if dialect == "postgresql":
        if field.field_type in NUMERIC_TYPES:
            return f"(({table}.custom ->> '{field.key}')::numeric)"
        if field.field_type == FieldType.boolean:
            return f"(({table}.custom ->> '{field.key}')::boolean)"
        return f"({table}.custom ->> '{field.key}')"
    return f"json_extract({table}.custom, '$.{field.key}')"


def _index_name(field: CustomFieldRead) -> str:
    return f"ix_cf_{field.entity}_{field.key}"


def create_value_index(session: Session, field: CustomFieldRead) -> None:
    """Create the expression index behind an indexed field (idempotent)."""
    dialect = session.get_bind().dialect.name
    expr = custom_value_sql(field.entity, field, dialect)
    # The index expression must be written without the table qualifier.
    expr = expr.replace(f"{field.entity}.custom", "custom")
    session.execute(
        text(f"CREATE INDEX IF NOT EXISTS {_index_name(field)} ON {field.entity} ({expr}, id)")
    )
    # Neither engine knows how the new expression's values spread until it is analysed.
    refresh_statistics(session, field.entity)


def drop_value_index(session: Session, field: CustomFieldRead) -> None:
    session.execute(text(f"DROP INDEX IF EXISTS {_index_name(field)}"))
