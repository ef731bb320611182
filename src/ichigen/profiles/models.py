"""Profile traits as tracked and imported, with the history of every value and its source."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ichigen.core.db import Base, IdType, JsonType, UTCDateTime


class _TraitValue:
    """A trait's value for a person, and where and when it was seen."""

    #: The person the value was resolved to when it arrived (reads follow merges).
    person_id: Mapped[int] = mapped_column(IdType)
    name: Mapped[str] = mapped_column(String(200))
    value: Mapped[Any] = mapped_column(JsonType, nullable=True)
    #: event or import.
    source_kind: Mapped[str] = mapped_column(String(20))
    #: The message id or import row that carried the value.
    source_ref: Mapped[str | None] = mapped_column(String(200))
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProfileTrait(_TraitValue, Base):
    """The newest value of one trait that one person's events or imports carried."""

    __tablename__ = "profile_traits"
    __table_args__ = (UniqueConstraint("person_id", "name"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)


class ProfileTraitChange(_TraitValue, Base):
    """One value a trait took, with where it came from (repeats of a value are not kept)."""

    __tablename__ = "profile_trait_changes"
    __table_args__ = (Index("ix_profile_trait_changes_person_id_id", "person_id", "id"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)


class ProfileSyncMark(Base):
    """How far a background pass has read a changing table (e.g. the CRM contacts it has
    linked into the identity graph): the last row's change time and id."""

    __tablename__ = "profile_sync_marks"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_id: Mapped[int] = mapped_column(IdType)
