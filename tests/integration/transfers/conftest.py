"""Fixtures for the deal and activity transfer tests: the records the sample files under
tests/data/imports name (a rep, two pipelines, lost reasons, companies and contacts)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import admin, company, contact, user

from ichigen.auth.schemas import UserRead
from ichigen.core.audit import Actor
from ichigen.crm.deals import service as deals
from ichigen.crm.deals.schemas import LostReasonCreate, PipelineCreate, PipelineRead, StageIn

DATA = Path(__file__).parents[2] / "data" / "imports"

__all__ = ["DATA", "Setting", "admin", "rep", "setting"]


@dataclass(frozen=True)
class Setting:
    """What the sample files refer to: HubSpot's pipeline, the default (Salesforce-like) one,
    companies and contacts by name."""

    hubspot: PipelineRead
    japanese: PipelineRead
    companies: dict[str, int]
    contacts: dict[str, int]

    def stage(self, pipeline: PipelineRead, name: str) -> int:
        return next(s.id for s in pipeline.stages if s.name == name)


def pipelines(session: Session, actor: Actor) -> tuple[PipelineRead, PipelineRead]:
    """HubSpot's default stages, and a default pipeline with Salesforce's Japanese stages."""
    hubspot = deals.create_pipeline(
        session,
        PipelineCreate(
            name="Sales Pipeline",
            stages=[
                StageIn(name="Appointment Scheduled", probability=20),
                StageIn(name="Qualified To Buy", probability=40),
                StageIn(name="Presentation Scheduled", probability=60),
                StageIn(name="Decision Maker Bought-In", probability=80),
                StageIn(
                    name="Contract Sent",
                    probability=90,
                    required_fields=["amount", "expected_close_date"],
                ),
                StageIn(name="Closed Won", probability=100, kind="won", required_fields=["amount"]),
                StageIn(name="Closed Lost", probability=0, kind="lost"),
            ],
        ),
        actor,
    )
    japanese = deals.create_pipeline(
        session,
        PipelineCreate(
            name="新規営業",
            is_default=True,
            stages=[
                StageIn(name="見込み", probability=10),
                StageIn(name="提案/見積", probability=50, required_fields=["amount"]),
                StageIn(
                    name="交渉/レビュー",
                    probability=80,
                    required_fields=["amount", "expected_close_date"],
                ),
                StageIn(name="成立", probability=100, kind="won"),
                StageIn(name="不成立", probability=0, kind="lost"),
            ],
        ),
        actor,
    )
    for name in ("Price", "Timing"):
        deals.create_lost_reason(session, LostReasonCreate(name=name), actor)
    return hubspot, japanese


@pytest.fixture
def rep(session: Session) -> UserRead:
    """The sales rep the sample files name as owner (rep@example.com, named "Rep")."""
    return user(session, "rep@example.com", "sales")


@pytest.fixture
def setting(session: Session, admin: Actor, rep: UserRead) -> Setting:
    hubspot, japanese = pipelines(session, admin)
    companies = {
        name: company(session, name, domain=domain).id
        for name, domain in (
            ("Sakura Seiko", "sakura-seiko.co.jp"),
            ("Acme Corp", "acme.example"),
            ("Fuji Logistics", None),
            ("髙橋工業株式会社", None),
            ("東海物流", None),
        )
    }
    people = {
        "taro": contact(
            session,
            first_name="太郎",
            last_name="山田",
            email="taro.yamada@sakura-seiko.co.jp",
            company_id=companies["Sakura Seiko"],
        ).id,
        "jane": contact(session, first_name="Jane", last_name="Doe", email="jane@acme.example").id,
        "bob": contact(session, first_name="Bob", last_name="Smith", email="bob@acme.example").id,
    }
    return Setting(hubspot, japanese, companies, people)
