"""Shapes shared by every feature's API."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


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
