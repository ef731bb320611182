"""Shapes of sources, stored events and failed events in and out of the collect service."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
SourceKind = Literal["website", "mobile", "server", "file", "other"]
MessageType = Literal["identify", "track", "page", "screen", "group", "alias"]


class SourceCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Web shop", "kind": "website"}]},
    )

    name: Name
    kind: SourceKind = "server"
    rate_limit_per_second: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    retention_days: Annotated[int, Field(ge=1, le=36_500)] | None = None


class SourceUpdate(BaseModel):
    """Fields to change; ``null`` for a limit or retention removes it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": False}]})

    name: Name | None = None
    kind: SourceKind | None = None
    enabled: bool | None = None
    rate_limit_per_second: Annotated[int, Field(ge=1, le=10_000_000)] | None = None
    retention_days: Annotated[int, Field(ge=1, le=36_500)] | None = None


class WriteKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    prefix: str
    created_at: datetime
    expires_at: datetime | None


class SourceRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    kind: str
    enabled: bool
    rate_limit_per_second: int | None
    retention_days: int | None
    version: int
    created_at: datetime
    updated_at: datetime
    keys: list[WriteKeyRead] = []


class SourceCreated(SourceRead):
    """A new source, or a rotated key: ``write_key`` is the only copy anyone will see."""

    write_key: str


class KeyRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_hours: Annotated[int, Field(ge=0, le=24 * 90)] | None = Field(
        default=None,
        description="How long the current keys keep working; the server's default when unset.",
    )


class SourceAuth(BaseModel):
    """What the collector needs to know about the source behind a write key."""

    source_id: int
    enabled: bool
    rate_limit_per_second: int | None
    expires_at: datetime | None


class EventRead(BaseModel):
    source_id: int
    type: str
    event: str | None
    name: str | None
    category: str | None
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    group_id: str | None
    previous_id: str | None
    person_id: str | None
    timestamp: datetime
    original_timestamp: datetime | None
    sent_at: datetime | None
    received_at: datetime
    properties: dict[str, Any] | None
    traits: dict[str, Any] | None
    context: dict[str, Any] | None
    integrations: dict[str, Any] | None
    consent: dict[str, Any] | None


class EventPageRead(BaseModel):
    items: list[EventRead]
    next_cursor: str | None = None


class DailyCount(BaseModel):
    day: date
    name: str
    count: int


class FailedEventRead(BaseModel):
    id: int
    source_id: int
    received_at: datetime
    reason: str
    problems: list[dict[str, Any]]
    payload: Any
    status: Literal["failed", "replayed"]
    replayed_at: datetime | None
    replayed_message_id: str | None


class ReplayRequest(BaseModel):
    """Replay a failed message, as it was or as corrected here."""

    model_config = ConfigDict(extra="forbid")

    message: dict[str, Any] | None = Field(
        default=None, description="The corrected message; the stored one when omitted."
    )


class ReplayResult(BaseModel):
    status: Literal["accepted", "duplicate", "rejected"]
    message_id: str | None = None
    problems: list[dict[str, Any]] = []


class DebugEntryRead(BaseModel):
    seq: int
    received_at: datetime
    status: Literal["accepted", "duplicate", "rejected"]
    type: str | None
    event: str | None
    message_id: str | None
    reason: str | None
    payload: Any


# ----------------------------------------------------------------------------- file imports

ImportFormat = Literal["csv", "ndjson", "parquet"]


class EventMapping(BaseModel):
    """How the rows of a file become Segment messages (see docs/event-import.md).

    ``fields`` maps a message field to the column that fills it: ``"userId": "customer_id"``,
    ``"properties.revenue": "total"``. A ``:kind`` after the field converts the value
    (``string``, ``number``, ``integer``, ``boolean``, ``json``, ``time`` or ``auto``);
    revenue-like properties are numbers, ``properties.products`` is JSON and ``timestamp`` a
    time unless told otherwise. ``type`` and ``event`` are fixed values for rows that do not
    carry their own. Without ``fields``, an NDJSON or Parquet row is taken as a Segment message
    as it is, and a CSV column named for a message field (``userId``, ``properties.plan``)
    fills that field.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "track",
                    "event": "Order Completed",
                    "fields": {
                        "userId": "customer_id",
                        "messageId": "order_id",
                        "timestamp": "ordered_at",
                        "properties.order_id": "order_id",
                        "properties.revenue": "total",
                        "properties.currency": "currency",
                        "properties.products": "items",
                    },
                    "timezone": "Asia/Tokyo",
                }
            ]
        },
    )

    type: MessageType | None = Field(
        default=None, description="The message type of rows without their own; track if unset."
    )
    event: Annotated[str, StringConstraints(min_length=1, max_length=1000)] | None = Field(
        default=None, description="The event name of rows without their own (track calls)."
    )
    fields: dict[
        Annotated[str, StringConstraints(min_length=1, max_length=300)],
        Annotated[str, StringConstraints(min_length=1, max_length=500)],
    ] = Field(
        default_factory=dict,
        max_length=500,
        description="Message field (optionally `:kind`) to the column that fills it.",
    )
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="IANA time zone of mapped times written without an offset; UTC if unset.",
    )


class EventImportRowError(BaseModel):
    """One problem with one row: its number, the message field, the column, and why."""

    row: int = Field(description="CSV: as a spreadsheet counts (header = 1); else line/row.")
    field: str
    column: str | None = None
    value: str | None = None
    reason: str


class EventImportResult(BaseModel):
    """The outcome of an event file import (or of a dry run, which stores nothing)."""

    source_id: int
    format: ImportFormat
    dry_run: bool
    encoding: str | None = None
    fields: dict[str, str] = Field(
        default_factory=dict, description="The mapping applied: message field to column."
    )
    unmapped_columns: list[str] = []
    rows_read: int = 0
    accepted: int = Field(default=0, description="Valid rows: stored plus duplicates.")
    stored: int = 0
    duplicates: int = Field(default=0, description="Valid rows whose message was stored before.")
    rejected: int = 0
    kept_as_failed: int = 0
    error_count: int = 0
    errors: list[EventImportRowError] = []
    errors_omitted: int = 0
