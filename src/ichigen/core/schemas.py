"""Shapes shared by every feature's API."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from annotated_types import Ge, Le
from pydantic import BaseModel

T = TypeVar("T")

#: The largest id the record store holds (a signed 64-bit integer on every engine).
MAX_RECORD_ID = 2**63 - 1

#: A record id sent by a caller (path, query or body): out of range is a 422, not a crash
#: when the database driver cannot bind it.
RecordId = Annotated[int, Ge(1), Le(MAX_RECORD_ID)]


class Page(BaseModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back as ``cursor`` for the next one."""

    items: list[T]
    next_cursor: str | None = None


class BulkResult(BaseModel):
    """What happened to one record of a bulk call."""

    index: int
    status: str  # created | updated | unchanged | error
    id: int | None = None
    errors: list[dict[str, object]] = []
    #: On a dry run, what would change: ``{field: [before, after]}``.
    changes: dict[str, list[object]] | None = None
