"""What duplicate detection hands to its callers: scored candidate pairs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DuplicateCandidate(BaseModel):
    """Two person records the model believes may be one person, with the reasons why.

    ``contributions`` holds, per compared field, the Splink match weight (log2 Bayes factor,
    term-frequency adjustment included) that field added to the score: positive when the
    field agrees more than chance, negative when it disagrees. ``match_weight`` is their sum
    plus the prior.
    """

    model_config = ConfigDict(frozen=True)

    left_id: str
    right_id: str
    match_probability: float
    match_weight: float
    contributions: dict[str, float]


class IdentitySource(BaseModel):
    """Where a link came from: an ``event`` (message id), a ``crm`` change, an ``import``
    row or a ``manual`` action, with its reference."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["event", "crm", "import", "manual"]
    ref: str | None = Field(default=None, max_length=200)


class IdentifierRead(BaseModel):
    """One normalised identifier."""

    model_config = ConfigDict(frozen=True)

    type: str
    value: str


class MergeRejection(BaseModel):
    """A merge or link the rules refused, as written to the merge log."""

    model_config = ConfigDict(frozen=True)

    person_id: int
    other_person_id: int | None
    identifier: IdentifierRead
    reason: str


class ResolveResult(BaseModel):
    """What resolving one message's identifiers did."""

    person_id: int
    created: bool
    merged_person_ids: list[int]
    rejected: list[MergeRejection]
    #: Identifiers dropped because their values never link (``null``, ``anonymous``, ...).
    blocked: list[tuple[str, str]]


class EdgeRead(BaseModel):
    """One link between two identifiers, with its source and time."""

    model_config = ConfigDict(frozen=True)

    id: int
    left: IdentifierRead
    right: IdentifierRead
    source_kind: str
    source_ref: str | None
    created_at: datetime
    removed_at: datetime | None


class UnmergeResult(BaseModel):
    """What an unmerge did: the edges removed and the persons split off the survivor."""

    person_id: int
    removed_edge_ids: list[int]
    new_person_ids: list[int]


class MergeLogRead(BaseModel):
    """One merge-log entry."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    action: str
    person_id: int
    other_person_id: int | None
    reason: str
    source_kind: str
    source_ref: str | None
    details: dict[str, Any]
