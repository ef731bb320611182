"""What duplicate detection hands to its callers: scored candidate pairs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
