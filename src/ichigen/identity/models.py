"""The identity graph: persons, their identifiers, the edges that link them, and merges."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
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
    __table_args__ = (
        Index("ix_identity_merge_log_person_id_id", "person_id", "id"),
        Index("ix_identity_merge_log_action_id", "action", "id"),
    )

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


class ContactMerge(Base):
    """One merge of two contacts: both as they were and the records moved, so it can be undone.

    No foreign keys to ``contacts``: the merged contact is deleted by the merge and comes back,
    with its id, when the merge is undone.
    """

    __tablename__ = "contact_merges"
    __table_args__ = (
        Index("ix_contact_merges_survivor_id_id", "survivor_id", "id"),
        Index("ix_contact_merges_merged_id_id", "merged_id", "id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    survivor_id: Mapped[int] = mapped_column(IdType)
    merged_id: Mapped[int] = mapped_column(IdType)
    #: merged, or undone.
    status: Mapped[str] = mapped_column(String(10))
    #: The review-queue pair this merge decided, if any.
    pair_id: Mapped[int | None] = mapped_column(IdType)
    merged_at: Mapped[datetime] = mapped_column(UTCDateTime())
    merged_by: Mapped[str] = mapped_column(String(320))
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    undone_by: Mapped[str | None] = mapped_column(String(320))
    #: The two contacts before and after (``ContactMergeOutcome``).
    contacts: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    #: What was moved from the merged contact to the survivor, by kind, as ids.
    moved: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)


class DuplicatePair(Base):
    """Two contacts the duplicate scan found alike: pending review, merged, or not duplicates.

    ``left_contact_id`` is the smaller id; a pair is stored once, so a re-scan updates its
    score and a pair marked not a duplicate is never queued again.
    """

    __tablename__ = "contact_duplicate_pairs"
    __table_args__ = (
        UniqueConstraint("left_contact_id", "right_contact_id"),
        Index("ix_contact_duplicate_pairs_status_probability", "status", "match_probability"),
        Index("ix_contact_duplicate_pairs_right_contact_id", "right_contact_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    left_contact_id: Mapped[int] = mapped_column(IdType)
    right_contact_id: Mapped[int] = mapped_column(IdType)
    #: pending, merged or not_duplicate.
    status: Mapped[str] = mapped_column(String(20))
    match_probability: Mapped[float] = mapped_column(Float)
    match_weight: Mapped[float] = mapped_column(Float)
    #: Match weight per compared field (see ``DuplicateCandidate.contributions``).
    contributions: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    found_at: Mapped[datetime] = mapped_column(UTCDateTime())
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(320))
    merge_id: Mapped[int | None] = mapped_column(IdType)


class DuplicateScan(Base):
    """One scan of the whole contact base for duplicates: who or what started it, and its outcome.

    At most one row is ``running`` at a time (a partial unique index): that is how two server
    workers, or a worker and the CLI, never scan at once. A running scan marks itself alive
    (``heartbeat_at``) every minute, so that the row of one whose process died stops blocking.
    """

    __tablename__ = "contact_duplicate_scans"
    __table_args__ = (
        Index(
            "uq_contact_duplicate_scans_running",
            "status",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
        Index("ix_contact_duplicate_scans_status_finished_at", "status", "finished_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The last sign of life of a running scan.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: running, finished or failed.
    status: Mapped[str] = mapped_column(String(10))
    #: manual (a person, the API or the CLI) or scheduled (the server's own timer).
    trigger: Mapped[str] = mapped_column(String(10))
    started_by: Mapped[str] = mapped_column(String(320))
    #: The counts of ``ScanResult``; empty until the scan finishes.
    contacts: Mapped[int | None] = mapped_column(Integer)
    candidates: Mapped[int | None] = mapped_column(Integer)
    queued: Mapped[int | None] = mapped_column(Integer)
    updated: Mapped[int | None] = mapped_column(Integer)
    already_decided: Mapped[int | None] = mapped_column(Integer)
    withdrawn: Mapped[int | None] = mapped_column(Integer)
    threshold: Mapped[float] = mapped_column(Float)
    seconds: Mapped[float | None] = mapped_column(Float)
    #: Why a failed scan failed.
    error: Mapped[str | None] = mapped_column(Text)
