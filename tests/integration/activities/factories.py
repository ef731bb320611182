"""Factories for activity tests: activities logged through the service, and deals written as
rows (the timeline only needs deals to exist, with a company and contacts)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ichigen.core.audit import Actor
from ichigen.crm.activities import service
from ichigen.crm.activities.schemas import ActivityCreate, ActivityRead, RecordRef
from ichigen.crm.deals.models import Deal, DealContact, Pipeline, Stage

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    """A fixed moment ``minutes`` after 2026-05-01 09:00 UTC."""
    return T0 + timedelta(minutes=minutes)


def ref(record_type: str, record_id: int) -> RecordRef:
    return RecordRef.model_validate({"type": record_type, "id": record_id})


def deal(
    session: Session, name: str, company_id: int | None = None, contact_ids: Iterable[int] = ()
) -> int:
    """A deal in a one-stage pipeline, with its contacts."""
    stage_id = session.scalar(select(Stage.id).limit(1))
    pipeline_id = session.scalar(select(Pipeline.id).limit(1))
    if stage_id is None or pipeline_id is None:
        pipeline = Pipeline(name="Sales", created_at=T0, updated_at=T0)
        session.add(pipeline)
        session.flush()
        stage = Stage(
            pipeline_id=pipeline.id,
            name="Qualified",
            position=0,
            probability=20,
            kind="open",
            created_at=T0,
            updated_at=T0,
        )
        session.add(stage)
        session.flush()
        stage_id, pipeline_id = stage.id, pipeline.id
    row = Deal(
        name=name,
        name_folded=name.lower(),
        currency="JPY",
        pipeline_id=pipeline_id,
        stage_id=stage_id,
        status="open",
        company_id=company_id,
        stage_entered_at=T0,
        created_at=T0,
        updated_at=T0,
    )
    session.add(row)
    session.flush()
    session.add_all(DealContact(deal_id=row.id, contact_id=c) for c in contact_ids)
    session.commit()
    return row.id


def log(
    session: Session,
    actor: Actor,
    kind: str,
    links: list[RecordRef],
    minutes: int = 0,
    **fields: Any,
) -> ActivityRead:
    """Log an activity at ``at(minutes)``."""
    data = ActivityCreate.model_validate(
        {"kind": kind, "links": links, "occurred_at": at(minutes), **fields}
    )
    return service.log_activity(session, data, actor)
