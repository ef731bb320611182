"""The identity graph: persons, their identifiers, the edges that link them, and merges."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ichigen.core.db import Base, IdType, JsonType, UTCDateTime


class Person(Base):
    """One customer profile; a merged one points to its survivor, whose id never changes."""

    __tablename__ = "identity_persons"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    #: The survivor this person was merged into (always a survivor itself: chains are flat).
    merged_into: Mapped[int | None] = mapped_column(
        IdType, ForeignKey("identity_persons.id"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime())


class IdentityIdentifier(Base):
    """One normalised identifier (type and value) and the survivor person that holds it."""

    __tablename__ = "identity_identifiers"
    __table_args__ = (UniqueConstraint("type", "value"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(String(320))
    person_id: Mapped[int] = mapped_column(IdType, ForeignKey("identity_persons.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IdentityEdge(Base):
    """An append-only link between two identifiers, with its source; unmerge marks it removed."""

    __tablename__ = "identity_edges"

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    left_id: Mapped[int] = mapped_column(IdType, ForeignKey("identity_identifiers.id"), index=True)
    right_id: Mapped[int] = mapped_column(IdType, ForeignKey("identity_identifiers.id"), index=True)
    #: event, crm, import or manual.
    source_kind: Mapped[str] = mapped_column(String(20))
    #: The message id, CRM change or import row the link came from.
    source_ref: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    removed_by: Mapped[str | None] = mapped_column(String(320))


class MergeLogEntry(Base):
    """A merge done, a merge or link rejected (with the rule that refused it), or an unmerge."""

    __tablename__ = "identity_merge_log"
    __table_args__ = (Index("ix_identity_merge_log_person_id_id", "person_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: merged, rejected or unmerged.
    action: Mapped[str] = mapped_column(String(20))
    #: The survivor (merged, unmerged) or the person the rejected link would have joined.
    person_id: Mapped[int] = mapped_column(IdType)
    #: The person merged away, refused, or split off.
    other_person_id: Mapped[int | None] = mapped_column(IdType)
    #: Why: the rule that refused a link, or what caused the merge.
    reason: Mapped[str] = mapped_column(String(300))
    source_kind: Mapped[str] = mapped_column(String(20))
    source_ref: Mapped[str | None] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
