"""What duplicate detection hands to its callers: scored candidate pairs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


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


#: The most identifiers one resolve request may carry.
MAX_RESOLVE_IDENTIFIERS = 50


def storable_text(value: str) -> str:
    """The text itself, or a ``ValueError`` when no database could store it: a NUL character
    (PostgreSQL refuses it) or a lone surrogate (not UTF-8; JSON's ``\\ud800`` allows it)."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


class IdentifierInput(BaseModel):
    """One identifier as sent: its type and raw value (normalised by the service)."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, AfterValidator(storable_text)] = Field(max_length=40, examples=["email"])
    value: Annotated[str, AfterValidator(storable_text)] = Field(
        max_length=1000, examples=["Taro@Example.JP"]
    )


class ResolveSourceInput(BaseModel):
    """Where the identifiers came from: ``event``, ``crm``, ``import`` or ``manual``, and a
    reference (message id, CRM change, import row)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["event", "crm", "import", "manual"]
    reference: Annotated[str, AfterValidator(storable_text)] | None = Field(
        default=None, max_length=200, examples=["msg-8f2c"]
    )


class ResolveRequest(BaseModel):
    """The identifiers of one message or record, to resolve to one person."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "identifiers": [
                        {"type": "anonymous_id", "value": "a-93f1"},
                        {"type": "email", "value": "Taro@Example.JP"},
                    ],
                    "source": {"kind": "event", "reference": "msg-8f2c"},
                }
            ]
        },
    )

    identifiers: list[IdentifierInput] = Field(min_length=1, max_length=MAX_RESOLVE_IDENTIFIERS)
    source: ResolveSourceInput


class UnmergeRequest(BaseModel):
    """The active edges to remove from a person (see ``explain`` for their ids)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"edge_ids": [17]}]})

    edge_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(max_length=1000)


class MergedPerson(BaseModel):
    """Set when the person asked for was merged: the id asked for and its survivor."""

    model_config = ConfigDict(frozen=True)

    person_id: int
    merged_into: int
    #: When the merge-log records it happening (None if the log has no entry).
    merged_at: datetime | None


class PersonRead(BaseModel):
    """A surviving person: its id, identifiers and when it was first and last seen."""

    id: int
    created_at: datetime
    first_seen: datetime
    last_seen: datetime
    identifiers: list[IdentifierRead]
    merged: MergedPerson | None = None


class ExplainResult(BaseModel):
    """Why two identifiers are one person: the chain of active edges from ``a`` to ``b``."""

    person_id: int
    edges: list[EdgeRead]
