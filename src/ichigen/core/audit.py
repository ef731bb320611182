"""The audit log: who changed which record, when, and each field's before and after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from ichigen.core.clock import utcnow
from ichigen.core.db import Base, IdType, JsonType, UTCDateTime


@dataclass(frozen=True)
class Actor:
    """Who is acting: a signed-in user, an API token's user, or the system itself."""

    user_id: int | None
    label: str
    role: str
    team_id: int | None = None
    via: str = "ui"

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(user_id=None, label=label, role="admin", via="system")


class AuditEntry(Base):
    """One write to one record, with its changed fields."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity_record", "entity", "record_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor_user_id: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    actor_label: Mapped[str] = mapped_column(String(320))
    via: Mapped[str] = mapped_column(String(20))
    entity: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[int] = mapped_column(IdType)
    action: Mapped[str] = mapped_column(String(20))
    changes: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    actor_user_id: int | None
    actor_label: str
    via: str
    entity: str
    record_id: int
    action: str
    changes: dict[str, Any]


#: Types kept as they are; checked first because diffs run for every row of an import.
_PLAIN = frozenset({str, int, float, bool, type(None)})


def jsonable(value: Any) -> Any:
    """A value as it is kept in the audit log (JSON-safe, exact for money and dates)."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if (kind is list or kind is tuple) and all(type(v) in _PLAIN for v in value):
        return list(value)
    if isinstance(value, Decimal):
        # By value: 4.2E+9 as the database returns it equals 4200000000 as a user types it.
        return format(value.normalize(), "f") if value.is_finite() else str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for every field whose value differs."""
    changes: dict[str, list[Any]] = {}
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if type(old) not in _PLAIN or type(new) not in _PLAIN:
            old, new = jsonable(old), jsonable(new)
        if old != new:
            changes[key] = [old, new]
    return changes


def audit_row(
    actor: Actor, entity: str, record_id: int, action: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """A row for ``audit_log``, for bulk inserts on hot paths."""
    return {
        "occurred_at": utcnow(),
        "actor_user_id": actor.user_id,
        "actor_label": actor.label,
        "via": actor.via,
        "entity": entity,
        "record_id": record_id,
        "action": action,
        "changes": changes,
    }


def record_change(
    session: Session,
    actor: Actor,
    entity: str,
    record_id: int,
    action: str,
    changes: dict[str, Any],
) -> None:
    """Add an audit row to the caller's unit of work (committed with the change itself)."""
    session.add(AuditEntry(**audit_row(actor, entity, record_id, action, changes)))


def record_history(
    session: Session, entity: str, record_id: int, *, limit: int = 100, before_id: int | None = None
) -> list[AuditEntryRead]:
    """A record's audit entries, newest first."""
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.entity == entity, AuditEntry.record_id == record_id)
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        stmt = stmt.where(AuditEntry.id < before_id)
    return [AuditEntryRead.model_validate(row) for row in session.scalars(stmt)]
