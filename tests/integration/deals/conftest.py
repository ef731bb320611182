"""Fixtures for deal tests: a password-less admin, the standard pipeline and a lost reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import admin

from ichigen.core.audit import Actor
from ichigen.crm.deals import service
from ichigen.crm.deals.schemas import (
    DealCreate,
    DealRead,
    LostReasonCreate,
    PipelineCreate,
    PipelineRead,
)

__all__ = ["Sales", "admin", "deal", "sales"]


@dataclass(frozen=True)
class Sales:
    """The standard pipeline (Qualified, Meeting, Proposal, Negotiation, Won, Lost) and a lost
    reason, with stage ids by name."""

    pipeline: PipelineRead
    lost_reason_id: int

    def stage(self, name: str) -> int:
        return next(s.id for s in self.pipeline.stages if s.name == name)


@pytest.fixture
def sales(session: Session, admin: Actor) -> Sales:
    pipeline = service.create_pipeline(session, PipelineCreate(name="Sales"), admin)
    reason = service.create_lost_reason(session, LostReasonCreate(name="Price"), admin)
    return Sales(pipeline, reason.id)


def deal(session: Session, by: Actor, name: str = "Deal", **fields: Any) -> DealRead:
    """A deal made through the service."""
    return service.create_deal(session, DealCreate(name=name, **fields), by)
