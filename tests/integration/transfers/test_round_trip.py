"""A whole move: deals and activities (with the companies and contacts they name) exported
from one store and imported into an empty one, on each engine, arrive unchanged."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session
from tests.integration.core.factories import company, contact, field, user
from tests.integration.transfers.conftest import DATA, pipelines

from ichigen.auth import service as auth_service
from ichigen.core.audit import Actor
from ichigen.core.db import Database, create_db_engine
from ichigen.core.settings import Settings
from ichigen.crm.activities import service as activities
from ichigen.crm.activities.imports import export_activities_csv, import_activities
from ichigen.crm.activities.schemas import ActivityCreate
from ichigen.crm.companies.imports import export_companies_csv, import_companies
from ichigen.crm.contacts import service as contacts
from ichigen.crm.contacts.imports import export_contacts_csv, import_contacts
from ichigen.crm.deals import service as deals
from ichigen.crm.deals.imports import export_deals_csv, import_deals
from ichigen.crm.deals.schemas import DealContactIn, DealCreate


@pytest.fixture
def source(tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    """A store of its own (SQLite) to export from."""
    path = tmp_path / "source.db"
    shutil.copy(sqlite_template, path)
    database = Database(
        create_db_engine(f"sqlite:///{path}"),
        Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789"),
    )
    yield database
    database.dispose()


def configure(session: Session) -> Actor:
    """What an administrator sets up before a move: users, pipelines, lost reasons and the
    deals' custom field. Returns the admin."""
    admin = auth_service.actor_for(user(session, "admin@example.com", "admin"))
    user(session, "rep@example.com", "sales")
    pipelines(session, admin)
    field(session, "region_code", "text", entity="deals")
    return admin


def fill(session: Session, admin: Actor) -> None:
    """Companies, contacts, the sample deals and activities, and a few more by hand."""
    sakura = company(session, "Sakura Seiko", domain="sakura-seiko.co.jp")
    company(session, "Acme Corp", domain="acme.example")
    for name in ("Fuji Logistics", "髙橋工業株式会社", "東海物流"):
        company(session, name)
    taro = contact(
        session,
        first_name="太郎",
        last_name="山田",
        email="taro.yamada@sakura-seiko.co.jp",
        company_id=sakura.id,
    )
    jane = contact(session, first_name="Jane", last_name="Doe", email="jane@acme.example")
    contact(session, first_name="Bob", last_name="Smith", email="bob@acme.example")
    import_deals(session, (DATA / "hubspot_deals.csv").read_bytes(), admin)
    import_deals(session, (DATA / "salesforce_opportunities_shift_jis.csv").read_bytes(), admin)
    hand = deals.create_deal(
        session,
        DealCreate(
            name="Hand-made",
            amount=Decimal("99.90"),
            currency="EUR",
            probability=35,
            forecast_category="commit",
            custom={"region_code": "EU-1"},
            tags=["manual"],
            contacts=[
                DealContactIn(contact_id=taro.id, role="economic_buyer"),
                DealContactIn(contact_id=jane.id),
            ],
        ),
        admin,
    )
    import_activities(session, (DATA / "hubspot_calls.csv").read_bytes(), admin)
    import_activities(session, (DATA / "salesforce_tasks.csv").read_bytes(), admin)
    for data in (
        {
            "kind": "meeting",
            "subject": "Workshop",
            "occurred_at": datetime(2026, 7, 1, 1, 0, tzinfo=UTC),
            "ends_at": datetime(2026, 7, 1, 3, 0, tzinfo=UTC),
            "location": "大阪本社 3F",
            "attendees": [{"email": "taro.yamada@sakura-seiko.co.jp", "name": "山田 太郎"}],
            "links": [{"type": "deal", "id": hand.id}, {"type": "contact", "id": taro.id}],
        },
        {
            "kind": "meeting",
            "subject": "Offsite",
            "occurred_at": datetime(2026, 7, 2, tzinfo=UTC),
            "all_day": True,
            "links": [{"type": "company", "id": sakura.id}],
        },
        {
            "kind": "email",
            "subject": "Contract",
            "body": "=SUM(A1) is not a formula here",
            "direction": "outbound",
            "email_from": "rep@example.com",
            "email_to": ["jane@acme.example", "bob@acme.example"],
            "links": [{"type": "contact", "id": taro.id}],
        },
    ):
        activities.log_activity(session, ActivityCreate.model_validate(data), admin)


def deal_facts(session: Session, admin: Actor) -> dict[str, dict[str, Any]]:
    """Every deal, by name, as names and values (no ids of this store)."""
    users = {u.id: u.email for u in auth_service.list_users(session)}
    reasons = deals.lost_reason_names(session, range(1, 50))
    found = deals.list_deals(session, admin, limit=500).items
    people = {
        c.id: c.primary_email for c in contacts.list_contacts(session, admin, limit=500).items
    }
    facts = {}
    for d in found:
        shown = d.model_dump(
            exclude={
                "id",
                "pipeline_id",
                "stage_id",
                "owner_id",
                "company_id",
                "company",
                "contacts",
                "lost_reason_id",
                "version",
                "updated_at",
                "board_position",
                "stage_entered_at",
            }
        )
        shown["owner"] = users.get(d.owner_id or 0)
        shown["company"] = d.company.name if d.company else None
        shown["contacts"] = sorted(f"{people[c.contact_id]}={c.role}" for c in d.contacts)
        shown["lost_reason"] = reasons.get(d.lost_reason_id or 0)
        facts[d.name] = shown
    return facts


def activity_facts(session: Session, admin: Actor) -> dict[str, dict[str, Any]]:
    users = {u.id: u.email for u in auth_service.list_users(session)}
    facts = {}
    for a in activities.list_activities(session, admin, limit=500).items:
        shown = a.model_dump(
            exclude={"id", "owner_id", "links", "version", "created_at", "updated_at"}
        )
        shown["owner"] = users.get(a.owner_id or 0)
        shown["links"] = sorted((link.type, link.name or "") for link in a.links)
        facts[a.subject] = shown
    return facts


def test_deals_and_activities_move_to_an_empty_store(source: Database, db: Database) -> None:
    files: dict[str, str] = {}
    with source.sessionmaker() as session:
        admin = configure(session)
        fill(session, admin)
        for name, export in (
            ("companies", export_companies_csv),
            ("contacts", export_contacts_csv),
            ("deals", export_deals_csv),
            ("activities", export_activities_csv),
        ):
            out = io.StringIO()
            export(session, admin, out=out)
            files[name] = out.getvalue()
        expected_deals = deal_facts(session, admin)
        expected_activities = activity_facts(session, admin)
    assert len(expected_deals) == 7 and len(expected_activities) == 9

    with db.sessionmaker() as session:
        admin = configure(session)
        reports = [
            import_companies(session, files["companies"].encode(), admin),
            import_contacts(session, files["contacts"].encode(), admin),
            import_deals(session, files["deals"].encode(), admin),
            import_activities(session, files["activities"].encode(), admin),
        ]
        for report in reports:
            assert report.failed == 0, (report.entity, report.errors)
        assert [r.created for r in reports] == [5, 3, 7, 9]
        assert deal_facts(session, admin) == expected_deals
        assert activity_facts(session, admin) == expected_activities
